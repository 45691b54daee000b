"""Every panel query returns data from a real Prometheus scraping a real worker.

The embedded broker (Tansu), one servicewatch worker (with the demo policy: targets in
seconds, like the simulator's compressed time), the traffic simulator and Debian's
Prometheus 2.42 (scraping the worker every second as job="servicewatch", with the rule files
of deploy/prometheus/rules) run on 127.0.0.1. Each panel query, with Grafana's variables
replaced ($__rate_interval -> 1m, $__range -> 1h, $team -> billing), must return at least one
finite sample within a few minutes of traffic.

Next to the simulator, ``ServiceStories`` sends, for every team, the events some panels need
whatever the simulator's mix: a question left unanswered (a response overdue), a promise never
kept (an overdue promise), one renegotiated, one cancelled, feedback scores and complaints. Then dashboards/render.py draws the panels from
the same Prometheus into PNGs: into the test's temporary directory, or into docs/img with
SERVICEWATCH_UPDATE_PICTURES=1 (how the committed pictures were made).
"""

from __future__ import annotations

import heapq
import itertools
import math
import os
import subprocess
import threading
import time
from datetime import datetime, timedelta, timezone
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from dashboards.render import DEFAULT_OUT, Prometheus, render_all
from streams.embedded_broker import free_port
from streams.simulation import run_simulation
from tests.dashboards.panels import RULE_DIR, SUBSTITUTIONS, expressions, require_tool
from tests.integration.harness import EventSender, event, wait_for

pytestmark = [pytest.mark.broker, pytest.mark.parametrize("broker", ["tansu"], indirect=True)]

DATA_TIMEOUT = 150.0  # seconds of traffic allowed for every query to return data (measured 20–40 s)
CASES_PER_SECOND = 10.0
PICTURE_TRAFFIC = 180.0  # seconds of traffic in the committed pictures


class PrometheusServer:
    """Debian's prometheus on 127.0.0.1, scraping ``target`` every second as job="servicewatch"."""

    def __init__(self, binary: str, target: str, directory: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.directory = directory
        self.log_path = directory / "prometheus.log"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
            "rule_files": [str(path) for path in sorted(RULE_DIR.glob("*.yml"))],
            "scrape_configs": [{"job_name": "servicewatch", "static_configs": [{"targets": [target]}]}],
        }
        self.config_path = directory / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
        self.command = [binary, f"--config.file={self.config_path}",
                        f"--storage.tsdb.path={directory / 'data'}",
                        f"--web.listen-address=127.0.0.1:{self.port}", "--web.enable-lifecycle"]
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "PrometheusServer":
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=self._log,
                                        stderr=subprocess.STDOUT)
        wait_for(self.ready, 30, f"{self.url}/-/ready", self.log_tail)
        return self

    def ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"prometheus exited with {self.process.returncode}{self.log_tail()}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()[-lines:]
        except OSError:
            return ""
        return "\n--- prometheus log ---\n" + "\n".join(text)

    def __exit__(self, *exc_info) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


class Traffic:
    """The simulator in a thread, until the block ends."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.stats = None
        self._thread = threading.Thread(target=self._run, args=(bootstrap, topic), daemon=True)

    def _run(self, bootstrap: str, topic: str) -> None:
        try:
            self.stats = run_simulation(bootstrap, topic, cases_per_second=CASES_PER_SECOND, stop=self.stop)
        except BaseException as error:  # reported by the test, not lost in the thread
            self.error = error

    def __enter__(self) -> "Traffic":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop.set()
        self._thread.join(30)


class ServiceStories:
    """A thread sending, every ``every`` seconds and for each team, one small story of each
    kind a panel needs, each event at its own moment (so its Kafka timestamp is its event time)."""

    TEAMS = ("billing", "support", "logistics", "field-service")

    def __init__(self, bootstrap: str, topic: str, every: float = 2.0) -> None:
        self.bootstrap, self.topic, self.every = bootstrap, topic, every
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.sent = 0
        self._queue: list[tuple[float, int, dict]] = []
        self._order = itertools.count()
        self._round = itertools.count()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _at(self, delay: float, type_: str, case_id: str, team: str, channel: str = "phone",
            **fields) -> None:
        moment = time.time() + delay
        occurred = datetime.fromtimestamp(moment, tz=timezone.utc)
        body = event(type_, case_id, occurred, team=team, channel=channel, source="dashboard-test",
                     **{name: occurred + value if isinstance(value, timedelta) else value
                        for name, value in fields.items()})
        heapq.heappush(self._queue, (moment, next(self._order), body))

    # Feedback scores in turn: 70 % of them 4 or 5, like a fair day.
    SCORES = (5, 4, 5, 3, 5, 4, 1, 5, 4, 2)

    def _plan(self) -> None:
        """Round 0 tells every story for every team, so each panel has data within seconds;
        later rounds tell one story each in turn (and a complaint every sixth round), so the
        simulator's mix still dominates the pictures."""
        n = next(self._round)
        for team in self.TEAMS:
            case = f"story-{team}-{n}"
            told = range(4) if n == 0 else (n % 4,)
            if 0 in told:  # asked and never answered: past the demo's phone target (10 s)
                self._at(0.0, "inquiry", f"{case}-ask", team, priority="normal")
            if 1 in told:  # promised and never kept: overdue 3 s later
                self._at(0.0, "promise", f"{case}-never", team, promise_id=f"{case}-never",
                         kind="callback", due_at=timedelta(seconds=3))
            if 2 in told:  # renegotiated once (due 8 s -> 20 s), then kept
                self._at(0.0, "promise", f"{case}-moved", team, promise_id=f"{case}-moved",
                         kind="delivery", due_at=timedelta(seconds=8))
                self._at(2.0, "promise_revised", f"{case}-moved", team, promise_id=f"{case}-moved",
                         due_at=timedelta(seconds=18))
                self._at(4.0, "delivery", f"{case}-moved", team, promise_id=f"{case}-moved")
            if 3 in told:  # withdrawn before its due time
                self._at(0.0, "promise", f"{case}-off", team, promise_id=f"{case}-off",
                         kind="refund", due_at=timedelta(seconds=20))
                self._at(1.0, "promise_cancelled", f"{case}-off", team, promise_id=f"{case}-off",
                         reason="customer changed their mind")
            self._at(0.5, "feedback", f"{case}-said", team, channel="email",
                     score=self.SCORES[n % len(self.SCORES)])
            if n % 6 == 0:
                self._at(0.5, "complaint", f"{case}-said", team, channel="email",
                         category="waiting time")

    def _run(self) -> None:
        try:
            with EventSender(self.bootstrap, self.topic) as sender:
                next_plan = time.time()
                while not self.stop.is_set():
                    now = time.time()
                    if now >= next_plan:
                        self._plan()
                        next_plan = now + self.every
                    while self._queue and self._queue[0][0] <= time.time():
                        _, _, body = heapq.heappop(self._queue)
                        sender.send(body)
                        self.sent += 1
                    wake = min([next_plan, *(item[0] for item in self._queue[:1])])
                    self.stop.wait(max(0.0, min(0.5, wake - time.time())))
        except BaseException as error:  # reported by the test, not lost in the thread
            self.error = error

    def __enter__(self) -> "ServiceStories":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop.set()
        self._thread.join(30)


