"""A fetched batch overtaken by a rebalance or a seek is not handed on (streams.fetch_guard).

The partition states are aiokafka's own (SubscriptionState), moved the way its fetcher,
coordinator and seek move them.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import faust
from aiokafka.consumer.subscription_state import SubscriptionState
from aiokafka.structs import TopicPartition

from streams.fetch_guard import not_active, read_from_start, rewind, still_current, taken
from streams.transport import install

EVENTS_3 = TopicPartition("events", 3)
EVENTS_5 = TopicPartition("events", 5)
EVENTS_9 = TopicPartition("events", 9)


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


def records(offsets) -> list[SimpleNamespace]:
    return [SimpleNamespace(offset=offset) for offset in offsets]


def test_a_batch_fetched_again_below_the_read_offset_lowers_it_to_its_start():
    # Faust's read offset: the last offset processed, raised past the seek by a message
    # that was in the agent when the seek landed.
    read_offsets = {EVENTS_3: 58, EVENTS_5: 7}
    read_from_start(read_offsets, {EVENTS_3: records(range(49, 59)), EVENTS_5: records([8, 9])})
    assert read_offsets == {EVENTS_3: 49, EVENTS_5: 7}


def test_read_offsets_not_set_are_left_unset():
    read_offsets: dict = {}
    read_from_start(read_offsets, {EVENTS_3: records([0, 1]), EVENTS_5: []})
    assert read_offsets == {}


def worker_consumer_fetching(kafka_consumer, batch):
    """The worker's Faust consumer, its thread answering one fetch with ``batch``."""
    app = faust.App("fetch-guard-test", broker="kafka://127.0.0.1:9", store="memory://",
                    autodiscover=False, web_enabled=False)
    install(app)
    worker_consumer = app.consumer

    async def getmany(active_partitions, timeout):
        return batch

    async def call_thread(fun, *args, **kwargs):  # the consumer thread runs it
        return await fun(*args, **kwargs)

    worker_consumer._thread = SimpleNamespace(getmany=getmany, call_thread=call_thread,
                                              _ensure_consumer=lambda: kafka_consumer)
    return worker_consumer


def test_the_worker_consumer_reads_again_what_it_fetched_for_a_partition_paused_meanwhile():
    async def main():
        kafka_consumer = consumer_at({EVENTS_3: 10, EVENTS_5: 0})
        kafka_consumer.seek = kafka_consumer._subscription.seek  # what aiokafka's seek moves
        batch = taken(kafka_consumer, {EVENTS_3: records(fetch(kafka_consumer, EVENTS_3, 4)),
                                       EVENTS_5: records(fetch(kafka_consumer, EVENTS_5, 2))})
        worker_consumer = worker_consumer_fetching(kafka_consumer, batch)
        handed_on = await worker_consumer._getmany({EVENTS_5}, 1.0)  # events-3 paused meanwhile
        return handed_on, state(kafka_consumer, EVENTS_3).position, state(kafka_consumer, EVENTS_5).position

    handed_on, position_3, position_5 = asyncio.run(main())
    assert list(handed_on) == [EVENTS_5]
    assert (position_3, position_5) == (10, 2)


def test_the_worker_consumer_hands_on_a_batch_fetched_again_after_a_seek_to_be_read_whole():
    """Through the worker's consumer: the batch the seek fetched again is handed on, and
    Faust's read offset no longer marks any of it as read (its drain loop skips records
    below the read offset)."""
    def scenario():
        kafka_consumer = consumer_at({EVENTS_3: 58})
        kafka_consumer._subscription.seek(EVENTS_3, 49)  # the seek back to the committed offset
        refetched = taken(kafka_consumer, {EVENTS_3: records(fetch(kafka_consumer, EVENTS_3, 10))})
        worker_consumer = worker_consumer_fetching(kafka_consumer, refetched)
        worker_consumer._read_offset[EVENTS_3] = 58
        return worker_consumer, worker_consumer._getmany({EVENTS_3}, 1.0)

    async def main():
        worker_consumer, fetching = scenario()
        return worker_consumer, await fetching

    worker_consumer, handed_on = asyncio.run(main())
    assert [r.offset for r in handed_on[EVENTS_3]] == list(range(49, 59))
    assert worker_consumer._read_offset[EVENTS_3] == 49


def test_records_of_partitions_paused_since_the_fetch_are_split_off_with_their_first_offset():
    buffered = {EVENTS_5}  # paused only because its stream's buffer is full: Faust hands them on
    kept, again = not_active({EVENTS_3: records([10, 11]), EVENTS_5: records([4]), EVENTS_9: records([7, 8])},
                             active_partitions={TopicPartition("events", 1)}, buffered=buffered)
    assert {tp: [r.offset for r in batch] for tp, batch in kept.items()} == {EVENTS_5: [4]}
    assert again == {EVENTS_3: 10, EVENTS_9: 7}


def test_without_a_set_of_active_partitions_every_record_is_handed_on():
    batch = {EVENTS_3: records([10])}
    assert not_active(batch, None, set()) == (batch, {})


def test_rewind_moves_aiokafka_back_to_read_the_records_again_and_skips_partitions_not_assigned():
    import aiokafka

    from aiokafka.consumer.fetcher import Fetcher

    async def scenario():
        kafka_consumer = aiokafka.AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9")
        kafka_consumer.assign([EVENTS_3])
        kafka_consumer._subscription.seek(EVENTS_3, 12)  # read up to 11, 12.. prefetched
        # aiokafka's own Fetcher.seek_to on the fetcher state it touches (an unstarted
        # consumer has no fetcher, and a real one would reach for the broker).
        fetcher_state = SimpleNamespace(_subscriptions=kafka_consumer._subscription,
                                        _records={EVENTS_3: "prefetched from 12"},
                                        _notify=lambda future: None, _wait_consume_future=None)
        kafka_consumer._fetcher = SimpleNamespace(seek_to=lambda tp, offset: Fetcher.seek_to(fetcher_state, tp, offset))
        await rewind(kafka_consumer, {EVENTS_3: 10, EVENTS_5: 4})
        return state(kafka_consumer, EVENTS_3).position, fetcher_state._records

    position, prefetched = asyncio.run(scenario())
    assert position == 10 and prefetched == {}


def test_rewind_leaves_a_partition_a_seek_moved_after_the_fetch_where_the_seek_put_it():
    async def main():
        consumer = consumer_at({EVENTS_3: 10})
        consumer.seek = consumer._subscription.seek
        batch = taken(consumer, {EVENTS_3: records(fetch(consumer, EVENTS_3, 4))})
        consumer._subscription.seek(EVENTS_3, 3)  # perform_seek to the committed offset, meanwhile
        await rewind(consumer, {EVENTS_3: 10}, batch.taken_at)
        return state(consumer, EVENTS_3).position

    assert asyncio.run(main()) == 3
