"""The traffic simulator plans realistic, self-consistent cases (pure: no Kafka, no sleeping)."""

from __future__ import annotations

import random
import threading
from collections import Counter
from datetime import datetime, timedelta, timezone

import kafka
import pytest
from hypothesis import given, settings, strategies as st

from streams.simulation import (
    CHANNELS,
    PROMISE_KINDS,
    CasePlanner,
    ScheduledEvent,
    SimulationError,
    SimulationProfile,
    TrafficSchedule,
    run_simulation,
)

START = datetime(2026, 11, 28, 14, 0, tzinfo=timezone.utc)
CASES = 2_000


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def plan_many(cases: int = CASES, seed: int = 7, profile: SimulationProfile | None = None,
              ) -> list[ScheduledEvent]:
    planner = CasePlanner(profile, random.Random(seed))
    planned = []
    for i in range(cases):
        # Cases overlap, as in live traffic: a new one every 200 ms.
        planned.extend(planner.plan_case(START + timedelta(milliseconds=200 * i)))
    return planned


@pytest.fixture(scope="module")
def planned() -> list[ScheduledEvent]:
    return plan_many()


def promise_outcomes(planned: list[ScheduledEvent]) -> Counter:
    """Classify each promise from the events alone, the way servicewatch will judge it."""
    due = {i.event["promise_id"]: at(i.event["due_at"])
           for i in planned if i.event["type"] == "promise"}
    delivered = {i.event["promise_id"]: at(i.event["occurred_at"])
                 for i in planned if i.event["type"] == "delivery"}
    return Counter("never" if pid not in delivered
                   else "on_time" if delivered[pid] <= due_at else "late"
                   for pid, due_at in due.items())


def test_late_and_never_shares_match_the_profile(planned):
    outcomes = promise_outcomes(planned)
    total = sum(outcomes.values())
    assert total > 1_500  # 0-2 promises per case: about one on average
    profile = SimulationProfile()
    assert outcomes["late"] / total == pytest.approx(profile.late_share, abs=0.03)
    assert outcomes["never"] / total == pytest.approx(profile.never_share, abs=0.02)


@pytest.mark.parametrize(("late", "never", "expected"), [
    (0.0, 0.0, "on_time"), (1.0, 0.0, "late"), (0.0, 1.0, "never")])
def test_fate_shares_are_obeyed_at_the_extremes(late, never, expected):
    # Pins the intent: a delivery meant to be on time is at or before due_at, a late one after.
    outcomes = promise_outcomes(plan_many(300, profile=SimulationProfile(
        late_share=late, never_share=never)))
    assert set(outcomes) == {expected}


def test_every_delivery_follows_its_own_promise_in_the_same_case(planned):
    promises = {}
    for item in planned:
        event = item.event
        if event["type"] == "promise":
            assert event["promise_id"] not in promises
            promises[event["promise_id"]] = item
        elif event["type"] == "delivery":
            promise = promises[event["promise_id"]]  # KeyError: delivery before its promise
            assert promise.key == item.key
            assert promise.event["case_id"] == event["case_id"]
            assert promise.send_at < item.send_at


def test_delivery_timing_relative_to_due_at(planned):
    due = {i.event["promise_id"]: at(i.event["due_at"])
           for i in planned if i.event["type"] == "promise"}
    margins = [due[i.event["promise_id"]] - at(i.event["occurred_at"])
               for i in planned if i.event["type"] == "delivery"]
    early = [m for m in margins if m >= timedelta(0)]
    late = [m for m in margins if m < timedelta(0)]
    assert early and late
    # Early deliveries keep a real margin, so a few ms of send-loop jitter cannot make them late.
    assert min(early) >= timedelta(milliseconds=50)
    assert min(-m for m in late) >= timedelta(seconds=1)


