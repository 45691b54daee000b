"""(c) servicewatch workers draining the backlog, timed from their /metrics.

Folded into the harness from the first rough script (it printed one figure on Tansu). A worker
is ``python -m streams worker`` started as the integration tests start it
(tests/integration/harness.py's WorkerProcess), with a fresh app id, hence its own consumer
group. The harness polls its /metrics every --poll seconds (0.5 by default; a scrape costs the
worker CPU, so not faster) and sums ``servicewatch_events_total`` + ``_events_rejected_total``
+ ``_events_duplicate_total``: the records it has finished with. Timing runs from the first
poll that shows a non-zero count to the first that shows N (so up to one poll interval of
error at each end), and the events counted are N minus that first count. With several
workers it starts once the partitions are spread over all of them (a joining worker makes the
group rebalance, which stalls consumption for a few seconds); if the backlog is nearly gone by
then it falls back to first-to-last and says so.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from bench import scrape
from bench.proc import CpuWindow, MachineWindow, peak_rss_mb
from tests.integration.harness import WorkerProcess

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class BenchWorker(WorkerProcess):
    """A WorkerProcess that can run under another Python front end (``-m cProfile -o F``)."""

    python_args: tuple[str, ...] = ()

    def start(self) -> "BenchWorker":
        if not self.python_args:
            return super().start()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SERVICEWATCH_")}
        env.update(SERVICEWATCH_DATA_DIR=str(self.data_dir), SERVICEWATCH_APP_ID=self.app_id,
                   PYTHONUNBUFFERED="1")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_handle = open(self.log_path, "ab")
        command = [sys.executable, *self.python_args, "-m", "streams", "worker",
                   "--broker", self.broker_url, "--web-port", str(self.web_port), "--topic", self.topic,
                   "--partitions", str(self.partitions), *self.extra_args]
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=self._log_handle,
                                        stderr=subprocess.STDOUT, env=env, cwd=str(ROOT))
        return self


def new_workers(broker, topic: str, partitions: int, workdir: Path, count: int = 1,
                extra_args: tuple[str, ...] = (), python_args: tuple[str, ...] = (),
                label: str = "worker") -> list[BenchWorker]:
    from streams.embedded_broker import free_port

    app_id = f"bench-{label}-{uuid.uuid4().hex[:8]}"
    return [BenchWorker(broker_url=broker.url, topic=topic, app_id=app_id, web_port=free_port(),
                        data_dir=workdir / f"{app_id}-data-{i}", log_path=workdir / f"{app_id}-{i}.log",
                        partitions=partitions, extra_args=extra_args, python_args=python_args)
            for i in range(count)]


@dataclass
class Drain:
    workers: int
    events: int  # counted in the window
    seconds: float
    cpu_seconds: list[float]  # per worker, over the window
    peak_rss_mb: list[float]
    broker_cpu_seconds: float | None
    machine_cores_busy: float
    note: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("nan")


def drain(workers: list[BenchWorker], target: int, partitions: int, broker_pid: int | None,
          poll: float = 0.5, timeout: float = 1800.0, stop_at: int | None = None) -> Drain:
    """Start ``workers`` and time them until together they have processed ``target`` records.

    ``stop_at`` ends the window earlier (a profiled run). The workers keep running.
    """
    for worker in workers:
        worker.start()
    end_at = min(target, stop_at or target)
    started = time.monotonic()
    first = settled = None  # (monotonic time, processed, cpu windows, broker window)
    while True:
        pages = []
        for worker in workers:
            if not worker.running():
                raise RuntimeError(f"worker exited with {worker.process.returncode}{worker.log_tail()}")
            pages.append(scrape.page(worker.metrics_url, timeout=10))
        now = time.monotonic()
        done = sum(scrape.processed(p) for p in pages if p)
        if first is None and done > 0:
            first = _mark(now, done, workers, broker_pid)
        if settled is None and first is not None and _spread(pages, partitions):
            settled = _mark(now, done, workers, broker_pid)
        if done >= end_at:
            break
        if now - started > timeout:
            raise TimeoutError(f"{len(workers)} worker(s) processed {done:.0f} of {end_at} records "
                               f"in {timeout:.0f}s{workers[0].log_tail()}")
        time.sleep(_next_poll(first, now, done, end_at, poll))
    note = ""
    mark = first
    if len(workers) > 1:
        if settled is not None and settled[1] < 0.9 * end_at:
            mark = settled
        else:
            note = "first-to-last: the backlog was nearly gone before the group settled (includes the rebalance)"
    t0, done0, cpus, broker_cpu, machine = mark
    return Drain(workers=len(workers), events=int(done - done0), seconds=now - t0,
                 cpu_seconds=[c.stop() or 0.0 for c in cpus],
                 peak_rss_mb=[peak_rss_mb(w.pid) for w in workers],
                 broker_cpu_seconds=broker_cpu.stop(), machine_cores_busy=machine.stop(), note=note,
                 extra={"processed_at_start": done0, "processed_at_end": done})


def _next_poll(first, now, done, end_at, poll) -> float:
    """Poll every ``poll`` s until progress shows, then sleep half the expected time left
    (at most 5 s, at least ``poll``): few scrapes in the middle, ``poll`` precision at the end."""
    if first is None or done <= first[1] or now <= first[0]:
        return poll
    rate = (done - first[1]) / (now - first[0])
    return min(max(0.5 * (end_at - done) / rate, poll), max(poll, 5.0))


def _mark(now, done, workers, broker_pid):
    return (now, done, [CpuWindow(w.pid).mark() for w in workers], CpuWindow(broker_pid).mark(),
            MachineWindow().mark())


def _spread(pages: list[str | None], partitions: int) -> bool:
    """Every partition held by exactly one worker, and every worker holding some."""
    held = [scrape.partitions_held(p) if p else set() for p in pages]
    if any(not h for h in held):
        return False
    union = set().union(*held)
    return len(union) == partitions and sum(len(h) for h in held) == partitions


def stop(workers: list[WorkerProcess], timeout: float = 20.0) -> None:
    """SIGTERM them all at once (a graceful Faust shutdown takes seconds), then wait for each."""
    for worker in workers:
        if worker.running():
            try:
                os.kill(worker.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    for worker in workers:
        worker.stop(timeout=timeout)
