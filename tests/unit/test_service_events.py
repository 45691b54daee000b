"""Inquiries, revisions, cancellations, feedback and complaints through the processor:
their metrics, the findings they produce (once), and the worklists."""

import json
from datetime import timedelta

import pytest

from streams.findings import PROMISE_AT_RISK, PROMISE_MISSED, RESPONSE_OVERDUE
from streams.policy import policy_from_dict
from streams.worklists import WorklistQueryError, parse_query, worklist
from tests.unit.test_processor import NOW, event, feed, make_worker, sample

PROMISE_LABELS = dict(team="billing", kind="callback", audience="external")
INQUIRY_LABELS = dict(team="billing", channel="phone", audience="external")


def at(seconds):
    return NOW + timedelta(seconds=seconds)


def sweep_at(processor, seconds, partition=0):
    state = processor.states.get(partition)
    state.clock.caught_up(at=at(seconds).timestamp())
    processor.sweep(state)
    processor.states.send_pending()  # as the worker's sweep tick does


def taken_findings(processor):
    findings, processor.findings = processor.findings, []
    return [(f.key.decode(), json.loads(f.value)) for f in findings]


def promise(event_id, promise_id="p1", due=600, kind="callback", case_id="c1"):
    return (NOW, case_id.encode(), event("promise", event_id, case_id=case_id, promise_id=promise_id,
                                         due_at=at(due).isoformat(), kind=kind))


# -- inquiries ----------------------------------------------------------------------------------
def test_an_unanswered_inquiry_is_reported_overdue_once_while_the_customer_waits():
    processor, registry, _ = make_worker()  # built-in phone response target: 300 s
    feed(processor, [(NOW, b"c1", event("inquiry", "q1"))])
    assert sample(registry, "servicewatch_inquiries_waiting", **INQUIRY_LABELS) == 1
    sweep_at(processor, 300 + 2)
    assert taken_findings(processor) == []
    sweep_at(processor, 300 + 2.5)
    sweep_at(processor, 400)
    [(key, finding)] = taken_findings(processor)
    assert key == "c1"
    assert finding["type"] == RESPONSE_OVERDUE and finding["case_id"] == "c1"
    assert finding["due_at"].startswith(at(300).isoformat()[:19])
    assert sample(registry, "servicewatch_responses_overdue", **INQUIRY_LABELS) == 1
    assert sample(registry, "servicewatch_inquiry_outcomes_total", outcome="missed", **INQUIRY_LABELS) == 1
    feed(processor, [(at(500), b"c1", event("response", "r1", at=at(500), requested_at=NOW.isoformat()))])
    assert sample(registry, "servicewatch_responses_overdue", **INQUIRY_LABELS) == 0
    assert sample(registry, "servicewatch_responses_total", within_target="false", **INQUIRY_LABELS) == 1


def test_an_inquiry_answered_in_time_ends_without_a_finding():
    processor, registry, _ = make_worker()
    feed(processor, [
        (NOW, b"c1", event("inquiry", "q1")),
        (at(20), b"c1", event("response", "r1", at=at(20), requested_at=NOW.isoformat())),
    ])
    sweep_at(processor, 10_000)
    assert taken_findings(processor) == []
    assert sample(registry, "servicewatch_inquiry_outcomes_total", outcome="on_time", **INQUIRY_LABELS) == 1
    assert sample(registry, "servicewatch_responses_total", within_target="true", **INQUIRY_LABELS) == 1


def test_response_targets_come_from_the_policy_by_team_channel_and_priority():
    policy = policy_from_dict({"response": {"phone": "30s"},
                               "teams": {"billing": {"response": {"urgent": {"phone": "10s"}}}}})
    processor, registry, _ = make_worker(policy=policy)
    feed(processor, [
        (at(20), b"c1", event("response", "r1", at=at(20), requested_at=NOW.isoformat())),
        (at(20), b"c2", event("response", "r2", case_id="c2", at=at(20), requested_at=NOW.isoformat(),
                              priority="urgent")),
    ])
    assert sample(registry, "servicewatch_responses_total", within_target="true", **INQUIRY_LABELS) == 1
    assert sample(registry, "servicewatch_responses_total", within_target="false", **INQUIRY_LABELS) == 1


