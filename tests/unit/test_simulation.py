"""The traffic simulator plans realistic, self-consistent cases (pure: no Kafka, no sleeping)."""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from datetime import datetime, timedelta, timezone

import kafka
import pytest
from hypothesis import given, settings, strategies as st

from schemas import decode_event
from streams.core.oracle import LoggedRecord, judge
from streams.simulation import (
    CHANNELS,
    FEEDBACK_SCORES,
    PROMISE_KINDS,
    CasePlanner,
    ScheduledEvent,
    SimulationError,
    SimulationProfile,
    TrafficSchedule,
    run_simulation,
)

START = datetime(2026, 11, 28, 14, 0, tzinfo=timezone.utc)
CASES = 4_000


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


def of_type(planned: list[ScheduledEvent], event_type: str) -> list[dict]:
    return [i.event for i in planned if i.event["type"] == event_type]


def due_times(planned: list[ScheduledEvent]) -> dict[str, datetime]:
    """Each promise's due time in force at the end: its revision's, if it was revised."""
    due = {e["promise_id"]: at(e["due_at"]) for e in of_type(planned, "promise")}
    due.update({e["promise_id"]: at(e["due_at"]) for e in of_type(planned, "promise_revised")})
    return due


def promise_outcomes(planned: list[ScheduledEvent]) -> Counter:
    """Classify each promise from the events alone, the way servicewatch will judge it."""
    cancelled = {e["promise_id"] for e in of_type(planned, "promise_cancelled")}
    delivered = {e["promise_id"]: at(e["occurred_at"]) for e in of_type(planned, "delivery")}
    return Counter("cancelled" if pid in cancelled
                   else "never" if pid not in delivered
                   else "on_time" if delivered[pid] <= due_at else "late"
                   for pid, due_at in due_times(planned).items())


def test_late_and_never_shares_match_the_profile(planned):
    outcomes = promise_outcomes(planned)
    total = sum(outcomes.values())
    assert total > 3_000  # 0-2 promises per case: about one on average
    counted = total - outcomes["cancelled"]  # late and never are shares of the promises kept in count
    profile = SimulationProfile()
    assert outcomes["late"] / counted == pytest.approx(profile.late_share, abs=0.03)
    assert outcomes["never"] / counted == pytest.approx(profile.never_share, abs=0.02)


@pytest.mark.parametrize(("late", "never", "expected"), [
    (0.0, 0.0, "on_time"), (1.0, 0.0, "late"), (0.0, 1.0, "never")])
def test_fate_shares_are_obeyed_at_the_extremes(late, never, expected):
    # Pins the intent: a delivery meant to be on time is at or before due_at, a late one after,
    # judged against the latest due time of a revised promise.
    outcomes = promise_outcomes(plan_many(300, profile=SimulationProfile(
        late_share=late, never_share=never, revised_share=0.5)))
    assert set(outcomes) - {"cancelled"} == {expected}


def test_every_planned_event_is_a_valid_event(planned):
    types = Counter()
    for item in planned:
        event = decode_event(json.dumps(item.event).encode())  # raises InvalidEvent if not
        assert event.occurred_at == item.send_at
        types[event.type] += 1
    assert set(types) == {"greeting", "inquiry", "response", "promise", "promise_revised",
                          "promise_cancelled", "delivery", "feedback", "complaint"}


def test_revision_cancellation_feedback_and_complaint_shares_match_the_profile(planned):
    profile = SimulationProfile()
    promises = len(of_type(planned, "promise"))
    revised = {e["promise_id"] for e in of_type(planned, "promise_revised")}
    cancelled = {e["promise_id"] for e in of_type(planned, "promise_cancelled")}
    assert len(revised) == len(of_type(planned, "promise_revised"))  # at most once each
    assert not revised & cancelled
    assert len(revised) / promises == pytest.approx(profile.revised_share, abs=0.02)
    assert len(cancelled) / promises == pytest.approx(profile.cancelled_share, abs=0.01)
    assert len(of_type(planned, "feedback")) / CASES == pytest.approx(profile.feedback_share, abs=0.03)
    complaints = len(of_type(planned, "complaint")) / CASES
    assert profile.complaint_share <= complaints <= profile.complaint_share_after_miss


