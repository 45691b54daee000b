"""End to end: a missed promise pages the team that owns it, through real processes.

The embedded broker, a servicewatch worker, Debian's Prometheus (scraping the worker every
second, with the real rule files from deploy/prometheus) and Debian's Alertmanager (the real
deploy/alertmanager routes, made fast, with every receiver pointed at a webhook in this test),
all on 127.0.0.1. A billing promise due in 5 s is left undelivered: PromiseMissed for billing
must reach the billing receiver. A support promise delivered on time must page nobody.
The time from the due time to the webhook is printed (pytest -s) and is in the output of a
failure.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from streams.embedded_broker import free_port
from tests.deploy.tools import ALERTMANAGER_CONFIG, RULE_FILES, require_tool
from tests.integration.harness import EventSender, event, total, wait_for

pytestmark = pytest.mark.broker

GRACE = 2.0  # the worker's default
DUE_IN = 5.0
OUTCOMES = "servicewatch_promise_outcomes_total"
PAGE_TIMEOUT = 40.0  # from the due time; measured: a few seconds (cold start ~5 s more)


# -- the webhook receiver ------------------------------------------------------------------------
@dataclass
class Delivery:
    receiver: str  # the URL path: each receiver posts to /<its name>
    received_at: float
    body: dict


class Webhook:
    """An HTTP server on 127.0.0.1 that records every Alertmanager notification."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self._lock = threading.Lock()
        webhook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                received_at = time.time()
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with webhook._lock:
                    webhook.deliveries.append(Delivery(self.path.strip("/"), received_at, body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:  # keep the test output for the timeline
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "Webhook":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def alerts(self, alertname: str, **labels: str) -> list[tuple[Delivery, dict]]:
        """(delivery, alert) for every firing alert received with these labels."""
        with self._lock:
            deliveries = list(self.deliveries)
        return [(d, alert) for d in deliveries for alert in d.body["alerts"]
                if alert["status"] == "firing" and alert["labels"].get("alertname") == alertname
                and all(alert["labels"].get(k) == v for k, v in labels.items())]

    def summary(self) -> str:
        with self._lock:
            deliveries = list(self.deliveries)
        return "\n".join(
            f"  {d.received_at:.3f} /{d.receiver}: " + ", ".join(
                f"{a['status']} {a['labels'].get('alertname')}{{team={a['labels'].get('team')}}}"
                for a in d.body["alerts"])
            for d in deliveries) or "  (none)"


# -- Prometheus and Alertmanager as child processes ----------------------------------------------
@dataclass
class Server:
    name: str
    command: list[str]
    port: int
    log_path: Path
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> "Server":
        with open(self.log_path, "wb") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT)

        def ready():
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.process.returncode}{self.log_tail()}")
            return get(f"{self.url}/-/ready") is not None

        wait_for(ready, timeout, f"{self.name} to be ready", self.log_tail)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return f"\n--- last lines of {self.log_path} ---\n" + "\n".join(text.splitlines()[-lines:])


def get(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.read() if response.status == 200 else None
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return None


def get_json(url: str, **params: str):
    raw = get(f"{url}?{urllib.parse.urlencode(params, doseq=True)}" if params else url)
    return json.loads(raw) if raw is not None else None


def query(prometheus: Server, promql: str) -> list[dict]:
    answer = get_json(f"{prometheus.url}/api/v1/query", query=promql)
    return answer["data"]["result"] if answer and answer["status"] == "success" else []


def epoch(rfc3339: str) -> float:
    """Prometheus' and Alertmanager's times (nanoseconds, Z) as epoch seconds."""
    trimmed = re.sub(r"(\.\d{6})\d+", r"\1", rfc3339).replace("Z", "+00:00")
    return datetime.fromisoformat(trimmed).timestamp()


# -- their configurations ------------------------------------------------------------------------
def alertmanager_config(webhook_url: str) -> dict:
    """deploy/alertmanager/alertmanager.yml with fast timings and every receiver posting to
    ``webhook_url/<receiver name>``; routes and inhibition rules as they are."""
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text(encoding="utf-8"))

    def fast(route: dict) -> None:
        route["group_wait"] = "0s"
        route["group_interval"] = "1s"  # 0s is refused
        route["repeat_interval"] = "1h"
        for child in route.get("routes", []):
            fast(child)

    fast(config["route"])
    for receiver in config["receivers"]:
        receiver["webhook_configs"] = [{"url": f"{webhook_url}/{receiver['name']}", "send_resolved": True}]
    return config