def test_promises_are_due_5_to_40_seconds_after_they_are_made(planned):
    for item in planned:
        if item.event["type"] == "promise":
            window = at(item.event["due_at"]) - at(item.event["occurred_at"])
            assert timedelta(seconds=5) <= window <= timedelta(seconds=40)
            assert item.event["kind"] in PROMISE_KINDS


def test_customer_times_precede_the_event(planned):
    for item in planned:
        event = item.event
        if event["type"] == "greeting":
            assert at(event["contact_at"]) <= at(event["occurred_at"])
        if event["type"] == "response":
            assert at(event["requested_at"]) <= at(event["occurred_at"])
            assert event.get("priority", "normal") in {"low", "normal", "high", "urgent"}


def test_events_are_sent_at_their_occurred_at_and_never_before_the_contact():
    planner = CasePlanner(rng=random.Random(3))
    for _ in range(200):
        case = planner.plan_case(START)
        assert [i.send_at for i in case] == sorted(i.send_at for i in case)
        assert case[0].event["type"] == "greeting"
        for item in case:
            assert item.send_at == at(item.event["occurred_at"])
            assert item.send_at >= START


def test_every_timestamp_is_utc_with_an_offset(planned):
    for item in planned:
        for name in ("occurred_at", "contact_at", "requested_at", "due_at"):
            if name in item.event:
                moment = at(item.event[name])
                assert moment.utcoffset() == timedelta(0), item.event
                assert item.event[name].endswith("+00:00")


def test_event_ids_are_unique(planned):
    ids = [i.event["event_id"] for i in planned]
    assert len(set(ids)) == len(ids)


def test_key_is_the_case_id_and_envelope_is_complete(planned):
    for item in planned:
        event = item.event
        assert item.key == event["case_id"]
        assert event["channel"] in CHANNELS
        assert event["audience"] in {"external", "internal"}
        assert {"event_id", "type", "occurred_at", "team"} <= event.keys()


def test_case_shape_greeting_responses_promises(planned):
    per_case: dict[str, Counter] = {}
    for item in planned:
        per_case.setdefault(item.key, Counter())[item.event["type"]] += 1
    assert len(per_case) == CASES
    for counts in per_case.values():
        assert counts["greeting"] == 1
        assert 1 <= counts["response"] <= 3
        assert 0 <= counts["promise"] <= 2
        assert counts["delivery"] <= counts["promise"]
    promise_counts = Counter(c["promise"] for c in per_case.values())
    assert set(promise_counts) == {0, 1, 2}


def test_traffic_is_varied(planned):
    events = [i.event for i in planned]
    assert len({e["team"] for e in events}) >= 3
    assert len({e["channel"] for e in events}) >= 3
    internal = sum(e["audience"] == "internal" for e in events if e["type"] == "greeting")
    assert internal / CASES == pytest.approx(0.10, abs=0.03)


def test_same_seed_same_traffic():
    assert plan_many(20, seed=11) == plan_many(20, seed=11)
    assert plan_many(20, seed=11) != plan_many(20, seed=12)


def test_naive_now_is_rejected():
    with pytest.raises(ValueError, match="timezone-aware"):
        CasePlanner().plan_case(datetime(2026, 11, 28, 14, 0))


def test_profile_rejects_impossible_shares():
    with pytest.raises(ValueError):
        SimulationProfile(late_share=0.7, never_share=0.5)
    with pytest.raises(ValueError):
        SimulationProfile(channel_weights={"pigeon": 1.0})


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32), offset=st.integers(-10**9, 10**9))
def test_any_seed_and_start_yield_a_consistent_case(seed, offset):
    now = START + timedelta(seconds=offset)
    case = CasePlanner(rng=random.Random(seed)).plan_case(now)
    promised = {i.event["promise_id"] for i in case if i.event["type"] == "promise"}
    for item in case:
        assert item.send_at >= now
        if item.event["type"] == "delivery":
            assert item.event["promise_id"] in promised


# --- TrafficSchedule -----------------------------------------------------------------------