def test_revisions_come_before_the_old_due_time_and_move_it_later(planned):
    promises = {e["promise_id"]: e for e in of_type(planned, "promise")}
    for revision in of_type(planned, "promise_revised"):
        promise = promises[revision["promise_id"]]
        assert revision["case_id"] == promise["case_id"]
        assert at(promise["occurred_at"]) < at(revision["occurred_at"]) < at(promise["due_at"])
        assert at(revision["due_at"]) > at(promise["due_at"])


def test_cancellations_come_before_the_due_time_and_nothing_is_delivered(planned):
    promises = {e["promise_id"]: e for e in of_type(planned, "promise")}
    delivered = {e["promise_id"] for e in of_type(planned, "delivery")}
    cancellations = of_type(planned, "promise_cancelled")
    assert cancellations
    for cancellation in cancellations:
        promise = promises[cancellation["promise_id"]]
        assert cancellation["case_id"] == promise["case_id"]
        assert at(promise["occurred_at"]) < at(cancellation["occurred_at"]) < at(promise["due_at"])
        assert cancellation["promise_id"] not in delivered


def test_deliveries_of_revised_promises_come_after_the_revision(planned):
    revised_at = {e["promise_id"]: at(e["occurred_at"]) for e in of_type(planned, "promise_revised")}
    for delivery in of_type(planned, "delivery"):
        if delivery["promise_id"] in revised_at:
            assert at(delivery["occurred_at"]) > revised_at[delivery["promise_id"]]


def case_stories(planned: list[ScheduledEvent]) -> dict[str, list[dict]]:
    cases: dict[str, list[dict]] = {}
    for item in planned:
        cases.setdefault(item.key, []).append(item.event)
    return cases


def test_every_question_is_an_inquiry_and_a_few_stay_unanswered(planned):
    unanswered = 0
    for events in case_stories(planned).values():
        inquiries = [e for e in events if e["type"] == "inquiry"]
        responses = [e for e in events if e["type"] == "response"]
        # The contact itself is the first inquiry; each response answers the one before it.
        greeting = next(e for e in events if e["type"] == "greeting")
        assert inquiries[0]["occurred_at"] == greeting["contact_at"]
        for inquiry, response in zip(inquiries, responses):
            assert response["requested_at"] == inquiry["occurred_at"]
            assert at(inquiry["occurred_at"]) <= at(response["occurred_at"])
            assert inquiry.get("priority") == response.get("priority")
        assert len(inquiries) - len(responses) in (0, 1)
        if len(inquiries) > len(responses):  # the last question, after the last answer
            unanswered += 1
            assert at(inquiries[-1]["occurred_at"]) > at(responses[-1]["occurred_at"])
    assert unanswered / CASES == pytest.approx(SimulationProfile().unanswered_share, abs=0.015)


def test_feedback_scores_are_1_to_5_and_lower_after_a_miss(planned):
    by_fate: dict[bool, list[int]] = {True: [], False: []}
    for events in case_stories(planned).values():
        fates = promise_outcomes([ScheduledEvent(at(e["occurred_at"]), e["case_id"], e)
                                  for e in events])
        missed = bool(fates["late"] or fates["never"])
        for feedback in (e for e in events if e["type"] == "feedback"):
            assert type(feedback["score"]) is int and feedback["score"] in FEEDBACK_SCORES
            by_fate[missed].append(feedback["score"])
    assert len(set(by_fate[False])) == len(set(by_fate[True])) == 5  # every score occurs
    mean = {missed: sum(scores) / len(scores) for missed, scores in by_fate.items()}
    assert mean[True] < mean[False] - 1.0


def test_complaints_are_likelier_after_a_miss(planned):
    cases = {True: 0, False: 0}
    complained = {True: 0, False: 0}
    for events in case_stories(planned).values():
        fates = promise_outcomes([ScheduledEvent(at(e["occurred_at"]), e["case_id"], e)
                                  for e in events])
        missed = bool(fates["late"] or fates["never"])
        cases[missed] += 1
        complained[missed] += any(e["type"] == "complaint" for e in events)
    assert complained[True] / cases[True] > 2 * complained[False] / cases[False]


def test_feedback_and_complaints_come_after_the_case_has_played_out(planned):
    for events in case_stories(planned).values():
        verdicts = [e for e in events if e["type"] in ("feedback", "complaint")]
        if not verdicts:
            continue
        first_verdict = min(at(e["occurred_at"]) for e in verdicts)
        others = [e for e in events if e["type"] not in ("feedback", "complaint")]
        assert max(at(e["occurred_at"]) for e in others) < first_verdict
        due = due_times([ScheduledEvent(at(e["occurred_at"]), e["case_id"], e) for e in events])
        cancelled = {e["promise_id"] for e in events if e["type"] == "promise_cancelled"}
        assert all(moment < first_verdict for pid, moment in due.items() if pid not in cancelled)


