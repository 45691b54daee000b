"""Recovery of the promises table after a restart, with N open promises.

1. N promise events (due in a day, so they stay open; 4 teams, 6 kinds) are produced into a
   fresh 8-partition topic, and one worker processes them: it writes each promise to the
   ``<app id>-promises-changelog`` and the event ids, in batches, to ``-seen-events-changelog``
   (N records and one per partition and 0.2 s sweep tick).
2. That worker is stopped (SIGTERM; it flushes its producer and commits).
3. A fresh worker process with the same app id and an EMPTY data dir starts; timed from its
   launch (Popen) until its /metrics shows sum(servicewatch_promises_open) = N, i.e. Faust has
   replayed the changelogs and the worker has rebuilt every partition's PromiseBook. Also
   reported: when /metrics first answered, the worker's CPU seconds and its RSS at that point
   (the whole worker with N open promises: book + tables + seen event ids + Faust).

Durability claims are proven on Apache Kafka (Tansu's changelog replay was seen to lose
updates, TOOLCHAIN.md); on Tansu the figure is shown with that caveat.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bench import scrape
from bench.backlog import produce
from bench.proc import cpu_seconds, rss_mb
from bench.throughput import drain, new_workers, stop
from streams.topics import TopicSpec, ensure_topics

KINDS = ("callback", "delivery", "resolution", "refund", "visit", "other")
TEAMS = ("billing", "support", "logistics", "field-service")


@dataclass
class Recovery:
    promises: int
    ingest_rate: float  # events/s of the first worker on promise-only events
    serving_seconds: float | None  # launch -> /metrics answers
    recovered_seconds: float  # launch -> open promises = N
    cpu_seconds: float
    rss_mb: float
    changelog_records: int  # promise records replayed (the event-id batches add a few hundred)


def _promises(count: int) -> list[tuple[bytes, bytes]]:
    rng = random.Random(11)
    now = datetime.now(timezone.utc)
    due = now + timedelta(days=1)
    records = []
    for i in range(count):
        case = f"case-rec-{i:09d}"
        body = {"event_id": uuid.UUID(int=rng.getrandbits(128), version=4).hex, "type": "promise",
                "occurred_at": now.isoformat(), "case_id": case, "team": TEAMS[i % 4], "channel": "chat",
                "promise_id": f"prm-rec-{i:09d}", "kind": KINDS[i % 6],
                "due_at": (due + timedelta(seconds=rng.uniform(0, 86_400))).isoformat()}
        records.append((case.encode(), json.dumps(body).encode()))
    return records


def _open(text: str) -> float:
    return sum(v for _, v in scrape.labelled(text, "servicewatch_promises_open"))


def measure(broker, count: int, partitions: int, workdir: Path, timeout: float = 3600.0) -> Recovery:
    topic = f"bench-recovery-{uuid.uuid4().hex[:8]}"
    ensure_topics(broker.bootstrap, [TopicSpec(topic, partitions), TopicSpec(f"{topic}.dlq", partitions)])
    produce(broker.bootstrap, topic, _promises(count))
    first = new_workers(broker, topic, partitions, workdir, label="recovery")
    try:
        ingest = drain(first, count, partitions, broker.pid, timeout=timeout)
    finally:
        stop(first, timeout=60)
    second = new_workers(broker, topic, partitions, workdir, label="recovery")[0]
    second.app_id = first[0].app_id  # same group, same changelogs; a new, empty data dir
    second.data_dir = workdir / f"{second.app_id}-fresh-data"
    launched = time.monotonic()
    second.start()
    serving = None
    try:
        while True:
            if not second.running():
                raise RuntimeError(f"recovering worker exited{second.log_tail()}")
            text = scrape.page(second.metrics_url, timeout=10)
            now = time.monotonic()
            if text is not None and serving is None:
                serving = now - launched
            if text is not None and _open(text) >= count:
                break
            if now - launched > timeout:
                raise TimeoutError(f"open promises did not reach {count} in {timeout:.0f}s{second.log_tail()}")
            time.sleep(0.25)
        return Recovery(count, ingest.rate, serving, now - launched, cpu_seconds(second.pid),
                        rss_mb(second.pid), count)
    finally:
        stop([second], timeout=1)  # measured: no need to wait for a graceful shutdown