def finite_samples(result: list[dict]) -> int:
    return sum(1 for series in result if math.isfinite(float(series["value"][1])))


def test_every_panel_query_returns_data_and_the_panels_render(broker, start_worker, tmp_path):
    binary = require_tool("prometheus")
    assert sorted(RULE_DIR.glob("*.yml")), f"the dashboards read recording rules from {RULE_DIR}"
    queries = expressions()
    started = time.monotonic()
    worker = start_worker(partitions=4, extra_args=("--policy", "demo"))
    worker.wait_until_caught_up(60)
    with PrometheusServer(binary, f"127.0.0.1:{worker.web_port}", tmp_path) as prometheus, \
            Traffic(broker.bootstrap, worker.topic) as traffic, \
            ServiceStories(broker.bootstrap, worker.topic) as stories:
        api = Prometheus(prometheus.url)
        traffic_started = time.time()
        missing: dict[str, str] = {}

        def all_queries_answer() -> bool:
            if traffic.error is not None:
                raise AssertionError(f"the simulator stopped: {traffic.error!r}")
            if stories.error is not None:
                raise AssertionError(f"the service stories stopped: {stories.error!r}")
            missing.clear()
            now = time.time()
            for query in queries:
                result = api.instant(query.substituted(), now)
                if not finite_samples(result):
                    missing[query.name] = f"{len(result)} series, none finite: {query.substituted()}"
            return not missing

        wait_for(all_queries_answer, DATA_TIMEOUT, "every panel query to return a finite sample",
                 lambda: "\n" + "\n".join(f"  {name}: {why}" for name, why in missing.items())
                 + worker.log_tail(20) + prometheus.log_tail(10), interval=3.0)
        data_after = time.time() - traffic_started
        print(f"\nall {len(queries)} panel queries returned data after {data_after:.0f} s of traffic")

        # The team variable's query, as Grafana runs label_values() against Prometheus.
        values_url = (f"{prometheus.url}/api/v1/label/team/values?"
                      + urllib.parse.urlencode({"match[]": "servicewatch_promise_outcomes_total"}))
        with urllib.request.urlopen(values_url, timeout=10) as response:
            assert SUBSTITUTIONS["$team"] in response.read().decode()

        update = os.environ.get("SERVICEWATCH_UPDATE_PICTURES") == "1"
        if update:  # the committed pictures show a few minutes of traffic, not a few points
            time.sleep(max(0.0, PICTURE_TRAFFIC - data_after))
        out = DEFAULT_OUT if update else tmp_path / "img"
        end = time.time()
        written = render_all(prometheus.url, out, traffic_started - 5, end,
                             {"$__rate_interval": "30s", "$team": SUBSTITUTIONS["$team"]})
    assert [path.name for path in written] == [
        "servicewatch-overview.png", "servicewatch-pipeline.png", "servicewatch-team.png"]
    for path in written:
        assert path.stat().st_size > 20_000, f"{path} looks empty"
    print(f"pictures in {out}; test took {time.monotonic() - started:.0f} s")
