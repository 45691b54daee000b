"""Traffic simulator: realistic interaction events for demos and load tests.

Two layers:

* A pure, deterministic core (`SimulationProfile`, `CasePlanner`, `TrafficSchedule`): time is a
  parameter and randomness comes from a seeded `random.Random`, so tests can plan thousands of
  cases instantly and the same seed always yields the same events.
* A thin Kafka shell (`run_simulation`) that starts cases at a steady rate and sends each event
  when its moment comes, so event time and the record's CreateTime agree like a real emitter's.

Events are plain JSON-ready dicts (the wire format), not `schemas` models, so the simulator also
shows what an emitter in any language sends. The Kafka key is the case id.

A case tells a customer's story in events, each sent at its own occurred_at (never before the
contact):

* the contact: an ``inquiry`` (the customer's first message, with the case's priority) and a
  ``greeting`` acknowledging it;
* 1-3 rounds of question and answer: each ``response`` answers the ``inquiry`` before it, and the
  customer's follow-up question is a new ``inquiry``. A few cases (``unanswered_share``) end with
  a last inquiry that never gets a response, so overdue responses show up;
* 0-2 ``promise`` events, each made just after a response. A few promises are renegotiated once
  (``revised_share``: a ``promise_revised`` before the due time, moving it later) and a few are
  withdrawn (``cancelled_share``: a ``promise_cancelled`` before the due time, and no delivery).
  Every promise that is not cancelled is then delivered on time, late (``late_share``) or never
  (``never_share``), judged against its latest due time;
* at the end, sometimes a ``feedback`` score (lower when a promise was missed or the last
  question went unanswered) and, more rarely, a ``complaint`` (more often after a miss).

Times are compressed: a real email answer may take hours, here it takes under a minute, so a demo
shows greetings, responses, kept, late, missed, revised and cancelled promises within a minute of
starting. The demo's policy (`--policy demo`: streams/demo_policy.toml) sets response, greeting
and at-risk targets in seconds to match these compressed times.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable

log = logging.getLogger(__name__)

CHANNELS = ("phone", "email", "chat", "social", "in_person", "sms", "web", "video", "other")
PROMISE_KINDS = ("callback", "delivery", "resolution", "refund", "visit", "other")
PRIORITIES = ("low", "normal", "high", "urgent")

Range = tuple[float, float]  # (low, high) seconds unless named otherwise; drawn uniformly


def _default_channel_weights() -> dict[str, float]:
    return {"chat": 0.30, "email": 0.25, "phone": 0.20, "social": 0.08,
            "in_person": 0.05, "sms": 0.05, "web": 0.04, "video": 0.03}


def _default_response_seconds() -> dict[str, Range]:
    # Ordered like real life (phone/chat fast, email slow) but squeezed into seconds.
    return {"phone": (0.5, 5.0), "in_person": (0.5, 3.0), "chat": (1.0, 8.0),
            "video": (1.0, 8.0), "sms": (3.0, 20.0), "social": (5.0, 25.0),
            "web": (5.0, 25.0), "email": (10.0, 40.0), "other": (5.0, 25.0)}


def _default_kind_weights() -> dict[str, float]:
    return {"callback": 0.30, "resolution": 0.25, "delivery": 0.20, "refund": 0.10,
            "visit": 0.10, "other": 0.05}


def _default_priority_weights() -> dict[str, float]:
    return {"low": 0.15, "normal": 0.60, "high": 0.20, "urgent": 0.05}


# Weights of the scores 1..5 a customer gives, by how the case went.
def _default_scores_when_kept() -> tuple[float, ...]:
    return (0.02, 0.05, 0.13, 0.35, 0.45)


def _default_scores_when_slow() -> tuple[float, ...]:
    return (0.08, 0.15, 0.35, 0.30, 0.12)


def _default_scores_when_missed() -> tuple[float, ...]:
    return (0.35, 0.30, 0.20, 0.10, 0.05)


FEEDBACK_SCORES = (1, 2, 3, 4, 5)
COMPLAINT_CATEGORIES = ("response_time", "staff", "product", "billing", "communication")
MISSED_PROMISE_CATEGORY = "missed_promise"
CANCELLATION_REASONS = ("customer no longer needs it", "resolved another way", "duplicate request",
                        "customer withdrew the order")


@dataclass
class SimulationProfile:
    """What the simulated organisation looks like and how well it keeps its word."""

    teams: list[str] = field(
        default_factory=lambda: ["billing", "support", "logistics", "field-service"])
    channel_weights: dict[str, float] = field(default_factory=_default_channel_weights)
    internal_share: float = 0.10  # co-workers are customers too (audience="internal")
    # Most contacts are acknowledged at once; a few wait, so greeting-time alerts have something to do.
    quick_greeting_share: float = 0.85
    quick_greeting_seconds: Range = (0.5, 5.0)
    slow_greeting_seconds: Range = (10.0, 45.0)
    response_seconds: dict[str, Range] = field(default_factory=_default_response_seconds)
    # A slice of replies is several times slower than usual, so response targets get breached.
    slow_response_share: float = 0.10
    slow_response_factor: Range = (2.0, 3.0)
    follow_up_seconds: Range = (1.0, 10.0)  # customer's next question after a reply
    responses_per_case: tuple[int, int] = (1, 3)
    promises_per_case: tuple[int, int] = (0, 2)
    promise_after_response_seconds: Range = (0.2, 2.0)
    promise_due_seconds: Range = (5.0, 40.0)
    promise_kind_weights: dict[str, float] = field(default_factory=_default_kind_weights)
    priority_weights: dict[str, float] = field(default_factory=_default_priority_weights)
    no_priority_share: float = 0.20  # priority is optional on the wire; exercise its absence
    late_share: float = 0.15   # delivered, but after due_at
    never_share: float = 0.05  # never delivered at all
    # On-time deliveries land this fraction of the promise window before due_at. The floor keeps
    # them clear of the exact deadline so send-loop jitter cannot turn them late.
    early_margin_fraction: Range = (0.02, 0.80)
    lateness_seconds: Range = (1.0, 20.0)
    # The last question of a few cases never gets an answer: the response goes overdue.
    unanswered_share: float = 0.04
    # Promises renegotiated once: the revision is agreed this fraction of the promise window
    # after the promise (so before the old due time) and moves the due time later by this
    # fraction of the original window. Delivered on time, late or never relative to the new one.
    revised_share: float = 0.10
    revision_at_fraction: Range = (0.10, 0.70)
    revision_extension_fraction: Range = (0.25, 1.00)
    # Promises withdrawn this fraction of the window after they were made: never delivered,
    # out of the on-time/missed count. late_share and never_share apply to the others.
    cancelled_share: float = 0.03
    cancellation_at_fraction: Range = (0.10, 0.90)
    # At the end of a case (after its last event and its promises' due times) the customer
    # sometimes scores it and, rarely, complains; both more likely unhappy after a miss.
    feedback_share: float = 0.40
    feedback_delay_seconds: Range = (0.5, 5.0)
    scores_when_kept: tuple[float, ...] = field(default_factory=_default_scores_when_kept)
    scores_when_slow: tuple[float, ...] = field(default_factory=_default_scores_when_slow)
    scores_when_missed: tuple[float, ...] = field(default_factory=_default_scores_when_missed)
    complaint_share: float = 0.02
    complaint_share_after_miss: float = 0.10
    no_category_share: float = 0.30  # a complaint's category is optional on the wire
    source: str = "simulator"  # lets operators tell simulated traffic apart

    def __post_init__(self) -> None:
        if not self.teams:
            raise ValueError("profile needs at least one team")
        unknown = set(self.channel_weights) - set(CHANNELS)
        if unknown:
            raise ValueError(f"unknown channels {sorted(unknown)}; choose from {CHANNELS}")
        missing = set(self.channel_weights) - set(self.response_seconds)
        if missing:
            raise ValueError(f"no response_seconds for channels {sorted(missing)}")
        if set(self.promise_kind_weights) - set(PROMISE_KINDS):
            raise ValueError(f"promise kinds must be among {PROMISE_KINDS}")
        if set(self.priority_weights) - set(PRIORITIES):
            raise ValueError(f"priorities must be among {PRIORITIES}")
        for name in ("internal_share", "quick_greeting_share", "slow_response_share",
                     "no_priority_share", "late_share", "never_share", "unanswered_share",
                     "revised_share", "cancelled_share", "feedback_share", "complaint_share",
                     "complaint_share_after_miss", "no_category_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.late_share + self.never_share > 1.0:
            raise ValueError("late_share + never_share must not exceed 1")
        if self.revised_share + self.cancelled_share > 1.0:
            # a promise is revised or cancelled, not both
            raise ValueError("revised_share + cancelled_share must not exceed 1")
        for name in ("revision_at_fraction", "cancellation_at_fraction"):
            low, high = getattr(self, name)
            if not 0.0 < low <= high < 1.0:
                # 0 would put it at the promise itself, 1 at the due time: strictly between
                raise ValueError(f"{name} must satisfy 0 < low <= high < 1")
        low, high = self.revision_extension_fraction
        if not 0.0 < low <= high:
            raise ValueError("revision_extension_fraction must satisfy 0 < low <= high "
                             "(a revision moves the due time later)")
        low, high = self.feedback_delay_seconds
        if not 0.0 <= low <= high:
            raise ValueError("feedback_delay_seconds must satisfy 0 <= low <= high")
        for name in ("scores_when_kept", "scores_when_slow", "scores_when_missed"):
            weights = getattr(self, name)
            if len(weights) != len(FEEDBACK_SCORES) or min(weights) < 0 or sum(weights) <= 0:
                raise ValueError(f"{name} needs {len(FEEDBACK_SCORES)} non-negative weights "
                                 "(scores 1..5) with a positive sum")
        low, high = self.early_margin_fraction
        if not 0.0 <= low <= high < 1.0:
            # fraction 1 would put the delivery at the promise itself, before it exists downstream
            raise ValueError("early_margin_fraction must satisfy 0 <= low <= high < 1")
        if self.promise_due_seconds[0] <= 0 or self.lateness_seconds[0] <= 0:
            raise ValueError("promise_due_seconds and lateness_seconds must be positive")
        if self.responses_per_case[0] < 1:
            raise ValueError("every case needs at least one response")


@dataclass(frozen=True)
class ScheduledEvent:
    """One wire event and the moment to send it (its occurred_at)."""

    send_at: datetime
    key: str  # Kafka message key: the case id, so a case stays on one partition
    event: dict


@dataclass(frozen=True)
class _Case:
    case_id: str
    team: str
    channel: str
    audience: str
    agent_id: str
    customer_id: str
    priority: str | None


def _iso(moment: datetime) -> str:
    # Fixed microsecond precision so every timestamp has the same shape on the wire.
    return moment.isoformat(timespec="microseconds")


@dataclass(frozen=True)
class _PlannedPromise:
    events: list[ScheduledEvent]
    settled_by: datetime  # its last event or its (latest) due time, whichever is later
    missed: bool  # delivered late or never (cancelled ones are not missed)


class CasePlanner:
    """Plans whole cases: inquiries and greeting, 1-3 responses, 0-2 promises with their
    revisions, cancellations and deliveries, and the customer's feedback or complaint."""

    def __init__(self, profile: SimulationProfile | None = None,
                 rng: random.Random | None = None) -> None:
        self.profile = profile or SimulationProfile()
        self.rng = rng or random.Random()

    def plan_case(self, now: datetime) -> list[ScheduledEvent]:
        """Events of one case whose customer reaches out at `now`, sorted by send time.

        Every event is sent at its own occurred_at, which is never before `now`.
        """
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError("now must be timezone-aware (naive times are ambiguous)")
        now = now.astimezone(timezone.utc)
        p, rng = self.profile, self.rng
        case = self._new_case()
        priority = {"priority": case.priority} if case.priority else {}
        planned: list[ScheduledEvent] = []

        # The customer's first message is the contact itself; the greeting acknowledges it.
        planned.append(self._event(case, "inquiry", now, **priority))
        greeted_at = now + timedelta(seconds=self._greeting_delay())
        planned.append(self._event(case, "greeting", greeted_at, contact_at=_iso(now)))

        responded_at: list[datetime] = []
        slow = False
        asked_at = now
        rounds = rng.randint(*p.responses_per_case)
        for round_ in range(rounds):
            if round_:  # the customer's follow-up question
                planned.append(self._event(case, "inquiry", asked_at, **priority))
            seconds, slow_reply = self._response_time(case.channel)
            slow = slow or slow_reply
            # A reply never precedes the greeting: agents acknowledge before they answer.
            answered_at = max(asked_at + timedelta(seconds=seconds),
                              greeted_at + timedelta(milliseconds=1))
            planned.append(self._event(case, "response", answered_at,
                                       requested_at=_iso(asked_at), **priority))
            responded_at.append(answered_at)
            asked_at = answered_at + timedelta(seconds=rng.uniform(*p.follow_up_seconds))
        unanswered = rng.random() < p.unanswered_share
        if unanswered:  # one more question, and nobody answers it
            planned.append(self._event(case, "inquiry", asked_at, **priority))

        promises = [self._promise_story(case, rng.choice(responded_at) + timedelta(
                        seconds=rng.uniform(*p.promise_after_response_seconds)))
                    for _ in range(rng.randint(*p.promises_per_case))]
        for promise in promises:
            planned.extend(promise.events)

        # The customer's verdict comes once the case has played out.
        settled = max([*(item.send_at for item in planned),
                       *(promise.settled_by for promise in promises)])
        missed = any(promise.missed for promise in promises)
        if rng.random() < p.feedback_share:
            weights = (p.scores_when_missed if missed or unanswered
                       else p.scores_when_slow if slow else p.scores_when_kept)
            score = rng.choices(FEEDBACK_SCORES, weights=weights)[0]
            planned.append(self._event(case, "feedback", self._after(settled), score=score))
        if rng.random() < (p.complaint_share_after_miss if missed else p.complaint_share):
            extra = {}
            if rng.random() >= p.no_category_share:
                extra["category"] = (MISSED_PROMISE_CATEGORY if missed
                                     else rng.choice(COMPLAINT_CATEGORIES))
            planned.append(self._event(case, "complaint", self._after(settled), **extra))

        planned.sort(key=lambda item: item.send_at)  # stable: ties keep causal order
        return planned

    def _promise_story(self, case: _Case, made_at: datetime) -> _PlannedPromise:
        """A promise and what becomes of it: maybe revised or cancelled, then its delivery."""
        p, rng = self.profile, self.rng
        window = rng.uniform(*p.promise_due_seconds)
        due_at = made_at + timedelta(seconds=window)
        promise_id = f"prm-{self._hex(12)}"
        promise = self._event(case, "promise", made_at, promise_id=promise_id,
                              due_at=_iso(due_at), kind=self._pick(p.promise_kind_weights))
        events = [promise]
        change = rng.random()
        if change < p.cancelled_share:
            cancelled_at = made_at + timedelta(
                seconds=window * rng.uniform(*p.cancellation_at_fraction))
            events.append(self._event(case, "promise_cancelled", cancelled_at,
                                      promise_id=promise_id,
                                      reason=rng.choice(CANCELLATION_REASONS)))
            return _PlannedPromise(events, settled_by=cancelled_at, missed=False)
        # Deliveries are timed after the last agreement: the promise, or its revision.
        agreed_at = made_at
        if change < p.cancelled_share + p.revised_share:
            agreed_at = made_at + timedelta(seconds=window * rng.uniform(*p.revision_at_fraction))
            due_at += timedelta(seconds=window * rng.uniform(*p.revision_extension_fraction))
            events.append(self._event(case, "promise_revised", agreed_at,
                                      promise_id=promise_id, due_at=_iso(due_at)))
        fate = rng.random()
        if fate < p.never_share:
            return _PlannedPromise(events, settled_by=due_at, missed=True)
        if fate < p.never_share + p.late_share:
            delivered_at = due_at + timedelta(seconds=rng.uniform(*p.lateness_seconds))
        else:
            span = (due_at - agreed_at).total_seconds()
            delivered_at = due_at - timedelta(seconds=span * rng.uniform(*p.early_margin_fraction))
        events.append(self._event(case, "delivery", delivered_at, promise_id=promise_id))
        return _PlannedPromise(events, settled_by=max(delivered_at, due_at),
                               missed=delivered_at > due_at)

    def _after(self, moment: datetime) -> datetime:
        return moment + timedelta(seconds=self.rng.uniform(*self.profile.feedback_delay_seconds))

    def _new_case(self) -> _Case:
        p, rng = self.profile, self.rng
        internal = rng.random() < p.internal_share
        priority = None if rng.random() < p.no_priority_share else self._pick(p.priority_weights)
        return _Case(
            case_id=f"case-{self._hex(12)}",
            team=rng.choice(p.teams),
            channel=self._pick(p.channel_weights),
            audience="internal" if internal else "external",
            agent_id=f"agent-{rng.randrange(1, 41):03d}",
            customer_id=(f"staff-{rng.randrange(1, 500):04d}" if internal
                         else f"cust-{rng.randrange(1, 1_000_000):06d}"),
            priority=priority,
        )

    def _event(self, case: _Case, event_type: str, at: datetime, **fields) -> ScheduledEvent:
        event = {
            "event_id": uuid.UUID(int=self.rng.getrandbits(128), version=4).hex,
            "type": event_type,
            "occurred_at": _iso(at),
            "case_id": case.case_id,
            "team": case.team,
            "channel": case.channel,
            "agent_id": case.agent_id,
            "customer_id": case.customer_id,
            "source": self.profile.source,
            "audience": case.audience,
            **fields,
        }
        return ScheduledEvent(send_at=at, key=case.case_id, event=event)

    def _greeting_delay(self) -> float:
        p = self.profile
        quick = self.rng.random() < p.quick_greeting_share
        return self.rng.uniform(*(p.quick_greeting_seconds if quick else p.slow_greeting_seconds))

    def _response_time(self, channel: str) -> tuple[float, bool]:
        """Seconds to answer, and whether this reply is one of the slow ones."""
        p = self.profile
        seconds = self.rng.uniform(*p.response_seconds[channel])
        slow = self.rng.random() < p.slow_response_share
        if slow:
            seconds *= self.rng.uniform(*p.slow_response_factor)
        return seconds, slow

    def _pick(self, weights: dict[str, float]) -> str:
        return self.rng.choices(list(weights), weights=list(weights.values()))[0]

    def _hex(self, digits: int) -> str:
        return f"{self.rng.getrandbits(4 * digits):0{digits}x}"


