"""The one owner of this worker's per-partition state, written through to Faust tables.

Each assigned partition has a promise book, the inquiries awaiting an answer, a
partition clock and a window of recent event ids. They live in memory for speed and are persisted to changelog
tables *on the partition they belong to*, so that after a crash or a rebalance
the worker that takes the partition over restores exactly its state.

Writes go through :func:`write_through` rather than ``table[key] = value``
because the deadline sweep runs in a timer, outside any stream event, where
Faust cannot tell which changelog partition a plain assignment belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from streams.core.clock import PartitionClock
from streams.core.dedup import RecentEventIds
from streams.core.inquiries import AwaitingAnswers
from streams.core.promises import OutcomeTotals, PromiseBook, PromiseRecord

# Inquiries share the promises table (and the totals table), apart by key prefix.
INQUIRY_KEY_PREFIX = "inquiry:"
INQUIRY_BOOK = "inquiries"


def write_through(table: Any, partition: int, key: str, value: Any) -> None:
    """Set (or with ``None`` delete) ``key`` in ``table`` and its changelog partition."""
    if value is None:
        table.data.pop(key, None)
        table.send_changelog(partition, key, None, value_serializer="raw")
    else:
        table.data[key] = value
        table.send_changelog(partition, key, value)


@dataclass
class PartitionState:
    partition: int
    book: PromiseBook
    seen: RecentEventIds
    inquiries: AwaitingAnswers = field(default_factory=AwaitingAnswers)
    clock: PartitionClock = field(default_factory=PartitionClock)
    # Next offset the agent has to process: everything before it is done.
    next_offset: int | None = None


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
        """Forget partitions this worker no longer holds (their tables keep them)."""
        for partition in partitions:
            self._states.pop(partition, None)

    def remember_event(self, state: PartitionState, event_id: str, persist: bool = True) -> None:
        """Remember an event id; ``persist`` also keeps it across restarts (one more write)."""
        if persist:
            write_through(self._seen, state.partition, event_id, state.partition)
        for forgotten in state.seen.add(event_id, persisted=persist):
            write_through(self._seen, state.partition, forgotten, None)

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
                write_through(self._totals, partition, archive_key, archive.to_dict())
            for record in upserts:
                if state.next_offset is not None:
                    # Never lowered: a record restored after a crash may hold events
                    # beyond those read again so far.
                    record.as_of_offset = max(record.as_of_offset or 0, state.next_offset)
                write_through(self._promises, partition, prefix + record.promise_id,
                              _stored(record, partition, kind))
            for record_id in deleted:
                write_through(self._promises, partition, prefix + record_id, None)

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
        for event_id, owner in list(self._seen.data.items()):
            if owner == partition:
                seen.add(event_id)
        return PartitionState(partition=partition, book=book, seen=seen, inquiries=awaiting)

    def _archive(self, key: str) -> OutcomeTotals | None:
        stored = self._totals.data.get(key)
        return OutcomeTotals.from_dict(stored) if stored else None


def _stored(record: PromiseRecord, partition: int, book: str | None = None) -> dict:
    stored = {"partition": partition, "record": record.to_dict()}
    if book is not None:
        stored["book"] = book
    return stored
