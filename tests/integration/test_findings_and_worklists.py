"""End to end, on Tansu and on Apache Kafka: findings published once, worklists over HTTP,
and the service events (inquiries, revisions, cancellations) judged by a live worker."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone

from tests.integration.harness import EventSender, event, read_all, total, wait_for

GRACE = 2.0


def get_json(worker, path: str) -> tuple[int, dict]:
    url = f"http://127.0.0.1:{worker.web_port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_findings_worklists_and_service_events_end_to_end(start_worker, broker, tmp_path):
    # Warn 20 s before due; phone inquiries must be answered within 3 s.
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text('at_risk = "20s"\n\n[response]\nphone = "3s"\n', encoding="utf-8")
    worker = start_worker(extra_args=("--policy", str(policy_file)))
    worker.wait_until_caught_up()
    findings_topic = f"{worker.topic}.findings"

    now = datetime.now(timezone.utc)
    with EventSender(broker.bootstrap, worker.topic) as sender:
        # missed: due in 3 s, never delivered; at risk at once (due within 20 s)
        sender.send(event("promise", "c1", now, promise_id="missed-1", kind="callback",
                          due_at=now + timedelta(seconds=3)))
        # revised from 30 s to 10 min: neither missed nor at risk (the revision came in time)
        sender.send(event("promise", "c2", now, promise_id="revised-1", kind="refund",
                          due_at=now + timedelta(seconds=30)))
        sender.send(event("promise_revised", "c2", now, promise_id="revised-1",
                          due_at=now + timedelta(minutes=10)))
        # cancelled in time: out of the count, no finding
        sender.send(event("promise", "c3", now, promise_id="cancelled-1", kind="visit",
                          due_at=now + timedelta(seconds=30)))
        sender.send(event("promise_cancelled", "c3", now, promise_id="cancelled-1"))
        # a customer left waiting: the response is overdue after 3 s
        sender.send(event("inquiry", "c4", now, team="support"))
        # a customer answered in time
        sender.send(event("inquiry", "c5", now, team="support"))
        sender.send(event("response", "c5", now + timedelta(seconds=1), team="support",
                          requested_at=now))
        sender.send(event("feedback", "c5", now, team="support", score=5))
        sender.send(event("complaint", "c4", now, team="support", category="no answer"))

    findings = read_all(broker.bootstrap, findings_topic, expected=3, timeout=40, settle=3.0)
    found = sorted((json.loads(r.value)["type"], r.key.decode()) for r in findings)
    assert found == [("promise_at_risk", "missed-1"), ("promise_missed", "missed-1"),
                     ("response_overdue", "c4")], found
    missed = next(json.loads(r.value) for r in findings if r.key == b"missed-1"
                  and json.loads(r.value)["type"] == "promise_missed")
    assert missed["case_id"] == "c1" and missed["team"] == "billing"
    assert missed["finding_id"].startswith("promise_missed:missed-1:")
    assert missed["overdue_seconds"] >= GRACE

    metrics = worker.scrape()
    assert total(metrics, "servicewatch_promise_outcomes_total", outcome="missed") == 1
    assert total(metrics, "servicewatch_promise_outcomes_total", outcome="on_time") == 0
    assert total(metrics, "servicewatch_promise_revisions_total") == 1
    assert total(metrics, "servicewatch_promises_cancelled_total") == 1
    assert total(metrics, "servicewatch_responses_overdue") == 1
    assert total(metrics, "servicewatch_inquiry_outcomes_total", outcome="on_time") == 1
    assert total(metrics, "servicewatch_feedback_total", score="5") == 1
    assert total(metrics, "servicewatch_complaints_total") == 1
    assert total(metrics, "servicewatch_promise_overdue_oldest_seconds", rank="1") >= GRACE

    status, overdue = get_json(worker, "/promises/overdue")
    assert status == 200
    assert [item["promise_id"] for item in overdue["items"]] == ["missed-1"]
    assert overdue["items"][0]["case_id"] == "c1" and overdue["items"][0]["overdue_by_seconds"] > 0
    assert overdue["partitions"] == [0, 1, 2, 3]
    status, at_risk = get_json(worker, "/promises/at-risk?team=billing")
    assert status == 200 and at_risk["items"] == []  # revised-1 is due in 10 minutes
    status, error = get_json(worker, "/promises/overdue?limit=0")
    assert status == 400 and "limit" in error["error"]

    # Nothing is published twice, however often the worker sweeps.
    time.sleep(2)
    assert len(read_all(broker.bootstrap, findings_topic, expected=3, timeout=10, settle=2.0)) == 3

