"""The promise book: every promise one partition holds, and how each one ends.

The outcome rule (PRODUCT.md, "Outcomes and time") reads only what the log holds:
a promise due at D ends ``on_time`` when a delivery with ``occurred_at <= D`` was in
Kafka (record timestamp, ``known_at``) by D + grace; otherwise it ends ``missed``,
as soon as the partition's clock passes D + grace or such a late-known delivery is
read. Because nothing here looks at the wall clock, re-reading the same log in any
batching or at any speed reaches the same outcomes.
"""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass, fields
from typing import Callable, Iterable, Iterator, Union

ON_TIME = "on_time"
MISSED = "missed"
OUTCOMES = (ON_TIME, MISSED)
# Not an outcome: a promise cancelled in time leaves the on-time/missed count.
CANCELLED = "cancelled"

DEFAULT_GRACE_SECONDS = 2.0
# Ended promises are remembered this long after their due time so that duplicate
# or very late deliveries are still recognised instead of parked as "early".
DEFAULT_RETENTION_SECONDS = 7 * 24 * 3600.0

Labels = tuple[str, str, str]  # team, kind, audience


@dataclass(slots=True)
class PromiseRecord:
    """One promise as stored; also stands for a delivery whose promise is not seen yet."""

    promise_id: str
    case_id: str
    team: str = ""
    kind: str = ""
    audience: str = ""
    channel: str = ""
    due_at: float | None = None  # None: only a delivery has been seen so far
    ended_as: str | None = None
    delivered_at: float | None = None
    delivery_known_at: float | None = None
    made_at: float | None = None  # when the promise was made (event time)
    revisions: int = 0  # times the due time was renegotiated
    # When to warn that the promise is at risk (partition time); None: never.
    at_risk_at: float | None = None
    warned: bool = False  # the at-risk warning for the current due time was given
    # Event ids of the revisions and cancellations read while the promise was open, so a
    # repeat is recognised even after a revision moved the due time it was judged against
    # (saved in the same write). A tuple: no per-record list for the many never changed.
    change_ids: tuple[str, ...] = ()
    # The record holds the effect of every event of its partition before this offset (the
    # next offset to process when it was written). After a crash the events since the last
    # commit are read again; those before it are already in the record, and applying one
    # again would judge it against changes that came after it in the log. None: unknown.
    as_of_offset: int | None = None

    @property
    def labels(self) -> Labels:
        return (self.team, self.kind, self.audience)

    @property
    def is_made(self) -> bool:
        return self.due_at is not None

    @property
    def is_overdue(self) -> bool:
        return self.ended_as == MISSED and self.delivered_at is None

    @property
    def is_at_risk(self) -> bool:
        return self.warned and self.ended_as is None

    def to_dict(self) -> dict:
        # Not dataclasses.asdict: its deep copy was a tenth of the worker's time per event,
        # and every field holds an immutable value.
        return {name: getattr(self, name) for name in _RECORD_FIELD_NAMES}

    @classmethod
    def from_dict(cls, data: dict) -> "PromiseRecord":
        # Fields a newer release stored are left out, so a rollback can still restore.
        return cls(**{name: value for name, value in data.items() if name in _RECORD_FIELDS})


_RECORD_FIELD_NAMES = tuple(field.name for field in fields(PromiseRecord))
_RECORD_FIELDS = frozenset(_RECORD_FIELD_NAMES)


@dataclass(frozen=True, slots=True)
class PromiseKept:
    record: PromiseRecord
    margin_seconds: float  # how early it was delivered


@dataclass(frozen=True, slots=True)
class PromiseMissed:
    record: PromiseRecord
    declared_at: float  # the partition time at which the miss became certain


@dataclass(frozen=True, slots=True)
class PromiseAtRisk:
    record: PromiseRecord
    declared_at: float  # the partition time at which the warning became due


@dataclass(frozen=True, slots=True)
class PromiseRevised:
    record: PromiseRecord
    previous_due_at: float


@dataclass(frozen=True, slots=True)
class PromiseCancelled:
    record: PromiseRecord


