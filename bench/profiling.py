"""--profile: the servicewatch worker under cProfile, draining the same backlog (own group).

The worker runs as ``python -m cProfile -o FILE -m streams worker ...`` until it has processed
--profile-events records (or the whole backlog), then gets SIGTERM; Faust shuts down, cProfile
writes FILE on exit, and the top entries are printed by cumulative and by self (tottime) time,
then servicewatch's own functions (streams/, schemas/) by cumulative time.
cProfile sees the main thread only: that is where Faust's agent, the stream iterator, the
consumer's drain loop and servicewatch's processing run (aiokafka's fetcher runs in Faust's
consumer thread and is not in the profile). Profiling slows the worker about 2x, so this run
is not one of the table's rows. pstats' "cumulative" of an asyncio coroutine counts only the
time it ran, not the time it waited.
"""

from __future__ import annotations

import io
import pstats
import time
from pathlib import Path

from bench.throughput import drain, new_workers, stop


def profile(broker, topic: str, partitions: int, target: int, workdir: Path, events: int,
            top: int = 25, poll: float = 0.5) -> str:
    output = workdir / "worker.prof"
    workers = new_workers(broker, topic, partitions, workdir, label="profiled",
                          python_args=("-m", "cProfile", "-o", str(output)))
    try:
        result = drain(workers, target, partitions, broker.pid, poll=poll, stop_at=events)
    finally:
        stop(workers, timeout=60)
    deadline = time.monotonic() + 10
    while not output.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    if not output.exists():
        return f"(no profile written: the worker did not exit cleanly; see {workers[0].log_path})"
    text = io.StringIO()
    stats = pstats.Stats(str(output), stream=text)
    stats.strip_dirs()
    text.write(f"profiled worker: {result.events:,} records in {result.seconds:.1f} s "
               f"({result.rate:,.0f} ev/s under cProfile); profile of the whole process life\n")
    text.write(f"\n-- top {top} by cumulative time --\n")
    stats.sort_stats("cumulative").print_stats(top)
    text.write(f"\n-- top {top} by self time (tottime) --\n")
    stats.sort_stats("tottime").print_stats(top)
    own = pstats.Stats(str(output), stream=text)  # paths kept: only servicewatch's own code
    text.write("\n-- servicewatch's own functions (streams/, schemas/) by cumulative time --\n")
    own.sort_stats("cumulative").print_stats(r"/(streams|schemas)/", 15)
    return _trim(text.getvalue())


def _trim(text: str) -> str:
    """pstats prints a preamble per listing; keep the table lines."""
    keep = []
    for line in text.splitlines():
        if line.strip().startswith(("Ordered by", "List reduced")) or "function calls" in line:
            continue
        keep.append(line.rstrip())
    return "\n".join(line for i, line in enumerate(keep) if line or (i and keep[i - 1]))
