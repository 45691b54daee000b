"""The broker stops and comes back (Apache Kafka, its log on disk, same port) while a worker
runs: the worker recovers by itself and its numbers are the oracle's.

Only on Apache Kafka: Tansu keeps its log in memory, so a restarted Tansu is an empty
cluster and there is nothing to recover. Promises made before the outage fall due during
it: the worker cannot fetch, its partition clocks stand still, and it must not call an
on-time promise missed; after the restart it catches up and declares the real misses.
"""

from __future__ import annotations

import os
import time

import pytest

from streams.embedded_broker import free_port
from streams.kafka_broker import ApacheKafkaBroker, KafkaToolsMissing, find_java, resolve_kafka_jars
from streams.topics import TopicSpec, ensure_topics
from tests.faults.support import (
    PARTITION_TIME,
    Fleet,
    Traffic,
    changelog_outcomes,
    explain_differences,
    judged,
    last_deadline,
    log_excerpt,
    per_promise_differences,
    read_topic,
    settle_on_oracle,
    totals_line,
    wait_past,
)
from tests.integration.harness import series, unique_name, wait_for

pytestmark = pytest.mark.broker

PARTITIONS = 8
TRAFFIC_SECONDS = 20.0  # cases start for 20 s, then finish
STOP_AFTER = 8.0
OUTAGE_SECONDS = 8.0


@pytest.fixture
def kafka_on_disk(tmp_path):
    """An Apache Kafka whose log survives stop()/start() on the same port."""
    try:
        find_java()
        resolve_kafka_jars()
    except KafkaToolsMissing as missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Apache Kafka cannot run here: {missing}")
        pytest.skip(f"Apache Kafka cannot run here: {missing}")
    broker = ApacheKafkaBroker(port=free_port(), log_file=tmp_path / "kafka.log",
                               data_dir=tmp_path / "kafka-data")
    broker.start(timeout=90)
    try:
        yield broker
    finally:
        broker.stop()


def partition_times(worker) -> dict[str, float]:
    return {dict(labels)["partition"]: v
            for labels, v in series(worker.scrape(), PARTITION_TIME).items()}


def test_a_worker_recovers_by_itself_from_a_broker_restart(kafka_on_disk, tmp_path):
    broker = kafka_on_disk
    began = time.monotonic()
    story: list[str] = []

    def say(line: str) -> None:
        story.append(f"[{time.monotonic() - began:6.1f}s] {line}")

    fleet = Fleet(broker.url, unique_name("events"), unique_name("sw-restart"), tmp_path, PARTITIONS)
    # Emitters hold their events while Kafka is away and send them when it is back, stamped
    # (CreateTime) before they reached it: the oracle, reading only the log, could not tell
    # them from events that arrived in time. With LogAppendTime, the log's timestamps are
    # when each event reached Kafka, which is what PRODUCT.md's rule means.
    ensure_topics(broker.bootstrap, [
        TopicSpec(fleet.topic, PARTITIONS, {"message.timestamp.type": "LogAppendTime"}),
        TopicSpec(f"{fleet.topic}.dlq", PARTITIONS),
    ])
    try:
        (worker,) = fleet.start(1)
        worker.wait_until_caught_up(timeout=90)
        traffic = Traffic(broker.bootstrap, fleet.topic, rate=4.0, seconds=TRAFFIC_SECONDS, seed=11)
        traffic.start()
        wait_for(lambda: traffic.started_at and time.time() >= traffic.started_at + STOP_AFTER,
                 STOP_AFTER + 30, "traffic to run a while", interval=0.1)
        # The emitters hold their events while Kafka is away (and send them, stamped late,
        # when it is back); what they sent before is acknowledged, in the log.
        traffic.flushed_and_paused()
        before = traffic.acked
        broker.stop()
        stopped_at = time.time()
        say(f"broker stopped at {stopped_at:.3f} under worker pid {worker.pid}; {before} events in the log")
        # Promises made in the last seconds fall due while the broker is away.
        wait_for(lambda: time.time() > stopped_at + OUTAGE_SECONDS, OUTAGE_SECONDS + 5,
                 "the outage to last", interval=0.2)
        assert worker.running(), "the worker died while the broker was away" + worker.log_tail()
        broker.start(timeout=90)
        restarted_at = time.time()
        traffic.resume()
        say(f"broker back on the same port at {restarted_at:.3f}, after {restarted_at - stopped_at:.1f}s; "
            "traffic resumed")

        # Recovered by itself: every partition's time moves past the restart.
        wait_for(lambda: (times := partition_times(worker)) and len(times) == PARTITIONS
                 and min(times.values()) > restarted_at, 120,
                 "every partition's time to move past the restart",
                 lambda: f"\n{partition_times(worker)}" + worker.log_tail(40))
        say("the worker fetches again: every partition's time is past the restart")

        traffic.wait_done(TRAFFIC_SECONDS + 120)
        assert not traffic.failed, f"{len(traffic.failed)} sends failed: {traffic.failed[:3]}"
        say(f"traffic done: {traffic.acked} events in the log, {traffic.acked - before} after the restart")

        records = read_topic(broker.bootstrap, fleet.topic, at_least=traffic.acked)
        assert len(records) == traffic.acked
        wait_past(last_deadline(judged(records)))
        oracle = judged(records)
        scraped = settle_on_oracle(
            fleet.live, oracle, PARTITIONS, timeout=120,
            context=lambda: (explain_differences(broker.bootstrap, fleet.app_id, oracle, records,
                                                 traffic.acked_at)
                             + "\n".join(story) + log_excerpt(worker)))
        say(f"worker agrees with the oracle: {totals_line(scraped)}")
        persisted = changelog_outcomes(broker.bootstrap, fleet.app_id)
        differences = per_promise_differences(persisted, oracle, records)
        assert not differences, "\n  ".join(["persisted otherwise than the oracle:", *differences])
        assert worker.running() and fleet.workers == [worker], "the worker was not restarted"
        say(f"same worker process throughout; oracle: {oracle.summary()}")
        print("\n" + "\n".join(story))
    finally:
        fleet.stop()