def test_the_oracle_judges_simulated_promises_as_planned(planned):
    """Sent at their occurred_at (CreateTime = event time), the cases come out as planned:
    revisions counted, cancellations out of the count, fates against the latest due time."""
    items = sorted(planned, key=lambda item: item.send_at)
    log = [LoggedRecord(0, offset, item.send_at.timestamp(), item.key.encode(),
                        json.dumps(item.event).encode()) for offset, item in enumerate(items)]
    end = max(item.send_at for item in items) + timedelta(minutes=5)
    result = judge(log, end_of_log_time=end.timestamp())
    assert not result.rejected and not result.duplicates
    planned_fates = promise_outcomes(planned)
    judged = Counter(verdict.outcome for verdict in result.verdicts.values())
    assert judged == Counter({"on_time": planned_fates["on_time"],
                              "missed": planned_fates["late"] + planned_fates["never"],
                              "cancelled": planned_fates["cancelled"]})
    assert sum(result.revisions.values()) == len(of_type(planned, "promise_revised"))
    assert sum(result.cancelled.values()) == len(of_type(planned, "promise_cancelled"))


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
    due = due_times(planned)
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
        if event["type"] in ("response", "inquiry"):
            assert event.get("priority", "normal") in {"low", "normal", "high", "urgent"}
        if event["type"] == "response":
            assert at(event["requested_at"]) <= at(event["occurred_at"])


def test_events_are_sent_at_their_occurred_at_and_never_before_the_contact():
    planner = CasePlanner(rng=random.Random(3))
    for _ in range(200):
        case = planner.plan_case(START)
        assert [i.send_at for i in case] == sorted(i.send_at for i in case)
        # The customer's first message opens the case, at the contact itself.
        assert case[0].event["type"] == "inquiry" and case[0].send_at == START
        assert [i.event["type"] for i in case].count("greeting") == 1
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


@pytest.mark.parametrize("settings_", [
    {"unanswered_share": 1.5}, {"revised_share": -0.1}, {"feedback_share": 2.0},
    {"complaint_share_after_miss": 1.1}, {"revised_share": 0.6, "cancelled_share": 0.5},
    {"revision_at_fraction": (0.0, 0.5)}, {"revision_at_fraction": (0.5, 1.0)},
    {"cancellation_at_fraction": (0.6, 0.4)}, {"revision_extension_fraction": (0.0, 1.0)},
    {"feedback_delay_seconds": (-1.0, 2.0)}, {"scores_when_kept": (1.0, 1.0)},
    {"scores_when_missed": (1.0, -1.0, 1.0, 1.0, 1.0)}, {"scores_when_slow": (0, 0, 0, 0, 0)},
])
def test_profile_rejects_impossible_new_knobs(settings_):
    with pytest.raises(ValueError):
        SimulationProfile(**settings_)


def test_the_new_events_can_be_switched_off():
    quiet = SimulationProfile(unanswered_share=0.0, revised_share=0.0, cancelled_share=0.0,
                              feedback_share=0.0, complaint_share=0.0,
                              complaint_share_after_miss=0.0)
    types = {i.event["type"] for i in plan_many(300, profile=quiet)}
    assert types == {"greeting", "inquiry", "response", "promise", "delivery"}


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32), offset=st.integers(-10**9, 10**9))
def test_any_seed_and_start_yield_a_consistent_case(seed, offset):
    now = START + timedelta(seconds=offset)
    case = CasePlanner(rng=random.Random(seed)).plan_case(now)
    promised = set()
    for item in case:  # in send order: a promise comes before anything that refers to it
        assert item.send_at >= now
        assert item.send_at == at(item.event["occurred_at"])
        decode_event(json.dumps(item.event).encode())
        if item.event["type"] == "promise":
            promised.add(item.event["promise_id"])
        elif item.event["type"] in ("delivery", "promise_revised", "promise_cancelled"):
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
    # The contact's inquiry and the instant greeting are both due at the first tick.
    assert stats.cases == 1 and stats.sent_by_type == {"inquiry": 1, "greeting": 1}
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
