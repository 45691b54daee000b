"""The outcome rule computed from an event log alone: what every promise *should* come to.

This is the reference the tests hold the worker to. It reads a finished log (records in
partition order, each with its Kafka timestamp) and applies PRODUCT.md's rule
("Outcomes and time") directly, the slow and obvious way: group the events by promise,
then ask of each promise whether the log holds a delivery that keeps it. It shares no code
with :mod:`streams.core.promises` on purpose: if the promise book and the oracle agree on
random logs, on logs replayed in other batchings, and on a live run with a worker killed
mid-way, the book implements the rule.

The rule, as applied here, per partition (events of one case share a partition, and a
worker judges each partition on its own):

* Only valid events count (the schemas decide validity, and the message key must be the
  case id); an ``event_id`` seen before in the partition is a duplicate and ignored.
* A promise is its first ``promise`` event; a later one with the same ``promise_id`` is
  ignored (the first one stands).
* A record became *known* when the partition's log reached it: at the highest Kafka
  timestamp of the records up to and including it. With timestamps that only grow along
  the partition (one producer, or LogAppendTime) that is simply the record's own
  timestamp; with CreateTime from producers whose clocks disagree, a record placed after a
  later-stamped one was not known before that one was.
* A promise due at D is ``on_time`` when some delivery for it, anywhere in the partition
  (before or after the promise itself), occurred at or before D and was known by
  D + grace. Otherwise it is ``missed`` once the partition's time is past D + grace: the
  highest timestamp in the partition, or ``end_of_log_time`` if the partition is known to
  be complete (caught up) up to then. Otherwise it is still ``open``.
* A missed promise that has a delivery in the log also counts one late delivery; a missed
  promise without one is overdue.
* Revisions and cancellations that follow the promise in the log are applied in log
  order (ones before it are ignored), as the promise's story unfolds: once the promise is
  kept, missed or cancelled, nothing after changes it. A revision known by the current
  deadline (due + grace) moves the due time (a renegotiation) and may keep a delivery
  that was late for the old one; a cancellation made by the due time and known by the
  deadline takes the promise out of the count. When revisions or cancellations are
  involved, deliveries are taken in log order too, each judged against the due time in
  force when it was read.

What the oracle cannot know, by construction, is the wall clock of a live fetch: a
delivery stamped by D + grace that reached the broker only after a caught-up fetch
answered after D + grace is on time here but missed by the worker (PRODUCT.md's grace
window race; see docs/guarantees.md).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from schemas import InvalidEvent, decode_event
from schemas.events import Delivery, Promise, PromiseCancelled, PromiseRevised

ON_TIME = "on_time"
MISSED = "missed"
OPEN = "open"
CANCELLED = "cancelled"

Labels = tuple[str, str, str]  # team, kind, audience
PromiseKey = tuple[int, str]  # partition, promise_id


@dataclass(frozen=True, slots=True)
class LoggedRecord:
    """One record of the events topic as the log holds it."""

    partition: int
    offset: int
    timestamp: float  # the Kafka timestamp in epoch seconds: when the event became known
    key: bytes | None
    value: bytes | None

    @classmethod
    def from_kafka(cls, record: Any) -> "LoggedRecord":
        """From a kafka-python ``ConsumerRecord`` (its timestamp is in milliseconds)."""
        return cls(record.partition, record.offset, record.timestamp / 1000.0, record.key, record.value)


@dataclass(frozen=True, slots=True)
class Verdict:
    """How one promise ends according to the log."""

    partition: int
    promise_id: str
    team: str
    kind: str
    audience: str
    due_at: float
    outcome: str  # on_time, missed, open or cancelled
    # The first delivery in the log for this promise, if any (occurred_at, known at).
    delivered_at: float | None = None
    delivery_known_at: float | None = None
    revisions: int = 0

    @property
    def labels(self) -> Labels:
        return (self.team, self.kind, self.audience)

    @property
    def late_delivery(self) -> bool:
        return self.outcome == MISSED and self.delivered_at is not None

    @property
    def overdue(self) -> bool:
        return self.outcome == MISSED and self.delivered_at is None


@dataclass
class OracleResult:
    verdicts: dict[PromiseKey, Verdict] = field(default_factory=dict)
    outcomes: Counter = field(default_factory=Counter)  # (team, kind, audience, outcome) -> n
    late_deliveries: Counter = field(default_factory=Counter)  # labels -> n
    open: Counter = field(default_factory=Counter)  # labels -> n
    overdue: Counter = field(default_factory=Counter)  # labels -> n
    cancelled: Counter = field(default_factory=Counter)  # labels -> n
    revisions: Counter = field(default_factory=Counter)  # labels -> n
    events: Counter = field(default_factory=Counter)  # valid, first-seen events by type
    rejected: Counter = field(default_factory=Counter)  # reason -> n
    duplicates: int = 0
    partition_time: dict[int, float] = field(default_factory=dict)

    def with_outcome(self, outcome: str) -> set[PromiseKey]:
        return {key for key, verdict in self.verdicts.items() if verdict.outcome == outcome}

    @property
    def on_time(self) -> set[PromiseKey]:
        return self.with_outcome(ON_TIME)

    @property
    def missed(self) -> set[PromiseKey]:
        return self.with_outcome(MISSED)

    @property
    def still_open(self) -> set[PromiseKey]:
        return self.with_outcome(OPEN)

    def summary(self) -> str:
        return (f"{len(self.on_time)} on time, {len(self.missed)} missed, "
                f"{len(self.still_open)} open, {sum(self.late_deliveries.values())} late deliveries, "
                f"{sum(self.events.values())} events, {self.duplicates} duplicates, "
                f"{sum(self.rejected.values())} rejected")


@dataclass(frozen=True, slots=True)
class _Seen:
    """A valid, first-seen promise or delivery event, with when the log knew it."""

    event: Any
    known_at: float


def judge(
    log: Iterable[LoggedRecord],
    grace_seconds: float = 2.0,
    end_of_log_time: float | Mapping[int, float] | None = None,
) -> OracleResult:
    """Every promise's outcome, late deliveries and totals, from the log alone.

    ``log`` holds the records of one or more partitions; within a partition they are read
    in offset order. ``end_of_log_time`` is the time up to which the log is known to be
    complete (every partition was caught up as of then): one time for all partitions, or
    one per partition. Without it a partition's time is its highest record timestamp.
    """
    result = OracleResult()
    by_partition: dict[int, list[LoggedRecord]] = {}
    for record in log:
        by_partition.setdefault(record.partition, []).append(record)

    for partition, records in sorted(by_partition.items()):
        records.sort(key=lambda r: r.offset)
        promises: dict[str, _Seen] = {}
        deliveries: dict[str, list[_Seen]] = {}
        # promise id -> its deliveries, revisions and cancellations read after it, in order
        story: dict[str, list[_Seen]] = {}
        seen_ids: set[str] = set()
        log_time = float("-inf")
        for record in records:
            log_time = max(log_time, record.timestamp)
            event = _valid_event(record, result.rejected)
            if event is None:
                continue
            if event.event_id in seen_ids:
                result.duplicates += 1
                continue
            seen_ids.add(event.event_id)
            result.events[event.type] += 1
            if isinstance(event, Promise):
                promises.setdefault(event.promise_id, _Seen(event, log_time))
                story.setdefault(event.promise_id, [])
            elif isinstance(event, (Delivery, PromiseRevised, PromiseCancelled)):
                if isinstance(event, Delivery):
                    deliveries.setdefault(event.promise_id, []).append(_Seen(event, log_time))
                if event.promise_id in story:
                    story[event.promise_id].append(_Seen(event, log_time))

        partition_time = log_time
        end = end_of_log_time.get(partition) if isinstance(end_of_log_time, Mapping) else end_of_log_time
        if end is not None:
            partition_time = max(partition_time, end)
        result.partition_time[partition] = partition_time

        for promise_id, made in promises.items():
            if any(not isinstance(seen.event, Delivery) for seen in story[promise_id]):
                verdict = _renegotiated_verdict(partition, made.event, story[promise_id],
                                                deliveries.get(promise_id, []),
                                                grace_seconds, partition_time)
            else:
                verdict = _verdict(partition, made.event, deliveries.get(promise_id, []),
                                   grace_seconds, partition_time)
            result.verdicts[(partition, promise_id)] = verdict
            if verdict.revisions:
                result.revisions[verdict.labels] += verdict.revisions
            if verdict.outcome == CANCELLED:
                result.cancelled[verdict.labels] += 1
                continue
            if verdict.outcome == OPEN:
                result.open[verdict.labels] += 1
                continue
            result.outcomes[(*verdict.labels, verdict.outcome)] += 1
            if verdict.late_delivery:
                result.late_deliveries[verdict.labels] += 1
            if verdict.overdue:
                result.overdue[verdict.labels] += 1
    return result


def _verdict(partition: int, promise: Promise, deliveries: list[_Seen], grace: float,
             partition_time: float) -> Verdict:
    due = promise.due_at.timestamp()
    deadline = due + grace
    kept = any(
        seen.event.occurred_at.timestamp() <= due and seen.known_at <= deadline
        for seen in deliveries
    )
    if kept:
        outcome = ON_TIME
    elif partition_time > deadline:
        outcome = MISSED
    else:
        outcome = OPEN
    return _made_verdict(partition, promise, due, outcome, deliveries)


def _renegotiated_verdict(partition: int, promise: Promise, story: list[_Seen],
                          all_deliveries: list[_Seen], grace: float,
                          partition_time: float) -> Verdict:
    """A promise with revisions or cancellations: its story told in log order."""
    due = promise.due_at.timestamp()
    revisions = 0
    outcome = None
    # A delivery read before the promise waits for it, as the first delivery the book parks.
    early = [seen for seen in all_deliveries if seen not in story][:1]
    pending: _Seen | None = None  # a delivery late for the due time in force, deadline not passed
    for seen in [*early, *story]:
        event, known = seen.event, seen.known_at
        if known > due + grace and (pending is not None or not isinstance(event, Delivery)):
            outcome = MISSED  # the deadline passed before this was read
            break
        if isinstance(event, PromiseRevised):
            if event.due_at.timestamp() == due:
                continue  # nothing renegotiated
            due = event.due_at.timestamp()
            revisions += 1
            if pending is not None and pending.event.occurred_at.timestamp() <= due \
                    and pending.known_at <= due + grace:
                outcome = ON_TIME
                break
        elif isinstance(event, PromiseCancelled):
            if event.occurred_at.timestamp() <= due:
                outcome = CANCELLED
                break
        else:
            occurred = event.occurred_at.timestamp()
            if occurred <= due and known <= due + grace:
                outcome = ON_TIME
                break
            if known > due + grace:
                outcome = MISSED
                break
            if pending is None:
                pending = seen
    if outcome is None:
        outcome = MISSED if partition_time > due + grace else OPEN
    deliveries = all_deliveries if outcome != CANCELLED else []
    return _made_verdict(partition, promise, due, outcome, deliveries, revisions)


def _made_verdict(partition: int, promise: Promise, due: float, outcome: str,
                  deliveries: list[_Seen], revisions: int = 0) -> Verdict:
    """The verdict, with the first delivery in the log (if any) as its evidence."""
    first = deliveries[0] if deliveries else None
    return Verdict(
        partition=partition,
        promise_id=promise.promise_id,
        team=promise.team,
        kind=promise.kind.value,
        audience=promise.audience.value,
        due_at=due,
        outcome=outcome,
        delivered_at=first.event.occurred_at.timestamp() if first else None,
        delivery_known_at=first.known_at if first else None,
        revisions=revisions,
    )


def _valid_event(record: LoggedRecord, rejected: Counter) -> Any:
    try:
        event = decode_event(record.value if record.value is not None else b"")
    except InvalidEvent as invalid:
        rejected[invalid.reason] += 1
        return None
    if record.key is None or record.key != event.case_id.encode():
        rejected["key_mismatch"] += 1
        return None
    return event