def prometheus_config(worker_port: int, alertmanager_port: int) -> dict:
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
        "rule_files": [str(path) for path in RULE_FILES],
        "alerting": {"alertmanagers": [{"api_version": "v2", "static_configs": [
            {"targets": [f"127.0.0.1:{alertmanager_port}"]}]}]},
        # job="servicewatch", as the rules expect
        "scrape_configs": [{"job_name": "servicewatch", "static_configs": [
            {"targets": [f"127.0.0.1:{worker_port}"]}]}],
    }


# -- the test ------------------------------------------------------------------------------------
def test_a_missed_promise_pages_its_team_and_a_kept_one_pages_nobody(broker, start_worker, tmp_path,
                                                                     record_property):
    prometheus_bin = require_tool("prometheus")
    alertmanager_bin = require_tool("prometheus-alertmanager")
    timeline: list[tuple[float, str]] = []

    def mark(what: str, at: float | None = None) -> None:
        at = time.time() if at is None else at
        timeline.append((at, what))
        print(f"{datetime.fromtimestamp(at, timezone.utc):%H:%M:%S.%f} {what}", flush=True)

    worker = start_worker()
    worker.wait_until_caught_up()
    mark("worker holds every partition")

    with ExitStack() as stack:
        webhook = stack.enter_context(Webhook())

        am_port, prom_port = free_port(), free_port()
        am_file = tmp_path / "alertmanager.yml"
        am_file.write_text(yaml.safe_dump(alertmanager_config(webhook.url)))
        alertmanager = Server("alertmanager", [
            alertmanager_bin, f"--config.file={am_file}", f"--storage.path={tmp_path / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{am_port}",
            "--cluster.listen-address=",  # empty, or it gossips on 0.0.0.0:9094
        ], am_port, tmp_path / "alertmanager.log")
        stack.callback(alertmanager.stop)
        alertmanager.start()

        prom_file = tmp_path / "prometheus.yml"
        prom_file.write_text(yaml.safe_dump(prometheus_config(worker.web_port, am_port)))
        prometheus = Server("prometheus", [
            prometheus_bin, f"--config.file={prom_file}", f"--storage.tsdb.path={tmp_path / 'prom-data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ], prom_port, tmp_path / "prometheus.log")
        stack.callback(prometheus.stop)
        prometheus.start()
        mark("prometheus and alertmanager ready")

        def context() -> str:
            return ("\n--- timeline ---\n" + "\n".join(f"  {at:.3f} {what}" for at, what in timeline)
                    + "\n--- webhook deliveries ---\n" + webhook.summary()
                    + prometheus.log_tail(15) + alertmanager.log_tail(15) + worker.log_tail(15))

        # The rules must already see the worker (and its partitions) before a team shows up,
        # so the team's missed total is recorded at 0 before it becomes 1.
        wait_for(lambda: query(prometheus, 'servicewatch:partitions_known:count > 0'), 30,
                 "Prometheus to scrape the worker and record its partitions", context)
        mark("prometheus scrapes the worker")

        now = datetime.now(timezone.utc)
        due = now + timedelta(seconds=DUE_IN)
        with EventSender(broker.bootstrap, worker.topic) as sender:
            sender.send(event("promise", "case-billing", now, team="billing", channel="phone",
                              promise_id="P-billing", kind="callback", due_at=due))
            sender.send(event("promise", "case-support", now, team="support", channel="email",
                              promise_id="P-support", kind="callback", due_at=due))
            sender.send(event("delivery", "case-support", now, team="support", channel="email",
                              promise_id="P-support"))
        mark("sent: billing promise (never delivered), support promise + on-time delivery")
        mark("both promises due", due.timestamp())

        # -- billing: paged, to the billing receiver --------------------------------------------
        # Where the time goes: first the worker counts the miss (at due + grace, or a moment
        # later), then Prometheus scrapes, records, alerts, and Alertmanager notifies.
        wait_for(lambda: total(worker.scrape(), OUTCOMES, team="billing", outcome="missed") >= 1,
                 due.timestamp() + PAGE_TIMEOUT - time.time(), "the worker to count billing's miss",
                 context, interval=0.1)
        mark("worker: billing's promise counted missed")
        pages = wait_for(lambda: webhook.alerts("PromiseMissed", team="billing"),
                         due.timestamp() + PAGE_TIMEOUT - time.time(),
                         "PromiseMissed for billing at the webhook", context)
        delivery, alert = pages[0]
        mark(f"webhook /{delivery.receiver}: PromiseMissed team=billing", delivery.received_at)
        firing = [a for a in (get_json(f"{prometheus.url}/api/v1/alerts") or {}).get("data", {}).get("alerts", [])
                  if a["labels"].get("alertname") == "PromiseMissed"]
        for active in firing:
            mark(f"prometheus: PromiseMissed team={active['labels'].get('team')} active since",
                 epoch(active["activeAt"]))
        seconds = delivery.received_at - due.timestamp()
        record_property("deadline_to_webhook_seconds", round(seconds, 3))
        print(f"\nPromiseMissed: due time -> webhook {seconds:.2f} s "
              f"(due + grace -> webhook {seconds - GRACE:.2f} s)", flush=True)

        assert delivery.receiver == "team-billing" and delivery.body["receiver"] == "team-billing", context()
        assert alert["labels"]["severity"] == "page", context()
        assert alert["annotations"]["runbook_url"] == "docs/runbook.md#promisemissed"
        assert alert["annotations"]["description"].startswith("1 promise(s) of team billing"), alert
        assert GRACE < seconds < PAGE_TIMEOUT, context()

        # -- support: kept on time, pages nobody -----------------------------------------------
        # A promise ends exactly once: once Prometheus has support's on-time outcome, no miss
        # can follow. Then wait (on a condition, not a clock) for an alert evaluation after
        # that, and look: no PromiseMissed for support, anywhere.
        wait_for(lambda: query(prometheus, 'team_outcome:servicewatch_promise_outcomes_total:sum'
                                           '{team="support", outcome="on_time"} == 1'),
                 20, "support's on-time outcome in Prometheus", context)
        seen_kept = time.time()
        mark("prometheus: support's promise kept on time")

        def evaluated_since_kept():
            answer = get_json(f"{prometheus.url}/api/v1/rules", type="alert") or {}
            return [g for g in answer.get("data", {}).get("groups", [])
                    if g["name"] == "servicewatch-promise-alerts"
                    and epoch(g["lastEvaluation"]) > seen_kept + 1]
        wait_for(evaluated_since_kept, 20, "an alert evaluation after support's outcome", context)
        assert query(prometheus, 'team_outcome:servicewatch_promise_outcomes_total:sum'
                                 '{team="support", outcome="missed"} == 0'), context()
        assert not query(prometheus, 'ALERTS{alertname="PromiseMissed", team="support"}'), context()
        assert not webhook.alerts("PromiseMissed", team="support"), context()

        # -- the page holds back billing's warning (the at-risk one, still firing) -------------
        def billing_warning_inhibited():
            alerts = get_json(f"{alertmanager.url}/api/v2/alerts",
                              filter=['alertname="PromisesAtRisk"', 'team="billing"']) or []
            return [a for a in alerts if a["status"]["inhibitedBy"]]
        wait_for(billing_warning_inhibited, 10, "billing's PromisesAtRisk inhibited by its page", context)
        mark("alertmanager: billing's PromisesAtRisk inhibited by the page")
