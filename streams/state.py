"""The one owner of this worker's per-partition state, written to Faust tables in batches.

Each assigned partition has a promise book, the inquiries awaiting an answer, a
partition clock and a window of recent event ids. They live in memory for speed and are
persisted to changelog tables *on the partition they belong to*, so that after a crash or
a rebalance the worker that takes the partition over restores exactly its state.

A change is applied to the table's data at once but sent to its changelog later, by
:meth:`PartitionStates.send_pending`: the worker calls it before every offset commit
(:mod:`streams.commit_barrier`, so a committed offset never runs ahead of the state
written for the events before it), at every sweep tick, when many writes are waiting,
and when partitions are revoked. Until then the latest value of each key wins, and
the event ids of a partition go out as one record holding all of them. Sending one
changelog record per change and per event id was most of the worker's CPU per event.
What a crash loses is only what events after the last commit wrote, and those events
are read again.

Writes name their changelog partition (``send_changelog``) rather than using
``table[key] = value`` because the deadline sweep runs in a timer, outside any stream
event, where Faust cannot tell which changelog partition a plain assignment belongs to.
"""

from __future__ import annotations

import logging
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from streams.core.clock import PartitionClock
from streams.core.dedup import RecentEventIds
from streams.core.inquiries import AwaitingAnswers
from streams.core.promises import OutcomeTotals, PromiseBook, PromiseRecord

log = logging.getLogger(__name__)

# Inquiries share the promises table (and the totals table), apart by key prefix.
INQUIRY_KEY_PREFIX = "inquiry:"
INQUIRY_BOOK = "inquiries"
# A seen-events record holding a batch of one partition's event ids: "ids:<partition>:...".
ID_BATCH_PREFIX = "ids:"
# A partition's backfill hold (schemas/replay_hold.py), in the totals table: "<partition>:<this>".
HOLD_KEY = "replay-hold"
# Deleted (a tombstone for a key that never exists) to end a changelog partition's writes:
# see PartitionStates.mark_ends.
END_MARK_KEY = "~end-of-writes"


@dataclass
class PartitionState:
    partition: int
    book: PromiseBook
    seen: RecentEventIds
    inquiries: AwaitingAnswers = field(default_factory=AwaitingAnswers)
    clock: PartitionClock = field(default_factory=PartitionClock)
    # Next offset the agent has to process: everything before it is done.
    next_offset: int | None = None
    # Event ids remembered since the last send, and the id batches persisted so far
    # (oldest first, as (key, number of ids)), which are deleted once the window passes them;
    # batched_ids: the ids those batches hold together.
    unsent_ids: list[str] = field(default_factory=list)
    id_batches: deque = field(default_factory=deque)
    batched_ids: int = 0
    # The clock's hold as last written to the totals table.
    stored_hold: float | None = None


