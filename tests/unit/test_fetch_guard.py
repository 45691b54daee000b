"""A fetched batch overtaken by a rebalance or a seek is not handed on (streams.fetch_guard).

The partition states are aiokafka's own (SubscriptionState), moved the way its fetcher,
coordinator and seek move them.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from aiokafka.consumer.subscription_state import SubscriptionState
from aiokafka.structs import TopicPartition

from streams.fetch_guard import still_current, taken

EVENTS_3 = TopicPartition("events", 3)
EVENTS_5 = TopicPartition("events", 5)


def consumer_at(positions: dict[TopicPartition, int]) -> SimpleNamespace:
    """A consumer's subscription with ``positions`` assigned and consuming."""
    subscription = SubscriptionState()
    subscription.assign_from_user(set(positions))
    for tp, offset in positions.items():
        subscription.seek(tp, offset)
    return SimpleNamespace(_subscription=subscription)


def state(consumer, tp):
    return consumer._subscription.subscription.assignment.state_value(tp)


def fetch(consumer, tp, count: int) -> list[int]:
    """What aiokafka's fetcher does when it returns ``count`` records of ``tp``."""
    start = state(consumer, tp).position
    state(consumer, tp).consumed_to(start + count)
    return list(range(start, start + count))


def run(scenario):
    async def main():
        return scenario()
    return asyncio.run(main())  # aiokafka's partition states need a running loop


def test_a_batch_nothing_overtook_is_handed_on_whole():
    def scenario():
        consumer = consumer_at({EVENTS_3: 10, EVENTS_5: 0})
        batch = taken(consumer, {EVENTS_3: fetch(consumer, EVENTS_3, 4), EVENTS_5: fetch(consumer, EVENTS_5, 2)})
        return still_current(consumer, batch)

    assert run(scenario) == {EVENTS_3: [10, 11, 12, 13], EVENTS_5: [0, 1]}


def test_records_of_a_partition_sought_elsewhere_after_the_fetch_are_dropped():
    def scenario():
        consumer = consumer_at({EVENTS_3: 10, EVENTS_5: 0})
        batch = taken(consumer, {EVENTS_3: fetch(consumer, EVENTS_3, 4), EVENTS_5: fetch(consumer, EVENTS_5, 2)})
        consumer._subscription.seek(EVENTS_3, 0)  # e.g. recovery reading a changelog from the start
        return still_current(consumer, batch), state(consumer, EVENTS_3).position

    handed_on, position = run(scenario)
    assert handed_on == {EVENTS_5: [0, 1]}
    assert position == 0  # aiokafka reads them again from where the seek put it


def test_a_batch_fetched_before_a_rebalance_is_dropped_even_for_partitions_kept():
    def scenario():
        consumer = consumer_at({EVENTS_3: 10, EVENTS_5: 0})
        batch = taken(consumer, {EVENTS_3: fetch(consumer, EVENTS_3, 4), EVENTS_5: fetch(consumer, EVENTS_5, 2)})
        # The new assignment keeps events-3 and starts it at its committed offset, which
        # here is where the old batch ended: the same position, a new partition state.
        consumer._subscription.assign_from_user({EVENTS_3})
        consumer._subscription.seek(EVENTS_3, 14)
        return still_current(consumer, batch)

    assert run(scenario) == {}


def test_a_batch_without_marks_is_handed_on_as_it_is():
    def scenario():
        consumer = consumer_at({EVENTS_3: 10})
        return still_current(consumer, {EVENTS_3: [10]})

    assert run(scenario) == {EVENTS_3: [10]}