class TrafficSchedule:
    """Events planned for the future, released in send-time order once their time has come."""

    def __init__(self, planner: CasePlanner | None = None) -> None:
        self.planner = planner or CasePlanner()
        self._heap: list[tuple[datetime, int, ScheduledEvent]] = []
        self._sequence = itertools.count()  # tie-breaker: equal times leave in insertion order

    def add_case(self, now: datetime) -> list[ScheduledEvent]:
        planned = self.planner.plan_case(now)
        for item in planned:
            self.add(item)
        return planned

    def add(self, item: ScheduledEvent) -> None:
        heapq.heappush(self._heap, (item.send_at, next(self._sequence), item))

    def due(self, now: datetime) -> list[ScheduledEvent]:
        """Remove and return every event with send_at <= now, earliest first."""
        released = []
        while self._heap and self._heap[0][0] <= now:
            released.append(heapq.heappop(self._heap)[2])
        return released

    @property
    def pending(self) -> int:
        return len(self._heap)

    @property
    def next_send_at(self) -> datetime | None:
        return self._heap[0][0] if self._heap else None


# ---------------------------------------------------------------------------------------------
# Kafka shell


class SimulationError(RuntimeError):
    """The simulator cannot do its job; the message says how to fix it."""


@dataclass
class SimulationStats:
    sent_by_type: dict[str, int] = field(default_factory=dict)
    cases: int = 0     # cases started
    pending: int = 0   # events planned but not yet sent
    failed: int = 0    # sends the broker did not acknowledge

    @property
    def sent(self) -> int:
        return sum(self.sent_by_type.values())