class PartitionStates:
    """Per-partition state of the partitions this worker holds."""

    def __init__(
        self,
        promises_table: Any,
        totals_table: Any,
        seen_table: Any,
        grace_seconds: float,
        seen_capacity: int = 100_000,
    ) -> None:
        self._promises = promises_table
        self._totals = totals_table
        self._seen = seen_table
        self._grace = grace_seconds
        self._seen_capacity = seen_capacity
        self._states: dict[int, PartitionState] = {}
        # (table, partition, key) -> value (None: delete), in the order last written.
        self._pending: dict[tuple[Any, int, str], Any] = {}
        # Changelog partitions written since the last mark_ends().
        self._unmarked: set[tuple[Any, int]] = set()
        self._unsent_id_count = 0

    def __contains__(self, partition: int) -> bool:
        return partition in self._states

    def get(self, partition: int) -> PartitionState:
        """The state of ``partition``, restored from the tables on first use."""
        state = self._states.get(partition)
        if state is None:
            state = self._states[partition] = self._restore(partition)
        return state

    def held(self) -> list[PartitionState]:
        return list(self._states.values())

    def books(self) -> list[tuple[PromiseBook, float | None]]:
        """Each held partition's book with its partition time, for the collector."""
        return [(state.book, state.clock.now()) for state in self._states.values()]

    def partition_books(self) -> list[tuple[int, PromiseBook, float | None]]:
        """(partition, promise book, partition time) of each held partition, for worklists."""
        return [(p, state.book, state.clock.now()) for p, state in self._states.items()]

    def inquiry_books(self) -> list[tuple[PromiseBook, float | None]]:
        """Each held partition's inquiries (in a book of their own) with its partition time."""
        return [(state.inquiries.book, state.clock.now()) for state in self._states.values()]

    def release(self, partitions: set[int]) -> None:
        """Forget partitions this worker no longer holds (their tables keep them).

        Changes not sent yet still go out with the next :meth:`send_pending`: a commit
        may yet cover the events that made them.
        """
        for partition in partitions:
            state = self._states.pop(partition, None)
            if state is not None and state.unsent_ids:
                self._persist_ids(state)

    @property
    def pending_writes(self) -> int:
        """Changes and event ids not sent yet."""
        return len(self._pending) + self._unsent_id_count

    def remember_event(self, state: PartitionState, event_id: str) -> None:
        """Remember an event id, across restarts too once sent."""
        state.seen.add(event_id)
        state.unsent_ids.append(event_id)
        self._unsent_id_count += 1

    def send_pending(self) -> None:
        """Hand every change not sent yet to the changelogs.

        In the order last written, except that archives (the totals table) go first: an
        archive holds every record deleted since it was last sent, and a restore that
        finds an archived record still stored recognises it (PromiseBook.restore).
        """
        for state in self._states.values():
            if state.unsent_ids:
                self._persist_ids(state)
        pending, self._pending = self._pending, {}
        totals = self._totals
        order = [entry for entry in pending if entry[0] is totals]
        order += [entry for entry in pending if entry[0] is not totals]
        unmarked = self._unmarked
        for done, entry in enumerate(order):
            table, partition, key = entry
            value = pending[entry]
            try:
                if value is None:
                    table.send_changelog(partition, key, None, value_serializer="raw")
                else:
                    table.send_changelog(partition, key, value)
            except BaseException:
                # Kept for the next send, ahead of what was written since.
                unsent = {left: pending[left] for left in order[done:]}
                unsent.update(self._pending)
                self._pending = unsent
                raise
            unmarked.add((table, partition))

    def mark_ends(self) -> None:
        """Write one tombstone to each changelog partition written since the last call.

        Call it once the writes sent so far are in Kafka: the tombstone then starts a record
        batch of its own. Faust recovers a table up to the end offset the broker reports,
        and Tansu (the embedded broker) reports the offset of the *first* record of the
        last batch + 1, so without this the other records of a batch of state writes would
        be missing from a recovered table. Harmless on Apache Kafka: one small record per
        written partition and commit.
        """
        unmarked, self._unmarked = self._unmarked, set()
        for table, partition in unmarked:
            table.send_changelog(partition, END_MARK_KEY, None, value_serializer="raw")

    def _write(self, table: Any, partition: int, key: str, value: Any) -> None:
        if value is None:
            table.data.pop(key, None)
        else:
            table.data[key] = value
        entry = (table, partition, key)
        pending = self._pending
        pending.pop(entry, None)  # sent in the order last written
        pending[entry] = value

    def _persist_ids(self, state: PartitionState) -> None:
        ids, state.unsent_ids = state.unsent_ids, []
        self._unsent_id_count -= len(ids)
        partition = state.partition
        key = f"{ID_BATCH_PREFIX}{partition}:{state.next_offset or 0:012d}:{uuid.uuid4().hex[:8]}"
        self._write(self._seen, partition, key, {"partition": partition, "ids": ids})
        state.id_batches.append((key, len(ids)))
        state.batched_ids += len(ids)
        # Keep the batches that still hold ids within the window of recent ids. (A running
        # total: a quiet partition sends a batch of one id per tick, up to the window's size.)
        batches = state.id_batches
        while len(batches) > 1 and state.batched_ids - batches[0][1] >= self._seen_capacity:
            oldest, count = batches.popleft()
            state.batched_ids -= count
            self._write(self._seen, partition, oldest, None)

    def persist(self, state: PartitionState) -> None:
        """Write what the book changed since the last call.

        The archive goes first: a crash before the deletions that follow it leaves
        records the restore recognises as archived (see PromiseBook.take_dirty).
        """
        partition = state.partition
        for book, prefix, archive_key, kind in (
            (state.book, "", str(partition), None),
            (state.inquiries.book, INQUIRY_KEY_PREFIX, f"{partition}:{INQUIRY_BOOK}", INQUIRY_BOOK),
        ):
            upserts, deleted, archive = book.take_dirty()
            if archive is not None:
                self._write(self._totals, partition, archive_key, archive.to_dict())
            for record in upserts:
                if state.next_offset is not None:
                    # Never lowered: a record restored after a crash may hold events
                    # beyond those read again so far.
                    record.as_of_offset = max(record.as_of_offset or 0, state.next_offset)
                self._write(self._promises, partition, prefix + record.promise_id,
                            _stored(record, partition, kind))
            for record_id in deleted:
                self._write(self._promises, partition, prefix + record_id, None)
        held = state.clock.held_until
        if held != state.stored_hold:
            # Kept across restarts and rebalances: a new owner caught up between two backfilled
            # records would otherwise run the partition to the wall clock.
            stored = None if held is None else {"until": held, "last_record_at": state.clock.last_record_at}
            self._write(self._totals, partition, f"{partition}:{HOLD_KEY}", stored)
            if (held is None) != (state.stored_hold is None):
                log.info("partition %d: %s", partition, "held by a backfill (its time follows its "
                         "records alone)" if held is not None else "backfill hold ended")
            state.stored_hold = held

    def _restore(self, partition: int) -> PartitionState:
        promises: list[PromiseRecord] = []
        inquiries: list[PromiseRecord] = []
        for value in self._promises.data.values():
            if value and value.get("partition") == partition:
                owner = inquiries if value.get("book") == INQUIRY_BOOK else promises
                owner.append(PromiseRecord.from_dict(value["record"]))
        book = PromiseBook.restore(promises, self._archive(str(partition)), grace_seconds=self._grace)
        awaiting = AwaitingAnswers.restore(
            inquiries, self._archive(f"{partition}:{INQUIRY_BOOK}"), grace_seconds=self._grace
        )
        seen = RecentEventIds(self._seen_capacity)
        batches, single_ids = [], []
        for key, value in list(self._seen.data.items()):
            if isinstance(value, dict):
                if value.get("partition") == partition:
                    batches.append((key, value["ids"]))
            elif value == partition:  # one id per record, as earlier versions wrote them
                single_ids.append(key)
                self._write(self._seen, partition, key, None)  # moved into the next id batch
        batches.sort()  # by the offset in the key: oldest first
        for event_id in single_ids + [event_id for _, ids in batches for event_id in ids]:
            seen.add(event_id)
        self._unsent_id_count += len(single_ids)
        state = PartitionState(partition=partition, book=book, seen=seen, inquiries=awaiting,
                               unsent_ids=single_ids,
                               id_batches=deque((key, len(ids)) for key, ids in batches),
                               batched_ids=sum(len(ids) for _, ids in batches))
        hold = self._totals.data.get(f"{partition}:{HOLD_KEY}")
        if hold:
            state.clock.restore_hold(hold["until"], hold.get("last_record_at"))
            state.stored_hold = hold["until"]
        return state

    def _archive(self, key: str) -> OutcomeTotals | None:
        stored = self._totals.data.get(key)
        return OutcomeTotals.from_dict(stored) if stored else None


def _stored(record: PromiseRecord, partition: int, book: str | None = None) -> dict:
    stored = {"partition": partition, "record": record.to_dict()}
    if book is not None:
        stored["book"] = book
    return stored
