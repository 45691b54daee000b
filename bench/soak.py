#!/usr/bin/env python3
"""Soak test: does a servicewatch worker keep up, and does its memory stay put, over time?

Starts a broker (the embedded Tansu, or a real Apache Kafka), one worker process and the
traffic simulator on this machine, lets traffic run for --minutes, and every --interval
seconds samples:

  rss_mb   the worker's resident memory (VmRSS in /proc/<pid>/status)
  lag      records not yet processed, summed over partitions
           (servicewatch_consumer_lag_messages on the worker's /metrics)
  events   valid events the worker has processed (servicewatch_events_total)
  open, ended, overdue   promises, from the worker's /metrics

It prints one line per sample, then, once traffic has stopped and the worker has drained its
lag, a verdict that compares the first third of the traffic phase with the last third:

  lag      flat if the last third's mean lag is at most twice the first third's (or under
           --lag-slack records), and the lag drains to 0 after traffic stops
  memory   flat if the last third's mean RSS is within --rss-slack-mb of the first third's

What to expect from memory: the worker keeps ended promises for 7 days after their due time
(so late and duplicate deliveries are still recognised) and up to 100,000 recent event ids per
partition (to drop duplicates). Until those bounds are reached its state, and its memory,
grow with the traffic: the verdict therefore also reports growth per 1,000 events, the figure
to compare between versions. A soak shorter than the retention measures that slope; flatness
proper needs the bounds reached.

Examples:
  python bench/soak.py --minutes 10 --rate 20                  # 10 min on Tansu
  python bench/soak.py --minutes 30 --rate 50 --broker-kind kafka --json soak.json
  python bench/soak.py --minutes 0.75 --rate 8 --interval 3    # what CI runs (a smoke test)

Exit status: 0 if both verdicts are "flat", 1 if either is not, 2 if the run itself failed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from streams.embedded_broker import EmbeddedBroker, free_port  # noqa: E402
from streams.kafka_broker import ApacheKafkaBroker  # noqa: E402
from streams.processes import stop_process  # noqa: E402
from streams.simulation import run_simulation  # noqa: E402
from streams.topics import TopicSpec, ensure_topics  # noqa: E402


@dataclass
class Sample:
    elapsed: float  # seconds since traffic started
    phase: str  # "traffic" or "drain"
    rss_mb: float
    lag: float
    events: float
    events_per_s: float
    open: float
    ended: float
    overdue: float


@dataclass
class Verdict:
    lag_flat: bool
    lag_first_third: float
    lag_last_third: float
    lag_drained: bool
    drain_seconds: float | None
    memory_flat: bool
    rss_first_third_mb: float
    rss_last_third_mb: float
    rss_growth_mb: float
    rss_growth_mb_per_1k_events: float | None
    events: float
    lines: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.lag_flat and self.lag_drained and self.memory_flat


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench/soak.py", description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0,
                        help="how long traffic runs (default: 10; fractions allowed, e.g. 0.75)")
    parser.add_argument("--rate", type=float, default=20.0,
                        help="simulated customer cases started per second, ~5 events each (default: 20)")
    parser.add_argument("--broker-kind", choices=["tansu", "kafka"], default="tansu",
                        help="tansu: the embedded broker, in memory (default); kafka: a real Apache "
                        "Kafka 4.x from Maven Central jars (needs Java 17+; Maven on first use)")
    parser.add_argument("--interval", type=float, default=5.0,
                        help="seconds between samples (default: 5)")
    parser.add_argument("--partitions", type=int, default=8,
                        help="partitions of the events topic (default: 8)")
    parser.add_argument("--drain", type=float, default=60.0,
                        help="after traffic stops, wait up to this many seconds for the lag to reach "
                        "0 (default: 60)")
    parser.add_argument("--lag-slack", type=float, default=100.0,
                        help="a mean lag below this many records counts as flat (default: 100)")
    parser.add_argument("--rss-slack-mb", type=float, default=25.0,
                        help="RSS growth from the first third to the last third allowed as flat, "
                        "in MB (default: 25)")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write the samples and the verdict to this file, as JSON")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the broker and worker logs and the worker's data go (default: a "
                        "temporary directory, removed unless the run fails)")
    return parser


# -- sampling --------------------------------------------------------------------------------------
def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def scrape(url: str) -> dict[str, float]:
    """Sums of the few series the soak watches."""
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    sums = {"lag": 0.0, "events": 0.0, "open": 0.0, "ended": 0.0, "overdue": 0.0}
    names = {"servicewatch_consumer_lag_messages": "lag", "servicewatch_events_total": "events",
             "servicewatch_promises_open": "open", "servicewatch_promise_outcomes_total": "ended",
             "servicewatch_promises_overdue": "overdue"}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = names.get(sample.name)
            if key:
                sums[key] += sample.value
    return sums


HEADER = f"{'elapsed':>8} {'phase':>7} {'rss MB':>7} {'lag':>7} {'events':>9} {'ev/s':>7} {'open':>6} {'ended':>7} {'overdue':>7}"


def show(sample: Sample) -> str:
    return (f"{sample.elapsed:7.0f}s {sample.phase:>7} {sample.rss_mb:7.1f} {sample.lag:7.0f} "
            f"{sample.events:9.0f} {sample.events_per_s:7.1f} {sample.open:6.0f} {sample.ended:7.0f} "
            f"{sample.overdue:7.0f}")


# -- the verdict -----------------------------------------------------------------------------------
def judge(samples: list[Sample], drain_seconds: float | None, lag_slack: float,
          rss_slack_mb: float) -> Verdict:
    traffic = [s for s in samples if s.phase == "traffic"]
    if len(traffic) < 3:
        raise ValueError("too few samples to compare thirds: run longer or sample more often")
    third = max(len(traffic) // 3, 1)
    first, last = traffic[:third], traffic[-third:]
    lag_first = statistics.fmean(s.lag for s in first)
    lag_last = statistics.fmean(s.lag for s in last)
    lag_flat = lag_last <= max(2 * lag_first, lag_slack)
    rss_first = statistics.fmean(s.rss_mb for s in first)
    rss_last = statistics.fmean(s.rss_mb for s in last)
    growth = rss_last - rss_first
    events_between = statistics.fmean(s.events for s in last) - statistics.fmean(s.events for s in first)
    per_1k = growth / events_between * 1000 if events_between > 0 else None
    memory_flat = growth <= rss_slack_mb
    events = samples[-1].events
    verdict = Verdict(lag_flat, lag_first, lag_last, drain_seconds is not None, drain_seconds,
                      memory_flat, rss_first, rss_last, growth, per_1k, events)
    drained = (f"drained to 0 in {drain_seconds:.0f}s after traffic stopped" if drain_seconds is not None
               else "did NOT drain to 0 after traffic stopped")
    verdict.lines = [
        f"lag:    {'flat' if lag_flat else 'GROWING'} (mean {lag_first:.0f} in the first third, "
        f"{lag_last:.0f} in the last); {drained}",
        f"memory: {'flat' if memory_flat else 'GROWING'} (mean RSS {rss_first:.1f} MB in the first third, "
        f"{rss_last:.1f} MB in the last: {growth:+.1f} MB"
        + (f", {per_1k:+.2f} MB per 1,000 events" if per_1k is not None else "") + ")",
        f"events: {events:,.0f} processed",
    ]
    return verdict


# -- running ---------------------------------------------------------------------------------------
def start_broker(kind: str, workdir: Path):
    log = workdir / "broker.log"
    if kind == "kafka":
        return ApacheKafkaBroker(port=free_port(), log_file=log).start(timeout=120)
    return EmbeddedBroker(port=free_port(), log_file=log).start()


def start_worker(broker_url: str, topic: str, partitions: int, workdir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SERVICEWATCH_")}
    env.update(SERVICEWATCH_DATA_DIR=str(workdir / "data"),
               SERVICEWATCH_APP_ID=f"soak-{uuid.uuid4().hex[:8]}", PYTHONUNBUFFERED="1")
    log = open(workdir / "worker.log", "ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "streams", "worker", "--broker", broker_url, "--topic", topic,
         "--partitions", str(partitions), "--web-port", str(port)],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(ROOT))
    log.close()
    return process, f"http://127.0.0.1:{port}/metrics"


def wait_until(condition, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def try_scrape(url: str) -> dict[str, float] | None:
    try:
        return scrape(url)
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return None


def soak(args: argparse.Namespace, workdir: Path) -> tuple[list[Sample], Verdict]:
    print(f"soak: {args.minutes:g} min of {args.rate:g} cases/s on {args.broker_kind}, "
          f"sampling every {args.interval:g}s; logs in {workdir}", flush=True)
    broker = start_broker(args.broker_kind, workdir)
    worker = None
    stop = threading.Event()
    try:
        topic = f"soak-{uuid.uuid4().hex[:8]}"
        ensure_topics(broker.bootstrap, [TopicSpec(topic, args.partitions),
                                         TopicSpec(f"{topic}.dlq", args.partitions)])
        worker, url = start_worker(broker.url, topic, args.partitions, workdir)

        def ready():
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited with {worker.returncode}; see {workdir / 'worker.log'}")
            scraped = try_scrape(url)
            return scraped is not None and _partitions_polled(url) >= args.partitions

        wait_until(ready, 120, "the worker to hold every partition")
        errors: list[BaseException] = []

        def traffic():
            try:
                run_simulation(broker.bootstrap, topic, cases_per_second=args.rate,
                               duration=args.minutes * 60, stop=stop)
            except BaseException as error:  # reported below
                errors.append(error)

        sender = threading.Thread(target=traffic, name="simulator", daemon=True)
        print(HEADER, flush=True)
        samples: list[Sample] = []
        started = time.monotonic()
        sender.start()
        next_at = started + args.interval
        drain_started = drain_seconds = None
        last_events, last_at = 0.0, started
        while True:
            wait = next_at - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            next_at += args.interval
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited with {worker.returncode}; see {workdir / 'worker.log'}")
            if errors:
                raise RuntimeError(f"the simulator failed: {errors[0]}")
            now = time.monotonic()
            phase = "traffic" if sender.is_alive() else "drain"
            if phase == "drain" and drain_started is None:
                drain_started = now
            metrics = try_scrape(url)
            if metrics is None:
                print(f"{now - started:7.0f}s  (metrics did not answer)", flush=True)
                continue
            sample = Sample(round(now - started, 1), phase, round(rss_mb(worker.pid), 1), metrics["lag"],
                            metrics["events"], (metrics["events"] - last_events) / (now - last_at),
                            metrics["open"], metrics["ended"], metrics["overdue"])
            last_events, last_at = metrics["events"], now
            samples.append(sample)
            print(show(sample), flush=True)
            if phase == "drain":
                if sample.lag == 0:
                    drain_seconds = now - drain_started
                    break
                if now - drain_started > args.drain:
                    break
        verdict = judge(samples, drain_seconds, args.lag_slack, args.rss_slack_mb)
        return samples, verdict
    finally:
        stop.set()
        if worker is not None:
            stop_process(worker, timeout=20)
        broker.stop()


def _partitions_polled(url: str) -> int:
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return sum(1 for family in text_string_to_metric_families(text)
               for s in family.samples if s.name == "servicewatch_partition_time_seconds")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.minutes <= 0 or args.rate <= 0 or args.interval <= 0:
        print("--minutes, --rate and --interval must be positive", file=sys.stderr)
        return 2
    keep = args.workdir is not None
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="servicewatch-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        samples, verdict = soak(args, workdir)
    except (RuntimeError, TimeoutError, ValueError, OSError) as error:
        print(f"soak failed: {error}\nlogs kept in {workdir}", file=sys.stderr)
        return 2
    print("\nverdict:\n  " + "\n  ".join(verdict.lines), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps({
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "samples": [asdict(s) for s in samples],
            "verdict": {**asdict(verdict), "ok": verdict.ok},
        }, indent=1))
    if not keep:
        import shutil
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