@dataclass(frozen=True, slots=True)
class LateDelivery:
    record: PromiseRecord
    lateness_seconds: float
    # occurred in time, but reached Kafka only after due + grace
    reported_late: bool


Change = Union[
    PromiseKept, PromiseMissed, LateDelivery, PromiseAtRisk, PromiseRevised, PromiseCancelled
]


class OutcomeTotals:
    """Counts of ended promises and late deliveries, by label, for one partition.

    Also used for the *archive*: the counts of records already forgotten, with
    ``archived_through``, the latest forget time they had.
    """

    __slots__ = ("outcomes", "late_deliveries", "cancelled", "revisions", "archived_through")

    def __init__(self) -> None:
        self.outcomes: Counter[tuple[str, str, str, str]] = Counter()
        self.late_deliveries: Counter[Labels] = Counter()
        self.cancelled: Counter[Labels] = Counter()
        self.revisions: Counter[Labels] = Counter()
        self.archived_through: float | None = None

    def count(self, record: "PromiseRecord") -> None:
        """Add what a made record contributes: its outcome if ended, its revisions."""
        labels = record.labels
        if record.revisions:
            self.revisions[labels] += record.revisions
        if record.ended_as == CANCELLED:
            self.cancelled[labels] += 1
        elif record.ended_as is not None:
            self.outcomes[(*labels, record.ended_as)] += 1
            if record.ended_as == MISSED and record.delivered_at is not None:
                self.late_deliveries[labels] += 1

    def copy(self) -> "OutcomeTotals":
        return OutcomeTotals.from_dict(self.to_dict())

    def to_dict(self) -> dict:
        # '|' cannot occur in a team, kind or audience (schemas forbid it).
        return {
            "outcomes": {"|".join(k): v for k, v in self.outcomes.items()},
            "late_deliveries": {"|".join(k): v for k, v in self.late_deliveries.items()},
            "cancelled": {"|".join(k): v for k, v in self.cancelled.items()},
            "revisions": {"|".join(k): v for k, v in self.revisions.items()},
            "archived_through": self.archived_through,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "OutcomeTotals":
        totals = cls()
        totals.archived_through = data.get("archived_through")
        for key, value in data.get("outcomes", {}).items():
            team, kind, audience, outcome = key.split("|")
            totals.outcomes[(team, kind, audience, outcome)] = value
        for name in ("late_deliveries", "cancelled", "revisions"):
            counter = getattr(totals, name)
            for key, value in data.get(name, {}).items():
                team, kind, audience = key.split("|")
                counter[(team, kind, audience)] = value
        return totals


class PromiseBook:
    """Open, overdue and recently ended promises of one partition.

    Every method returns the outcome changes it caused; the records it touched are
    collected until :meth:`take_dirty` so the caller can persist exactly those. Each
    promise ends once: repeated or redelivered events change nothing.

    The totals are never persisted on their own: they are the archive (counts of
    records forgotten after retention) plus what the stored records say. So one
    event's outcome is one record write, and a crash can never leave a record and
    a separately stored total disagreeing.
    """

    def __init__(
        self,
        grace_seconds: float = DEFAULT_GRACE_SECONDS,
        retention_seconds: float = DEFAULT_RETENTION_SECONDS,
    ) -> None:
        self.grace = grace_seconds
        self.retention = retention_seconds
        self.totals = OutcomeTotals()
        self.archive = OutcomeTotals()
        self.open_count: Counter[Labels] = Counter()
        self.overdue_count: Counter[Labels] = Counter()
        self.at_risk_count: Counter[Labels] = Counter()
        self._records: dict[str, PromiseRecord] = {}
        # Ids of the records a worklist shows; small next to the book.
        self.at_risk_ids: set[str] = set()
        self.overdue_ids: set[str] = set()
        # Heaps with lazy deletion: an entry is acted on only if the record still
        # matches it, so a sweep costs O(expired), not O(open).
        self._deadlines: list[tuple[float, str]] = []
        self._warnings: list[tuple[float, str]] = []
        self._forget_at: list[tuple[float, str]] = []
        self._dirty: set[str] = set()
        self._archive_dirty = False
        # Told of every record let go after retention (e.g. to drop an index entry).
        self.on_forget: Callable[[PromiseRecord], None] | None = None

    # -- reading ---------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._records)

    def get(self, promise_id: str) -> PromiseRecord | None:
        return self._records.get(promise_id)

    def records(self) -> Iterator[PromiseRecord]:
        return iter(self._records.values())

    def due_by(self, deadline: float) -> Counter[Labels]:
        """Open promises due at or before ``deadline``, by label.

        Walks only the part of the deadline heap at or below ``deadline`` (a heap's
        children are never earlier than their parent), so it costs what is due soon,
        not what is open.
        """
        found: Counter[Labels] = Counter()
        heap, records = self._deadlines, self._records
        pending = [0] if heap else []
        while pending:
            index = pending.pop()
            due_at, promise_id = heap[index]
            if due_at > deadline:
                continue
            record = records.get(promise_id)
            if record is not None and record.ended_as is None and record.due_at == due_at:
                found[record.labels] += 1
            pending.extend(child for child in (2 * index + 1, 2 * index + 2) if child < len(heap))
        return found

    # -- events ----------------------------------------------------------------
    def make(self, record: PromiseRecord, known_at: float) -> list[Change]:
        """A promise was made. ``record`` carries its labels and due time."""
        if record.due_at is None:
            raise ValueError("a promise needs a due time")
        earlier = self._records.get(record.promise_id)
        if earlier is not None and earlier.is_made:
            return []  # the same promise announced twice: the first one stands
        self._records[record.promise_id] = record
        self._dirty.add(record.promise_id)
        self.open_count[record.labels] += 1
        heapq.heappush(self._deadlines, (record.due_at, record.promise_id))
        self._schedule_warning(record)
        if earlier is not None:  # its delivery came first
            return self._judge_delivery(
                record, earlier.delivered_at, earlier.delivery_known_at
            )
        return []

    def deliver(
        self, promise_id: str, case_id: str, delivered_at: float, known_at: float
    ) -> list[Change]:
        """A delivery for ``promise_id`` occurred at ``delivered_at``, known at ``known_at``."""
        record = self._records.get(promise_id)
        if record is None:
            parked = PromiseRecord(
                promise_id=promise_id,
                case_id=case_id,
                delivered_at=delivered_at,
                delivery_known_at=known_at,
            )
            self._records[promise_id] = parked
            self._dirty.add(promise_id)
            heapq.heappush(self._forget_at, (self._forget_time(parked), promise_id))
            return []
        if not record.is_made or record.ended_as == CANCELLED \
                or (record.ended_as is not None and record.delivered_at is not None):
            return []  # parked already, cancelled, or ended and delivered: nothing changes
        return self._judge_delivery(record, delivered_at, known_at)

    def expire(self, now: float) -> list[Change]:
        """Declare missed every open promise whose due time + grace is before ``now``."""
        changes: list[Change] = []
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] + self.grace < now:
            due_at, promise_id = heapq.heappop(deadlines)
            record = self._records.get(promise_id)
            if record is None or record.ended_as is not None or record.due_at != due_at:
                continue
            self._end(record, MISSED)
            changes.append(PromiseMissed(record, declared_at=now))
            if record.delivered_at is None:
                self._mark_overdue(record)
            else:  # delivered after its due time, before the deadline was certain
                changes.append(self._late(record))
        warnings = self._warnings
        while warnings and warnings[0][0] <= now:
            at_risk_at, promise_id = heapq.heappop(warnings)
            record = self._records.get(promise_id)
            if record is None or record.ended_as is not None or record.warned \
                    or record.at_risk_at != at_risk_at:
                continue
            record.warned = True
            self.at_risk_count[record.labels] += 1
            self.at_risk_ids.add(promise_id)
            self._dirty.add(promise_id)
            changes.append(PromiseAtRisk(record, declared_at=now))
        self._forget_old(now)
        return changes

    def revise(self, promise_id: str, due_at: float, known_at: float,
               at_risk_at: float | None = None, revision_id: str | None = None) -> list[Change]:
        """The promise was renegotiated to ``due_at``, known at ``known_at``.

        Applies only while the promise is open and its current deadline (due + grace)
        has not passed by ``known_at``: a due time cannot be moved after it was missed.
        A revision read before its promise is ignored (see docs/guarantees.md).
        ``at_risk_at`` is when to warn about the new due time (the caller's policy).
        """
        record = self._open_change(promise_id, known_at, revision_id)
        if record is None or due_at == record.due_at:
            return []
        previous = record.due_at
        self._clear_warning(record)
        record.due_at = due_at
        record.revisions += 1
        record.at_risk_at = at_risk_at
        self.totals.revisions[record.labels] += 1
        self._dirty.add(promise_id)
        heapq.heappush(self._deadlines, (due_at, promise_id))
        self._schedule_warning(record)
        changes: list[Change] = [PromiseRevised(record, previous_due_at=previous)]
        if record.delivered_at is not None:  # delivered after the old due time: judge again
            changes.extend(self._judge_delivery(record, record.delivered_at, record.delivery_known_at))
        return changes

    def cancel(self, promise_id: str, cancelled_at: float, known_at: float,
               cancellation_id: str | None = None) -> list[Change]:
        """The promise was withdrawn at ``cancelled_at``, known at ``known_at``.

        Only a cancellation made by the due time and known by its deadline takes the
        promise out of the count; later ones change nothing (the promise was, or will
        be, judged as usual).
        """
        record = self._open_change(promise_id, known_at, cancellation_id)
        if record is None or cancelled_at > record.due_at:
            return []
        self._end(record, CANCELLED)
        return [PromiseCancelled(record)]

    def _open_change(self, promise_id: str, known_at: float,
                     change_id: str | None) -> PromiseRecord | None:
        """The record a revision or cancellation read now may change, or None: unknown, not
        made, ended, past its deadline, or this change read before (a redelivery).

        A change is remembered even when it then changes nothing (e.g. a cancellation
        made after the due time): its repeat, read after a revision moved the due time,
        must be judged as the first reading was, not again.
        """
        record = self._records.get(promise_id)
        if record is None or not record.is_made or record.ended_as is not None \
                or known_at > record.due_at + self.grace:
            return None
        if change_id is not None:
            if change_id in record.change_ids:
                return None
            record.change_ids = (*record.change_ids, change_id)
            self._dirty.add(promise_id)
        return record

    # -- persistence -----------------------------------------------------------
    def reflects(self, promise_id: str, offset: int) -> bool:
        """Whether the record of ``promise_id`` already holds the event at ``offset``."""
        record = self._records.get(promise_id)
        return record is not None and record.as_of_offset is not None and offset < record.as_of_offset

    def take_dirty(self) -> tuple[list[PromiseRecord], list[str], OutcomeTotals | None]:
        """Records changed since the last call, ids forgotten, and the archive if changed.

        Persist the archive before deleting the forgotten records: a crash in between
        leaves records whose forget time is within ``archived_through``, which
        :meth:`restore` recognises as already archived.
        """
        upserts, deleted = [], []
        for promise_id in self._dirty:
            record = self._records.get(promise_id)
            if record is None:
                deleted.append(promise_id)
            else:
                upserts.append(record)
        self._dirty.clear()
        archive = self.archive if self._archive_dirty else None
        self._archive_dirty = False
        return upserts, deleted, archive

    @classmethod
    def restore(
        cls,
        records: Iterable[PromiseRecord],
        archive: OutcomeTotals | None = None,
        **settings: float,
    ) -> "PromiseBook":
        """Rebuild a book from persisted records and archive, e.g. after a restart or rebalance."""
        book = cls(**settings)
        if archive is not None:
            book.archive = archive
            book.totals = archive.copy()
        horizon = book.archive.archived_through
        for record in records:
            if horizon is not None and record.is_made and record.ended_as is not None \
                    and book._forget_time(record) <= horizon:
                book._dirty.add(record.promise_id)  # archived, deletion was lost: delete again
                continue
            if record.is_made:
                book.totals.count(record)
            book._records[record.promise_id] = record
            if not record.is_made:
                heapq.heappush(book._forget_at, (book._forget_time(record), record.promise_id))
            elif record.ended_as is None:
                book.open_count[record.labels] += 1
                heapq.heappush(book._deadlines, (record.due_at, record.promise_id))
                if record.warned:
                    book.at_risk_count[record.labels] += 1
                    book.at_risk_ids.add(record.promise_id)
                else:
                    book._schedule_warning(record)
            else:
                if record.is_overdue:
                    book._mark_overdue(record)
                heapq.heappush(book._forget_at, (book._forget_time(record), record.promise_id))
        return book

    # -- rules -----------------------------------------------------------------
    def _judge_delivery(
        self, record: PromiseRecord, delivered_at: float, known_at: float
    ) -> list[Change]:
        due_at = record.due_at
        deadline = due_at + self.grace
        if record.ended_as is not None:
            # Missed earlier, delivered now: no longer overdue.
            self._remember_delivery(record, delivered_at, known_at)
            self.overdue_count[record.labels] -= 1
            self.overdue_ids.discard(record.promise_id)
            return [self._late(record)]
        if delivered_at <= due_at and known_at <= deadline:
            self._remember_delivery(record, delivered_at, known_at)
            self._end(record, ON_TIME)
            return [PromiseKept(record, margin_seconds=due_at - delivered_at)]
        if record.delivered_at is None:
            self._remember_delivery(record, delivered_at, known_at)
        if known_at > deadline:
            # The partition's time is past the deadline: no keeping delivery can come.
            self._end(record, MISSED)
            return [PromiseMissed(record, declared_at=known_at), self._late(record)]
        # Delivered after the due time, but the deadline has not passed: another
        # delivery may still keep it. The sweep ends it, and counts this one late.
        return []

    def _remember_delivery(self, record: PromiseRecord, delivered_at: float, known_at: float) -> None:
        record.delivered_at = delivered_at
        record.delivery_known_at = known_at
        self._dirty.add(record.promise_id)

    def _late(self, record: PromiseRecord) -> LateDelivery:
        self.totals.late_deliveries[record.labels] += 1
        lateness = record.delivered_at - record.due_at
        return LateDelivery(record, lateness_seconds=max(lateness, 0.0), reported_late=lateness <= 0)

    def _end(self, record: PromiseRecord, outcome: str) -> None:
        self._clear_warning(record)
        record.ended_as = outcome
        self.open_count[record.labels] -= 1
        if outcome == CANCELLED:
            self.totals.cancelled[record.labels] += 1
        else:
            team, kind, audience = record.labels
            self.totals.outcomes[(team, kind, audience, outcome)] += 1
        self._dirty.add(record.promise_id)
        heapq.heappush(self._forget_at, (self._forget_time(record), record.promise_id))

    def _schedule_warning(self, record: PromiseRecord) -> None:
        if record.at_risk_at is not None and not record.warned:
            heapq.heappush(self._warnings, (record.at_risk_at, record.promise_id))

    def _clear_warning(self, record: PromiseRecord) -> None:
        """The at-risk state ends with the promise or with its due time (a revision)."""
        if record.warned:
            record.warned = False
            self.at_risk_count[record.labels] -= 1
            self.at_risk_ids.discard(record.promise_id)

    def _mark_overdue(self, record: PromiseRecord) -> None:
        self.overdue_count[record.labels] += 1
        self.overdue_ids.add(record.promise_id)

    def _forget_time(self, record: PromiseRecord) -> float:
        anchor = record.due_at if record.is_made else record.delivery_known_at
        return anchor + self.retention

    def _forget_old(self, now: float) -> None:
        forget_at = self._forget_at
        while forget_at and forget_at[0][0] < now:
            when, promise_id = heapq.heappop(forget_at)
            record = self._records.get(promise_id)
            if record is None or (record.is_made and record.ended_as is None):
                continue
            if self._forget_time(record) > when:
                continue  # a stale entry: the record was made or ended since
            if record.is_overdue:
                self.overdue_count[record.labels] -= 1
                self.overdue_ids.discard(promise_id)
            if record.is_made:
                self.archive.count(record)
                self.archive.archived_through = max(self.archive.archived_through or when, when)
                self._archive_dirty = True
            del self._records[promise_id]
            self._dirty.add(promise_id)
            if self.on_forget is not None:
                self.on_forget(record)
