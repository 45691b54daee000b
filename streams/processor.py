"""Turns one consumed record into state changes, metrics and, if invalid, a dead letter.

Synchronous and free of Faust, so the agent and the tests drive the same code;
the caller owns sending dead letters and findings, and persisting.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Iterable

from schemas import InvalidEvent, decode_event
from schemas.events import (
    Complaint,
    Delivery,
    Feedback,
    Greeting,
    Inquiry,
    Promise,
    PromiseCancelled,
    PromiseRevised,
    Response,
)
from schemas.partitioning import murmur2_partition
from schemas.replay_hold import Headers, replay_hold_until
from streams.core.promises import (
    LateDelivery,
    PromiseAtRisk,
    PromiseKept,
    PromiseMissed,
    PromiseRecord,
)
from streams.findings import (
    PROMISE_AT_RISK,
    PROMISE_MISSED,
    Finding,
    promise_finding,
    response_overdue_finding,
)
from streams.metrics import Instruments
from streams.policy import Policy
from streams.state import PartitionState, PartitionStates

log = logging.getLogger(__name__)

# Events whose effect lives in the books, which ignore a repeat: a duplicate is applied
# again (without counting it) in case a crash lost what the first one wrote.
PROMISE_EVENTS = (Promise, Delivery, PromiseRevised, PromiseCancelled)
REAPPLIED_EVENTS = (*PROMISE_EVENTS, Inquiry, Response)

# A producer's clock far ahead must not drag a partition's time forward and
# declare every open promise missed at once.
MAX_FUTURE_SKEW_SECONDS = 300.0
# A backfill's hold is at most one gap of its history (at its speed) and a margin ahead;
# a header asking for more than a day holds only a day.
MAX_HOLD_AHEAD_SECONDS = 86_400.0
# A misplacing emitter misplaces steadily: one warning a minute, with the count, is enough.
MISPLACED_WARNING_EVERY = 60.0


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: str
    detail: str


class EventProcessor:
    """``findings`` collects what to publish; the caller sends and clears it."""

    def __init__(
        self, states: PartitionStates, instruments: Instruments, policy: Policy | None = None
    ) -> None:
        self.states = states
        self.instruments = instruments
        self.policy = policy if policy is not None else Policy.default()
        self.findings: list[Finding] = []
        # The events topic's partition count, once known: records are then checked against
        # where Kafka's default partitioner puts their key (schemas/partitioning.py).
        self.topic_partitions: int | None = None
        self._misplaced = 0
        self._misplaced_warned_at: float | None = None

    def process(
        self, partition: int, offset: int, timestamp: float, key: bytes | None, value: bytes | None,
        headers: Headers = None,
    ) -> Rejection | None:
        state = self.states.get(partition)
        known_at = state.clock.observe(min(timestamp, time.time() + MAX_FUTURE_SKEW_SECONDS))
        state.next_offset = offset + 1
        try:
            event = decode_event(value if value is not None else b"")
        except InvalidEvent as invalid:
            return self.reject(invalid.reason, invalid.detail)
        if key is None or key != event.case_id.encode():
            shown = "no key" if key is None else f"key {key[:64]!r}"
            return self.reject(
                "key_mismatch",
                f"message has {shown} but case_id {event.case_id[:64]!r}; "
                "send every event with the case id as its Kafka message key",
            )
        hold = replay_hold_until(headers)  # from valid events only: a backfill sends no other
        if hold is not None:
            hold = min(hold, time.time() + MAX_HOLD_AHEAD_SECONDS)
        state.clock.hold(hold)
        partitions = self.topic_partitions
        if partitions and murmur2_partition(key, partitions) != partition:
            self._count_misplaced(partition, key, partitions)
        if event.event_id in state.seen:
            self.instruments.duplicates.inc()
            if isinstance(event, REAPPLIED_EVENTS):
                # Applied again all the same: the books ignore what they already have, and
                # if a crash kept this id but lost the record it wrote, this restores it.
                self._apply(state, event, offset, known_at, repeat=True)
                self.states.persist(state)
            return None
        self.instruments.by_type[event.type].inc()
        self._apply(state, event, offset, known_at)
        self.states.persist(state)
        # Kept across restarts and rebalances for every type: the book alone would keep
        # outcomes right, but the per-type event counts must not count a redelivery.
        self.states.remember_event(state, event.event_id)
        return None

    def sweep(self, state: PartitionState) -> None:
        """Declare the misses that the partition's time has made certain."""
        now = state.clock.now()
        if now is None:
            return
        self.record(state.book.expire(now))
        self.record_inquiries(state.inquiries.expire(now))
        self.states.persist(state)

    def record(self, changes: Iterable) -> None:
        """Metrics and findings for changes of the promise book."""
        instruments = self.instruments
        for change in changes:
            team, kind, audience = change.record.labels
            if isinstance(change, PromiseKept):
                instruments.observe_margin(team, kind, audience, change.margin_seconds)
            elif isinstance(change, LateDelivery):
                instruments.observe_lateness(team, kind, audience, change.lateness_seconds)
            elif isinstance(change, PromiseMissed):
                instruments.team_label(team)
                self.findings.append(promise_finding(PROMISE_MISSED, change.record, change.declared_at))
            elif isinstance(change, PromiseAtRisk):
                self.findings.append(promise_finding(PROMISE_AT_RISK, change.record, change.declared_at))

    def record_inquiries(self, changes: Iterable) -> None:
        """Findings for changes of the inquiries book (its record's kind is the channel)."""
        for change in changes:
            if isinstance(change, PromiseMissed):
                self.instruments.team_label(change.record.team)
                self.findings.append(response_overdue_finding(change.record, change.declared_at))

    def _apply(self, state: PartitionState, event, offset: int, known_at: float, repeat: bool = False) -> None:
        """Apply one valid event; a ``repeat`` (a duplicate) changes only the books."""
        instruments, policy = self.instruments, self.policy
        if isinstance(event, PROMISE_EVENTS) and state.book.reflects(event.promise_id, offset):
            return  # read again after a crash: its promise's stored record already holds it
        if isinstance(event, Delivery):
            changes = state.book.deliver(
                event.promise_id, event.case_id, event.occurred_at.timestamp(), known_at
            )
            self.record(changes)
        elif isinstance(event, Promise):
            instruments.team_label(event.team)
            due_at = event.due_at.timestamp()
            kind = event.kind.value
            record = PromiseRecord(
                promise_id=event.promise_id,
                case_id=event.case_id,
                team=event.team,
                kind=kind,
                audience=event.audience.value,
                channel=event.channel.value,
                due_at=due_at,
                made_at=event.occurred_at.timestamp(),
                at_risk_at=policy.warning_time(event.team, kind, due_at),
            )
            self.record(state.book.make(record, known_at=known_at))
        elif isinstance(event, Response):
            requested_at, answered_at = event.requested_at.timestamp(), event.occurred_at.timestamp()
            if not repeat:
                target = policy.response_target(event.team, event.channel, event.priority)
                instruments.observe_response(
                    event.team, event.channel, event.audience,
                    target.elapsed(requested_at, answered_at), target.seconds,
                )
            self.record_inquiries(state.inquiries.answer(event.case_id, answered_at, known_at))
        elif isinstance(event, Greeting):
            contact_at, greeted_at = event.contact_at.timestamp(), event.occurred_at.timestamp()
            target = policy.greeting_target(event.team, event.channel, event.priority)
            instruments.observe_greeting(
                event.team, event.channel, event.audience,
                target.elapsed(contact_at, greeted_at), target.seconds,
            )
        elif isinstance(event, Inquiry):
            instruments.team_label(event.team)
            asked_at = event.occurred_at.timestamp()
            target = policy.response_target(event.team, event.channel, event.priority)
            record = PromiseRecord(
                promise_id=event.event_id,
                case_id=event.case_id,
                team=event.team,
                kind=event.channel.value,  # the inquiries book's second label is the channel
                audience=event.audience.value,
                channel=event.channel.value,
                due_at=target.deadline(asked_at),
                made_at=asked_at,
            )
            self.record_inquiries(state.inquiries.ask(record, known_at))
        elif isinstance(event, PromiseRevised):
            record = state.book.get(event.promise_id)
            due_at = event.due_at.timestamp()
            warn_at = policy.warning_time(record.team, record.kind, due_at) if record else None
            changes = state.book.revise(event.promise_id, due_at, known_at, at_risk_at=warn_at,
                                        revision_id=event.event_id)
            if not changes and not repeat:
                instruments.promise_change_ignored(event.type)
            self.record(changes)
        elif isinstance(event, PromiseCancelled):
            changes = state.book.cancel(event.promise_id, event.occurred_at.timestamp(), known_at,
                                        cancellation_id=event.event_id)
            if not changes and not repeat:
                instruments.promise_change_ignored(event.type)
            self.record(changes)
        elif isinstance(event, Feedback):
            instruments.observe_feedback(event.team, event.channel, event.audience, event.score)
        elif isinstance(event, Complaint):
            instruments.observe_complaint(event.team, event.channel, event.audience)

    def _count_misplaced(self, partition: int, key: bytes, partitions: int) -> None:
        self.instruments.misplaced.inc()
        self._misplaced += 1
        now = time.monotonic()
        if self._misplaced_warned_at is None or now - self._misplaced_warned_at >= MISPLACED_WARNING_EVERY:
            self._misplaced_warned_at = now
            misplaced, self._misplaced = self._misplaced, 0
            log.warning(
                "%d event(s) since the last warning were not on the partition Kafka's default "
                "partitioner gives their key (e.g. key %r on partition %d, murmur2 says %d of %d). If another "
                "emitter of the same cases hashes keys differently, their events are split and "
                "promises are missed: set partitioner=murmur2_random on librdkafka clients "
                "(confluent-kafka, node-rdkafka, rdkafka), a murmur2 hash partitioner on Sarama "
                "(docs/emitting.md)", misplaced, key[:64], partition,
                murmur2_partition(key, partitions), partitions)

    def reject(self, reason: str, detail: str) -> Rejection:
        self.instruments.by_reason[reason].inc()
        return Rejection(reason, detail)
