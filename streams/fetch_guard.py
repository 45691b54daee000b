"""Records fetched before a rebalance or a seek are not handed to the worker.

Faust fetches in its consumer thread and hands each batch to the event loop. A
rebalance, or the seeks that follow it (stream partitions back to their committed
offsets, changelog partitions to where recovery starts), can happen while a batch
is on its way. Faust checks the consumer generation only *after* the batch
arrived, so a batch fetched for the old assignment was still processed:

* events of a partition being recovered reached the agent before its tables were
  restored, so its state was rebuilt from half a changelog and kept;
* Faust then marked those offsets read, and dropped them when the seek fetched them
  again, so they were never processed against the right state;
* a changelog batch read during the previous recovery could likewise mark changelog
  offsets read that the new recovery had just sought back to.

The first two were seen in the kill fault test on Apache Kafka (missed promises whose
on-time deliveries were in the log). A worker stuck in recovery was seen too, and
again with this guard in place, so that stall has another cause
(:mod:`streams.recovery_watch`).

The check is aiokafka's own, applied once more on arrival: each batch carries, per
partition, the partition state object and position it was taken at. A rebalance
replaces the state objects and a seek moves the position; either way aiokafka has
forgotten that these records were consumed and will fetch them again from where
it now stands, so dropping them loses nothing. (aiokafka moves a position by itself
only when a fetch fails for that partition: an offset out of range resets it, and a
record too large to fetch is stepped over. A batch in flight at that moment would be
dropped too; neither happens to a worker reading records it can fetch.)
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


class FetchedRecords(dict):
    """A batch (partition -> records) with the position each partition was taken at."""

    def __init__(self, records: dict, taken_at: dict[Any, tuple[Any, int | None]]) -> None:
        super().__init__(records)
        self.taken_at = taken_at


def _where(consumer: Any, tp: Any) -> tuple[Any, int | None]:
    """The partition's aiokafka state object (None if not assigned) and its position."""
    subscription = consumer._subscription.subscription
    assignment = subscription.assignment if subscription is not None else None
    state = assignment.state_value(tp) if assignment is not None else None
    position = state.position if state is not None and state.has_valid_position else None
    return state, position


def taken(consumer: Any, records: dict) -> FetchedRecords:
    """Mark a batch just returned by aiokafka's fetcher (call in the consumer's thread)."""
    return FetchedRecords(records, {tp: _where(consumer, tp) for tp in records})


def still_current(consumer: Any, records: dict) -> dict:
    """The part of ``records`` that no rebalance or seek has overtaken since it was taken."""
    taken_at = getattr(records, "taken_at", None)
    if taken_at is None or not records:
        return records
    current, dropped = {}, 0
    for tp, batch in records.items():
        now = _where(consumer, tp)
        if now[0] is not None and taken_at.get(tp) == now:
            current[tp] = batch
        else:
            dropped += len(batch)
    if dropped:
        log.info("dropped %d records fetched before a rebalance or seek; they are fetched again "
                 "from the new position", dropped)
    return current
