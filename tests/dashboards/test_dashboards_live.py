"""Every panel query returns data from a real Prometheus scraping a real worker.

The embedded broker (Tansu), one servicewatch worker, the traffic simulator and Debian's
Prometheus 2.42 (scraping the worker every second as job="servicewatch", with the rule files
of deploy/prometheus/rules) run on 127.0.0.1. Each panel query, with Grafana's variables
replaced ($__rate_interval -> 1m, $__range -> 1h, $team -> billing), must return at least one
finite sample within a few minutes of traffic. Then dashboards/render.py draws the panels from
the same Prometheus into PNGs: into the test's temporary directory, or into docs/img with
SERVICEWATCH_UPDATE_PICTURES=1 (how the committed pictures were made).
"""

from __future__ import annotations

import math
import os
import subprocess
import threading
import time
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
from tests.integration.harness import wait_for

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


def finite_samples(result: list[dict]) -> int:
    return sum(1 for series in result if math.isfinite(float(series["value"][1])))


def test_every_panel_query_returns_data_and_the_panels_render(broker, start_worker, tmp_path):
    binary = require_tool("prometheus")
    assert sorted(RULE_DIR.glob("*.yml")), f"the dashboards read recording rules from {RULE_DIR}"
    queries = expressions()
    started = time.monotonic()
    worker = start_worker(partitions=4)
    worker.wait_until_caught_up(60)
    with PrometheusServer(binary, f"127.0.0.1:{worker.web_port}", tmp_path) as prometheus, \
            Traffic(broker.bootstrap, worker.topic) as traffic:
        api = Prometheus(prometheus.url)
        traffic_started = time.time()
        missing: dict[str, str] = {}

        def all_queries_answer() -> bool:
            if traffic.error is not None:
                raise AssertionError(f"the simulator stopped: {traffic.error!r}")
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