def test_response_times_are_measured_in_the_teams_business_hours():
    policy = policy_from_dict({
        "calendars": {"office": {"timezone": "UTC", "hours": {"mon-fri": ["09:00-17:00"]}}},
        "teams": {"billing": {"calendar": "office"}},
    })
    processor, registry, _ = make_worker(policy=policy)
    friday_evening = NOW.replace(year=2026, month=11, day=27, hour=16, minute=50)  # a Friday
    monday_morning = friday_evening + timedelta(days=3, hours=-7, minutes=-40)  # Mon 09:10
    feed(processor, [(monday_morning, b"c1", event("response", "r1", at=monday_morning,
                                                   requested_at=friday_evening.isoformat()))])
    # 10 minutes on Friday + 10 on Monday: 1200 s of business time, not ~64 hours.
    assert sample(registry, "servicewatch_response_seconds_sum", **INQUIRY_LABELS) == pytest.approx(1200)


# -- promises: at risk, missed, revised, cancelled ---------------------------------------------
def test_promise_findings_at_risk_and_missed_are_published_once_each():
    processor, registry, _ = make_worker()  # at risk 60 s before due
    feed(processor, [promise("e1", due=600)])
    sweep_at(processor, 539)
    assert taken_findings(processor) == []
    sweep_at(processor, 540)
    sweep_at(processor, 541)
    [(key, warning)] = taken_findings(processor)
    assert key == "p1" and warning["type"] == PROMISE_AT_RISK and warning["promise_id"] == "p1"
    assert sample(registry, "servicewatch_promises_at_risk", **PROMISE_LABELS) == 1
    sweep_at(processor, 603)
    sweep_at(processor, 700)
    [(key, missed)] = taken_findings(processor)
    assert missed["type"] == PROMISE_MISSED and missed["finding_id"] != warning["finding_id"]
    assert missed["overdue_seconds"] == pytest.approx(3, abs=0.01)
    assert sample(registry, "servicewatch_promises_at_risk", **PROMISE_LABELS) == 0


def test_a_restart_does_not_publish_a_finding_again():
    processor, _, tables = make_worker()
    records = [promise("e1", due=600)]
    feed(processor, records)
    sweep_at(processor, 550)
    sweep_at(processor, 700)
    assert [f["type"] for _, f in taken_findings(processor)] == [PROMISE_AT_RISK, PROMISE_MISSED]
    restarted, _, _ = make_worker(tuple(t.replayed(0) for t in tables))
    feed(restarted, records)  # redelivered after the crash
    sweep_at(restarted, 800)
    assert taken_findings(restarted) == []


def test_a_revision_counts_a_renegotiation_and_moves_the_deadline():
    processor, registry, _ = make_worker()
    feed(processor, [
        promise("e1", due=600),
        (at(100), b"c1", event("promise_revised", "e2", at=at(100), promise_id="p1",
                               due_at=at(3600).isoformat())),
    ])
    sweep_at(processor, 700)
    assert sample(registry, "servicewatch_promise_revisions_total", **PROMISE_LABELS) == 1
    assert sample(registry, "servicewatch_promise_outcomes_total", outcome="missed", **PROMISE_LABELS) == 0
    feed(processor, [(at(3000), b"c1", event("delivery", "e3", at=at(3000), promise_id="p1"))])
    assert sample(registry, "servicewatch_promise_outcomes_total", outcome="on_time", **PROMISE_LABELS) == 1


def test_a_partition_time_that_jumps_past_the_deadline_reports_the_miss_without_a_warning():
    processor, _, _ = make_worker()
    feed(processor, [promise("e1", due=600)])
    sweep_at(processor, 700)  # e.g. a worker catching up on a backlog
    assert [f["type"] for _, f in taken_findings(processor)] == [PROMISE_MISSED]


