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

Faust also dropped records of partitions it had paused meanwhile (its ``getmany``
hands on only the records of partitions still active), after aiokafka had counted them
consumed: nothing read them again unless a seek followed. The worst case was built in:
Faust passes its live set of active partitions to the consumer thread, a recovery
empties it while the fetch waits, and aiokafka reads an empty set as "every
partition", so a worker whose stream partitions were paused for the seek after a
rebalance fetched them all and lost the batch (seen in the kill fault test: a stretch
of a partition no worker processed). The consumer thread now fetches for a snapshot
of the set and nothing at all for an empty one (:mod:`streams.transport`), and
:func:`not_active` splits off the records of partitions paused since the fetch, to be
read again from their first offset (:func:`rewind`). Faust still drops the rest of a
batch when a partition is paused while the batch is being handed on; that happens to a
stream partition only at a rebalance or a stop, and the seek to the committed offsets
that follows a rebalance reads them again.

The reverse also happened: a record processed *after* a seek but fetched before it
(a worker's recovery resumes the stream partitions before it seeks them to their
committed offsets, and the drain loop records a message as read once its delivery
returns, even if the seek landed meanwhile) raises Faust's read offset of its
partition past the offset sought. Faust's drain loop then dropped every record the
seek fetched again up to that offset as "already read", and they were never processed: seen in the kill fault test as promises no
worker ever recorded, and as commits stuck below the hole (Faust commits only an
unbroken run of acknowledged offsets). :func:`read_from_start` lowers the read
offset to the start of such a batch; the records processed twice are recognised
by their event ids and the books.
"""

from __future__ import annotations

import logging
from typing import Any

from aiokafka.errors import IllegalStateError

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


def not_active(records: dict, active_partitions: Any, buffered: Any) -> tuple[dict, dict]:
    """Split ``records`` into those Faust will hand on and, for partitions paused since the
    fetch, the offset to read each of them again from.

    Faust hands on the records of active partitions and of those paused only because their
    stream's buffer was full (``buffered``); ``active_partitions`` None means all.
    """
    if active_partitions is None:
        return records, {}
    kept, again = {}, {}
    for tp, batch in records.items():
        if not batch or tp in active_partitions or tp in buffered:
            kept[tp] = batch
        else:
            again[tp] = batch[0].offset
    return kept, again


async def rewind(consumer: Any, offsets: dict, taken_at: dict | None = None) -> None:
    """Move aiokafka's positions back to ``offsets`` (call in the consumer's thread).

    A partition a seek or rebalance has moved since its records were taken (``taken_at``,
    as :func:`taken` marked them) is left where that put it: it reads from there.
    """
    for tp, offset in offsets.items():
        if taken_at is not None and tp in taken_at and _where(consumer, tp) != taken_at[tp]:
            continue
        try:
            consumer.seek(tp, offset)
        except IllegalStateError:
            continue  # no longer assigned: its next owner reads it from the committed offset
        log.info("%s[%d]: records fetched from offset %d while the partition was paused are "
                 "read again once it resumes", tp.topic, tp.partition, offset)


def read_from_start(read_offsets: Any, records: dict) -> None:
    """Let Faust's drain loop process every record of ``records`` (call with current records only).

    ``read_offsets`` is Faust's ``Consumer._read_offset`` (partition -> offset of the last
    record processed, None after a seek without an offset). aiokafka hands out a record
    below it only when its position was moved back (a seek, or a reset after an offset out
    of range), so the records are owed processing; one processed twice is harmless here.
    """
    for tp, batch in records.items():
        if not batch:
            continue
        first = batch[0].offset
        read = read_offsets.get(tp)
        if read is not None and first < read:
            log.info("%s[%d]: records from offset %d, fetched again after a seek, are below the read "
                     "offset %d; reading them all the same", tp.topic, tp.partition, first, read)
            read_offsets[tp] = first