def test_schedule_releases_only_due_events_in_send_order():
    schedule = TrafficSchedule(CasePlanner(rng=random.Random(5)))
    total = sum(len(schedule.add_case(START + timedelta(seconds=s))) for s in range(50))
    assert schedule.pending == total

    released: list[ScheduledEvent] = []
    now = START
    while schedule.pending:
        now += timedelta(seconds=7)
        batch = schedule.due(now)
        assert all(i.send_at <= now for i in batch)
        assert schedule.next_send_at is None or schedule.next_send_at > now
        released.extend(batch)
    assert len(released) == total
    assert [i.send_at for i in released] == sorted(i.send_at for i in released)


def test_schedule_due_before_anything_is_due_returns_nothing():
    schedule = TrafficSchedule(CasePlanner(rng=random.Random(5)))
    planned = schedule.add_case(START)
    assert schedule.due(START - timedelta(seconds=1)) == []
    assert schedule.pending == len(planned)


def test_schedule_keeps_insertion_order_for_equal_times():
    schedule = TrafficSchedule()
    first = ScheduledEvent(START, "a", {"n": 1})
    second = ScheduledEvent(START, "b", {"n": 2})
    schedule.add(first)
    schedule.add(second)
    assert schedule.due(START) == [first, second]


# --- Kafka shell, with a stand-in producer --------------------------------------------------


class FakeProducer:
    instances: list[FakeProducer] = []
    on_send: staticmethod = staticmethod(lambda producer: None)  # tests hook in here

    def __init__(self, **config):
        self.config = config
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.flushed = self.closed = False
        FakeProducer.instances.append(self)

    def send(self, topic, key=None, value=None):
        self.sent.append((topic, self.config["key_serializer"](key),
                          self.config["value_serializer"](value)))
        self.on_send(self)
        return _Future()

    def flush(self, timeout=None):
        self.flushed = True

    def close(self, timeout=None):
        self.closed = True


class _Future:
    def add_errback(self, callback):
        return self


@pytest.fixture
def fake_kafka(monkeypatch):
    FakeProducer.instances.clear()
    monkeypatch.setattr(kafka, "KafkaProducer", FakeProducer)
    return FakeProducer.instances


def test_run_simulation_sends_keyed_json_and_closes(fake_kafka, monkeypatch):
    stop = threading.Event()
    monkeypatch.setattr(FakeProducer, "on_send", staticmethod(lambda producer: stop.set()))
    instant_greeting = SimulationProfile(quick_greeting_share=1.0,
                                         quick_greeting_seconds=(0.0, 0.0))
    stats = run_simulation("kafka://127.0.0.1:9092", "servicewatch.events", stop=stop,
                           profile=instant_greeting, seed=1)
    (producer,) = fake_kafka
    assert producer.config["bootstrap_servers"] == ["127.0.0.1:9092"]
    assert producer.config["acks"] == "all"
    topic, key, value = producer.sent[0]
    assert topic == "servicewatch.events"
    assert f'"case_id":"{key.decode()}"' in value.decode()
    assert stats.cases == 1 and stats.sent_by_type == {"greeting": 1}
    assert stats.pending > 0  # the rest of the case is dropped at stop, as documented
    assert producer.flushed and producer.closed


def test_run_simulation_stops_at_once_when_asked(fake_kafka):
    stop = threading.Event()
    stop.set()
    progress = []
    stats = run_simulation("127.0.0.1:9092", "t", stop=stop, on_progress=progress.append)
    assert stats.sent == 0 and progress == [stats]
    assert fake_kafka[0].closed


def test_unreachable_broker_gives_a_friendly_error(monkeypatch):
    def refuse(**config):
        raise kafka.errors.KafkaTimeoutError("Unable to bootstrap from 127.0.0.1:1")
    monkeypatch.setattr(kafka, "KafkaProducer", refuse)
    with pytest.raises(SimulationError, match="SERVICEWATCH_BROKER"):
        run_simulation("kafka://127.0.0.1:1", "t", duration=1)
