"""How much a /metrics scrape holds up a worker's event loop, for workers of several checkouts.

    python -m bench.scrape_stall PATH [PATH...]

Each PATH is a servicewatch checkout (e.g. a ``git worktree`` of an older commit). One embedded
broker; for each checkout in turn, a worker from that checkout on a fresh topic, 15 s of simulated
traffic (4 teams), then: the page size, the median scrape, and how long a small request
(``/promises/at-risk?limit=1``) takes alone and while /metrics is scraped back to back
(:func:`bench.latency.loop_held_by_scrapes`). Side by side in one run, so the ratio holds even
on a busy machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench import scrape
from bench.latency import loop_held_by_scrapes, request_seconds, scrape_seconds, small_request_url
from streams.embedded_broker import EmbeddedBroker, free_port
from streams.processes import stop_process


def measure(root: Path, broker: EmbeddedBroker, workdir: Path) -> str:
    web = free_port()
    topic = f"stall-{uuid.uuid4().hex[:6]}"
    env = dict(os.environ, SERVICEWATCH_DATA_DIR=str(workdir / topic), SERVICEWATCH_APP_ID=topic)
    with open(workdir / f"{topic}.log", "ab") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "streams", "worker", "--broker", broker.url, "--topic", topic,
             "--web-port", str(web), "--partitions", "8", "--policy", "demo"],
            cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    metrics_url = f"http://127.0.0.1:{web}/metrics"
    try:
        while scrape.page(metrics_url) is None:
            if worker.poll() is not None:
                return f"{root}: the worker exited ({workdir / topic}.log)"
            time.sleep(0.5)
        subprocess.run([sys.executable, "-m", "streams", "simulate", "--broker", broker.url,
                        "--topic", topic, "--duration", "15", "--rate", "10", "--seed", "7"],
                       cwd=root, check=True, capture_output=True)
        time.sleep(3)
        lines = len((scrape.page(metrics_url) or "").splitlines())
        scrape_s = scrape_seconds(metrics_url)
        alone = request_seconds(small_request_url(metrics_url), 20)
        during_p50, during_max = loop_held_by_scrapes(metrics_url, requests=60)
        return (f"{root}: {lines:,} lines, scrape {1000 * scrape_s:.0f} ms; a small request alone "
                f"{1000 * statistics.median(alone):.1f} ms, during back-to-back scrapes "
                f"{1000 * during_p50:.0f} ms median, {1000 * during_max:.0f} ms max")
    finally:
        stop_process(worker, timeout=15)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scrape_stall", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkouts", nargs="+", type=Path, metavar="PATH",
                        help="servicewatch checkouts whose workers to compare")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="scrape-stall-") as tmp:
        workdir = Path(tmp)
        with EmbeddedBroker(port=free_port(), log_file=workdir / "tansu.log") as broker:
            for root in args.checkouts:
                print(measure(root.resolve(), broker, workdir), flush=True)


if __name__ == "__main__":
    main()
