"""servicewatch's own share of the CPU per event: the processor and its state, without Kafka or Faust.

The same backlog as the table's rows (bench/backlog.py's case mix, ~1 % invalid) is fed
straight to ``EventProcessor.process``, partitioned by key as Kafka would, with the state's
changes sent every 300 events (about one 0.2 s sweep tick at the worker's rate) to stand-in
tables that JSON-encode each value as Faust's codec would and otherwise drop it. What is left
of a worker's CPU per event once this is taken away is Faust's and the Kafka client's.

    python -m bench.processor_only [--events N]
"""

from __future__ import annotations

import argparse
import json
import time

from prometheus_client import CollectorRegistry

from bench.backlog import plan
from schemas.partitioning import murmur2_partition
from streams.metrics import Instruments, TeamLabels
from streams.policy import Policy
from streams.processor import EventProcessor
from streams.state import PartitionStates

PARTITIONS = 8
SEND_EVERY = 300


class EncodingTable:
    """``data`` and ``send_changelog``, as the state uses a Faust table; counts the writes."""

    def __init__(self) -> None:
        self.data: dict = {}
        self.writes = 0

    def send_changelog(self, partition, key, value, value_serializer=None) -> None:
        self.writes += 1
        if value is not None:
            json.dumps(value)


def measure(events: int) -> tuple[float, float]:
    """(CPU µs per event, changelog writes per event)."""
    records, _ = plan(events)
    tables = (EncodingTable(), EncodingTable(), EncodingTable())
    states = PartitionStates(*tables, grace_seconds=2.0)
    processor = EventProcessor(states, Instruments(CollectorRegistry(), TeamLabels(50)), Policy.default())
    processor.topic_partitions = PARTITIONS  # as the worker learns it: every record is checked
    # Where the producer put each record (Kafka's default partitioner), worked out untimed.
    placed = [(murmur2_partition(key, PARTITIONS), key, value) for key, value in records]
    now = time.time()
    started = time.process_time()
    for offset, (partition, key, value) in enumerate(placed):
        processor.process(partition, offset, now + offset / 1000, key, value)
        processor.findings.clear()
        if offset % SEND_EVERY == SEND_EVERY - 1:
            states.send_pending()
    states.send_pending()
    cpu = time.process_time() - started
    return cpu / len(records) * 1e6, sum(t.writes for t in tables) / len(records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=40_000, help="records to process (default: 40000)")
    args = parser.parse_args()
    print(f"processing {args.events:,} records without Kafka or Faust ...", flush=True)
    per_event, writes = measure(args.events)
    print(f"servicewatch's own logic: {per_event:.0f} CPU µs per event, "
          f"{writes:.2f} changelog writes per event (sent every {SEND_EVERY} events)")


if __name__ == "__main__":
    main()
