"""The backlog every consumer drains: the simulator's case mix plus about 1 % invalid events.

CasePlanner (streams/simulation.py) plans whole cases: a greeting, 1-3 responses, 0-2 promises,
their deliveries (15 % late, 5 % never). Every event is produced at once (not at its planned
send time), keyed by case id, into a topic created beforehand with the wanted partitions.
About 1 in 100 records is invalid, in four ways the worker must dead-letter: bad JSON, an
unknown type, a schema violation and a key that is not the case id.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone

from streams.simulation import CasePlanner
from streams.topics import TopicSpec, ensure_topics

INVALID_SHARE = 0.01
INVALID_KINDS = ("invalid_json", "unknown_type", "schema_violation", "key_mismatch")


@dataclass
class Backlog:
    topic: str
    partitions: int
    count: int
    by_type: Counter = field(default_factory=Counter)
    produce_seconds: float = 0.0

    @property
    def invalid(self) -> int:
        return sum(n for kind, n in self.by_type.items() if kind in INVALID_KINDS)


def plan(count: int, seed: int = 1) -> tuple[list[tuple[bytes, bytes]], Counter]:
    """``count`` (key, value) records and how many of each type (invalid ones by kind)."""
    rng = random.Random(seed)
    planner = CasePlanner(rng=random.Random(seed + 1))
    now = datetime.now(timezone.utc)
    records: list[tuple[bytes, bytes]] = []
    by_type: Counter = Counter()
    while len(records) < count:
        for item in planner.plan_case(now):
            if len(records) >= count:
                break
            if rng.random() < INVALID_SHARE:
                kind = INVALID_KINDS[len(records) % len(INVALID_KINDS)]
                records.append(_invalid(kind, item.key, item.event))
                by_type[kind] += 1
            else:
                records.append((item.key.encode(), json.dumps(item.event).encode()))
                by_type[item.event["type"]] += 1
    return records, by_type


def _invalid(kind: str, key: str, event: dict) -> tuple[bytes, bytes]:
    if kind == "invalid_json":
        return key.encode(), json.dumps(event).encode()[:-7]
    if kind == "unknown_type":
        return key.encode(), json.dumps({**event, "type": "teleport"}).encode()
    if kind == "schema_violation":
        return key.encode(), json.dumps({**event, "occurred_at": "yesterday"}).encode()
    return b"not-" + key.encode(), json.dumps(event).encode()  # key_mismatch


def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> float:
    """Send every record and wait for all acknowledgements; returns the seconds it took."""
    from kafka import KafkaProducer

    started = time.monotonic()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=20,
                             batch_size=512 * 1024, max_request_size=4 * 1024 * 1024)
    try:
        for key, value in records:
            producer.send(topic, key=key, value=value)
        producer.flush(timeout=300)
    finally:
        producer.close(timeout=10)
    return time.monotonic() - started


def create(bootstrap: str, topic: str, partitions: int, count: int, seed: int = 1) -> Backlog:
    """Create ``topic`` (and its dead-letter topic) and fill it with ``count`` records."""
    ensure_topics(bootstrap, [TopicSpec(topic, partitions), TopicSpec(f"{topic}.dlq", partitions)])
    records, by_type = plan(count, seed)
    backlog = Backlog(topic, partitions, len(records), by_type)
    backlog.produce_seconds = produce(bootstrap, topic, records)
    return backlog
