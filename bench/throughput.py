"""How many events per second one servicewatch worker processes, from a backlog.

Produces a backlog of realistic events (the simulator's case mix) into a fresh
topic on the embedded broker, then starts one worker and times how long it takes
to process all of them. A first rough figure for sizing; the full benchmark with
side-by-side baselines is still to come (issue 11).

    python bench/throughput.py --events 20000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone

from kafka import KafkaProducer

from streams.embedded_broker import EmbeddedBroker, free_port
from streams.scrape import summarize
from streams.simulation import CasePlanner
from streams.topics import TopicSpec, ensure_topics


def backlog(count: int, seed: int) -> list[tuple[bytes, bytes]]:
    planner = CasePlanner(rng=__import__("random").Random(seed))
    records: list[tuple[bytes, bytes]] = []
    now = datetime.now(timezone.utc)
    while len(records) < count:
        for item in planner.plan_case(now):
            records.append((item.key.encode(), json.dumps(item.event).encode()))
    return records[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000, help="backlog size (default 20000)")
    parser.add_argument("--partitions", type=int, default=8, help="topic partitions (default 8)")
    args = parser.parse_args()

    with EmbeddedBroker(port=free_port()) as broker, tempfile.TemporaryDirectory() as data:
        topic = f"bench-{os.getpid()}"
        ensure_topics(broker.bootstrap, [TopicSpec(topic, args.partitions), TopicSpec(f"{topic}.dlq", args.partitions)])
        records = backlog(args.events, seed=1)
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=20, batch_size=256 * 1024)
        for key, value in records:
            producer.send(topic, key=key, value=value)
        producer.flush()
        producer.close()
        print(f"backlog: {len(records):,} events in {topic} ({args.partitions} partitions)", file=sys.stderr)

        port = free_port()
        env = dict(os.environ, SERVICEWATCH_DATA_DIR=data, SERVICEWATCH_APP_ID=topic)
        worker = subprocess.Popen(
            [sys.executable, *os.environ.get("BENCH_PYTHON_ARGS", "").split(), "-m", "streams", "worker", "--broker", broker.url, "--topic", topic,
             "--partitions", str(args.partitions), "--web-port", str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
        )
        url = f"http://127.0.0.1:{port}/metrics"
        try:
            first = None
            while True:
                try:
                    summary = summarize(url)
                except OSError:
                    time.sleep(0.2)
                    continue
                done = summary.events + summary.rejected + summary.duplicates
                if first is None and done > 0:
                    first = (time.monotonic(), done)
                if done >= len(records):
                    break
                time.sleep(1.0)  # a scrape costs the worker real CPU: don't measure scrapes
            elapsed = time.monotonic() - first[0]
            rate = (len(records) - first[1]) / elapsed
            cpu = _cpu_seconds(worker.pid)
            print(f"processed {len(records):,} events; {rate:,.0f} events/s once consuming "
                  f"({elapsed:.1f} s); worker CPU {cpu:.1f} s in total")
        finally:
            worker.terminate()
            worker.wait(15)


def _cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    main()