def test_a_cancellation_in_time_leaves_the_count_and_a_late_one_is_counted_as_ignored():
    processor, registry, _ = make_worker()
    feed(processor, [
        promise("e1", promise_id="p1", due=600),
        promise("e2", promise_id="p2", due=600),
        (at(100), b"c1", event("promise_cancelled", "e3", at=at(100), promise_id="p1")),
        (at(650), b"c1", event("promise_cancelled", "e4", at=at(650), promise_id="p2")),
        (at(650), b"c1", event("promise_revised", "e5", at=at(650), promise_id="nobody",
                               due_at=at(900).isoformat())),
    ])
    sweep_at(processor, 700)
    assert sample(registry, "servicewatch_promises_cancelled_total", **PROMISE_LABELS) == 1
    assert sample(registry, "servicewatch_promise_outcomes_total", outcome="missed", **PROMISE_LABELS) == 1
    assert sample(registry, "servicewatch_promise_changes_ignored_total", type="promise_cancelled") == 1
    assert sample(registry, "servicewatch_promise_changes_ignored_total", type="promise_revised") == 1


# -- satisfaction and complaints ----------------------------------------------------------------
def test_feedback_scores_and_complaints_are_counted_once():
    processor, registry, _ = make_worker()
    feed(processor, [
        (NOW, b"c1", event("feedback", "f1", score=5)),
        (NOW, b"c1", event("feedback", "f2", score=2)),
        (NOW, b"c1", event("feedback", "f2", score=2)),  # duplicate
        (NOW, b"c1", event("complaint", "k1", category="rude")),
    ])
    assert sample(registry, "servicewatch_feedback_total", score="5", **INQUIRY_LABELS) == 1
    assert sample(registry, "servicewatch_feedback_total", score="2", **INQUIRY_LABELS) == 1
    assert sample(registry, "servicewatch_complaints_total", **INQUIRY_LABELS) == 1


# -- worklists ----------------------------------------------------------------------------------
def test_the_worklists_show_at_risk_and_overdue_promises_most_urgent_first():
    processor, registry, _ = make_worker()
    feed(processor, [
        promise("e1", promise_id="old", due=100),
        promise("e2", promise_id="older", due=50),
        promise("e3", promise_id="soon", due=240),
        promise("e4", promise_id="later", due=10_000),
        promise("e5", promise_id="other-team", due=230, case_id="c2"),
    ])
    sweep_at(processor, 200)
    books = processor.states.partition_books()
    overdue = worklist(books, "overdue")
    assert [i["promise_id"] for i in overdue["items"]] == ["older", "old"]
    assert overdue["items"][0]["overdue_by_seconds"] == pytest.approx(150)
    assert overdue["partitions"] == [0] and overdue["total"] == 2
    at_risk = worklist(books, "at_risk", limit=1)
    assert [i["promise_id"] for i in at_risk["items"]] == ["other-team"]
    assert at_risk["total"] == 2 and at_risk["items"][0]["due_in_seconds"] == pytest.approx(30)
    assert worklist(books, "at_risk", team="nobody")["items"] == []
    oldest = [s for s in registry.collect() if s.name == "servicewatch_promise_overdue_oldest_seconds"]
    ranks = {s.labels["rank"]: s.value for s in oldest[0].samples}
    assert ranks == {"1": pytest.approx(150), "2": pytest.approx(100)}


@pytest.mark.parametrize("query, message", [
    ({"limit": "x"}, "limit must be a whole number"),
    ({"limit": "0"}, "limit must be from 1 to 1000"),
    ({"limit": "5000"}, "limit must be from 1 to 1000"),
])
def test_a_bad_worklist_query_is_explained(query, message):
    with pytest.raises(WorklistQueryError, match=message):
        parse_query(query)
    assert parse_query({"team": "billing", "limit": "7"}) == ("billing", 7)


def test_each_teams_objectives_are_exposed_from_the_policy():
    from prometheus_client import CollectorRegistry

    from streams.collector import ObjectivesCollector
    from streams.metrics import Instruments, TeamLabels

    registry = CollectorRegistry()
    instruments = Instruments(registry, TeamLabels(10))
    policy = policy_from_dict({"objectives": {"promise_on_time": 0.9},
                               "teams": {"billing": {"objectives": {"promise_on_time": 0.99}}}})
    registry.register(ObjectivesCollector(policy, instruments))
    instruments.team_label("billing")
    instruments.team_label("support")
    value = registry.get_sample_value
    assert value("servicewatch_objective_ratio", {"team": "billing", "objective": "promise_on_time"}) == 0.99
    assert value("servicewatch_objective_ratio", {"team": "support", "objective": "promise_on_time"}) == 0.9
    assert value("servicewatch_objective_ratio",
                 {"team": "support", "objective": "response_within_target"}) == 0.9