TICK_SECONDS = 0.05
PROGRESS_EVERY_SECONDS = 1.0


def _bootstrap_servers(bootstrap: str) -> list[str]:
    """Accept the product's broker URL form (kafka://host:port, comma-separated) or bare host:port."""
    from streams.topics import parse_broker_url

    try:
        return parse_broker_url(bootstrap).split(",")
    except ValueError as error:
        raise SimulationError(str(error)) from None


def _connection_errors() -> tuple[type[BaseException], ...]:
    from kafka import errors
    # kafka-python 3 reports an unreachable bootstrap as KafkaTimeoutError; 2.x used
    # NoBrokersAvailable. Accept both so either version gets the friendly message.
    names = ("NoBrokersAvailable", "KafkaTimeoutError", "KafkaConnectionError")
    return tuple(getattr(errors, name) for name in names if hasattr(errors, name))


def _unreachable(bootstrap: str, error: BaseException) -> SimulationError:
    return SimulationError(
        f"cannot reach a Kafka broker at {bootstrap} ({error}). Start one (e.g. "
        "`docker compose up kafka`, or the embedded broker), or point the simulator at a running "
        "broker with --broker / SERVICEWATCH_BROKER.")


def _open_producer(bootstrap: str, connect_timeout: float):
    from kafka import KafkaProducer
    try:
        return KafkaProducer(
            bootstrap_servers=_bootstrap_servers(bootstrap),
            key_serializer=lambda key: key.encode("utf-8"),
            value_serializer=lambda value: json.dumps(value, separators=(",", ":")).encode("utf-8"),
            acks="all",
            linger_ms=5,
            bootstrap_timeout_ms=int(connect_timeout * 1000),
            # Fail within seconds instead of blocking the loop for a minute if the broker vanishes.
            max_block_ms=int(connect_timeout * 1000),
        )
    except _connection_errors() as error:
        raise _unreachable(bootstrap, error) from error


