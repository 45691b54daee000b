"""Turns one consumed record into state changes, metrics and, if invalid, a dead letter.

Synchronous and free of Faust, so the agent and the tests drive the same code;
the caller owns sending dead letters and persisting.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterable

from schemas import InvalidEvent, decode_event
from schemas.events import Delivery, Greeting, Promise, Response
from streams.core.promises import LateDelivery, PromiseKept, PromiseMissed, PromiseRecord
from streams.metrics import Instruments
from streams.state import PartitionState, PartitionStates

# A producer's clock far ahead must not drag a partition's time forward and
# declare every open promise missed at once.
MAX_FUTURE_SKEW_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: str
    detail: str


class EventProcessor:
    def __init__(self, states: PartitionStates, instruments: Instruments) -> None:
        self.states = states
        self.instruments = instruments

    def process(
        self, partition: int, offset: int, timestamp: float, key: bytes | None, value: bytes | None
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
        if event.event_id in state.seen:
            self.instruments.duplicates.inc()
            if isinstance(event, (Promise, Delivery)):
                # Applied again all the same: the book ignores what it already has, and
                # if a crash kept this id but lost the record it wrote, this restores it.
                self._apply(state, event, known_at)
                self.states.persist(state)
            return None
        self.instruments.by_type[event.type].inc()
        self._apply(state, event, known_at)
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
        self.states.persist(state)

    def record(self, changes: Iterable) -> None:
        instruments = self.instruments
        for change in changes:
            team, kind, audience = change.record.labels
            if isinstance(change, PromiseKept):
                instruments.observe_margin(team, kind, audience, change.margin_seconds)
            elif isinstance(change, LateDelivery):
                instruments.observe_lateness(team, kind, audience, change.lateness_seconds)
            elif isinstance(change, PromiseMissed):
                instruments.team_label(team)

    def _apply(self, state: PartitionState, event, known_at: float) -> None:
        instruments = self.instruments
        if isinstance(event, Greeting):
            seconds = (event.occurred_at - event.contact_at).total_seconds()
            instruments.observe_greeting(event.team, event.channel, event.audience, seconds)
        elif isinstance(event, Response):
            seconds = (event.occurred_at - event.requested_at).total_seconds()
            instruments.observe_response(event.team, event.channel, event.audience, seconds)
        elif isinstance(event, Promise):
            instruments.team_label(event.team)
            record = PromiseRecord(
                promise_id=event.promise_id,
                case_id=event.case_id,
                team=event.team,
                kind=event.kind.value,
                audience=event.audience.value,
                channel=event.channel.value,
                due_at=event.due_at.timestamp(),
            )
            self.record(state.book.make(record, known_at=known_at))
        elif isinstance(event, Delivery):
            changes = state.book.deliver(
                event.promise_id, event.case_id, event.occurred_at.timestamp(), known_at
            )
            self.record(changes)

    def reject(self, reason: str, detail: str) -> Rejection:
        self.instruments.by_reason[reason].inc()
        return Rejection(reason, detail)