def run_simulation(bootstrap: str, topic: str, *, cases_per_second: float = 5.0,
                   duration: float | None = None, stop: threading.Event | None = None,
                   profile: SimulationProfile | None = None, seed: int | None = None,
                   on_progress: Callable[[SimulationStats], None] | None = None,
                   connect_timeout: float = 10.0) -> SimulationStats:
    """Send simulated interaction events to `topic` until `duration` seconds pass or `stop` is set.

    New cases start at `cases_per_second` (fractional rates accumulate); each event is sent when
    its occurred_at arrives, so the record's CreateTime matches the event time. Events planned
    for after the stop are dropped, not sent early: sending them would put future-dated events
    in the log, and dropping them just looks like cases still open (promises never delivered
    count as missed once due). `on_progress` is called about once a second and once at the end.

    A fixed `seed` reproduces the same event ids, so a second run with the same seed is seen as
    duplicates by servicewatch; leave it None for live traffic.

    Raises SimulationError if the broker cannot be reached or stops accepting events.
    """
    if cases_per_second < 0:
        raise ValueError("cases_per_second must not be negative")
    schedule = TrafficSchedule(CasePlanner(profile, random.Random(seed)))
    stats = SimulationStats()
    lock = threading.Lock()

    def count_failure(error: BaseException) -> None:  # runs on the producer's I/O thread
        log.warning("event not acknowledged by the broker: %s", error)
        with lock:
            stats.failed += 1

    producer = _open_producer(bootstrap, connect_timeout)
    started = last_tick = last_progress = time.monotonic()
    case_credit = 1.0  # start the first case at once so a short demo shows traffic immediately
    try:
        while not (stop is not None and stop.is_set()):
            tick = time.monotonic()
            if duration is not None and tick - started >= duration:
                break
            now = datetime.now(timezone.utc)
            case_credit += (tick - last_tick) * cases_per_second
            last_tick = tick
            while case_credit >= 1.0:
                schedule.add_case(now)
                stats.cases += 1
                case_credit -= 1.0
            for item in schedule.due(now):
                producer.send(topic, key=item.key, value=item.event).add_errback(count_failure)
                kind = item.event["type"]
                stats.sent_by_type[kind] = stats.sent_by_type.get(kind, 0) + 1
            stats.pending = schedule.pending
            if on_progress is not None and tick - last_progress >= PROGRESS_EVERY_SECONDS:
                on_progress(stats)
                last_progress = tick
            if stop is not None:
                stop.wait(TICK_SECONDS)
            else:
                time.sleep(TICK_SECONDS)
        producer.flush(timeout=connect_timeout)
    except _connection_errors() as error:
        raise SimulationError(
            f"Kafka at {bootstrap} stopped accepting events for topic {topic!r} ({error}). Check "
            "that the broker is still up and that the topic exists (create it, or enable "
            "auto.create.topics.enable on the broker).") from error
    finally:
        producer.close(timeout=connect_timeout)
    stats.pending = schedule.pending
    if on_progress is not None:
        on_progress(stats)
    return stats
