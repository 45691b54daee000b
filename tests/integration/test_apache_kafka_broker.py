"""The Apache Kafka 4.x launcher (streams.kafka_broker), against a real broker JVM.

Needs `java` (17+) and, the first time only, `mvn` and Maven Central. Without
them these tests are skipped with the reason, except under CI=true, where they
fail: CI must not go green without having run them.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaTimeoutError

from streams.embedded_broker import free_port, port_is_free
from streams.kafka_broker import (KAFKA_VERSION, ApacheKafkaBroker, KafkaBrokerError,
                                  KafkaToolsMissing, find_java, resolve_kafka_jars)
from streams.topics import TopicSpec, ensure_topics
from tests.integration.broker_checks import (check_compacted_topic_config_reads_back,
                                             check_creates_requested_partitions_then_nothing,
                                             check_keyed_messages_round_trip, check_stopped,
                                             check_up_on_loopback, consume_all, process_exists,
                                             produce, unique_topic)

pytestmark = pytest.mark.broker


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


@pytest.fixture(scope="module")
def kafka_libs() -> Path:
    """The broker's jars (resolved on first use); skip, or fail under CI, without java/mvn."""
    try:
        find_java()
        started = time.monotonic()
        libs = resolve_kafka_jars()
    except KafkaToolsMissing as exc:
        if _in_ci():
            pytest.fail(f"CI=true, so Apache Kafka tests may not be skipped: {exc}", pytrace=False)
        pytest.skip(str(exc))
    print(f"\nApache Kafka {KAFKA_VERSION} jars ready in {time.monotonic() - started:.2f}s: {libs}")
    return libs


@pytest.fixture(scope="module")
def kafka(kafka_libs, tmp_path_factory):
    log_file = tmp_path_factory.mktemp("kafka") / "kafka.log"
    with ApacheKafkaBroker(port=free_port(), log_file=log_file) as running:
        yield running


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def test_broker_is_up_on_loopback(kafka):
    check_up_on_loopback(kafka)
    assert not port_is_free("127.0.0.1", kafka.controller_port)
    print(f"\nApache Kafka {kafka.version}: format {kafka.format_seconds:.2f}s, accepting after "
          f"{kafka.startup_seconds:.2f}s, metadata answered after {kafka.ready_seconds:.2f}s, "
          f"RSS {rss_mb(kafka.pid):.0f} MB")


def test_a_second_broker_on_the_same_port_is_refused_clearly(kafka):
    with pytest.raises(KafkaBrokerError, match=f"port {kafka.port} on 127.0.0.1 is already in use"):
        ApacheKafkaBroker(port=kafka.port).start()


def test_ensure_topics_creates_requested_partitions_then_nothing(kafka):
    check_creates_requested_partitions_then_nothing(kafka.bootstrap)


def test_keyed_messages_round_trip(kafka):
    check_keyed_messages_round_trip(kafka.bootstrap)


def test_compacted_topic_config_reads_back(kafka):
    check_compacted_topic_config_reads_back(kafka.bootstrap, prefix="changelog")


def test_topics_are_not_auto_created(kafka):
    # Producing to a missing topic would create it on Tansu or a default Kafka.
    topic = unique_topic("never-created")
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap, max_block_ms=2000)
    try:
        with pytest.raises(KafkaTimeoutError):
            producer.send(topic, b"value").get(timeout=5)
    finally:
        producer.close()
    consumer = KafkaConsumer(bootstrap_servers=kafka.bootstrap)
    try:
        assert topic not in consumer.topics()
    finally:
        consumer.close()


def test_stop_frees_the_port_ends_the_process_and_removes_its_temp_dir(kafka_libs):
    broker = ApacheKafkaBroker(port=free_port()).start()
    pid, port, run_dir = broker.pid, broker.port, broker.run_dir
    assert run_dir is not None and (run_dir / "kafka-logs" / "meta.properties").is_file()

    started = time.monotonic()
    broker.stop()
    print(f"\nstop took {time.monotonic() - started:.2f}s")

    check_stopped(broker, pid, port)
    assert not run_dir.exists()
    broker.stop()  # idempotent


def test_restart_with_the_same_data_dir_keeps_topics_and_messages(kafka_libs, tmp_path):
    data_dir = tmp_path / "kafka-data"
    topic = unique_topic("durable")
    sent = {f"key-{i}".encode(): f"value-{i}".encode() for i in range(10)}

    broker = ApacheKafkaBroker(port=free_port(), data_dir=data_dir, log_file=tmp_path / "kafka.log")
    broker.start()
    try:
        cluster_id, pid = broker.cluster_id, broker.pid
        ensure_topics(broker.bootstrap, [TopicSpec(topic, partitions=4)])
        produce(broker.bootstrap, topic, sent)
    finally:
        broker.stop()
    assert not process_exists(pid) and port_is_free("127.0.0.1", broker.port)
    assert (data_dir / "kafka-logs" / "meta.properties").is_file()  # caller's dir is kept

    broker.start()  # same object, same port: the usual restart test
    try:
        assert broker.format_seconds is None  # not formatted again
        assert broker.cluster_id == cluster_id
        print(f"\nrestart: metadata answered after {broker.ready_seconds:.2f}s")
        again = ensure_topics(broker.bootstrap, [TopicSpec(topic, partitions=4)])
        assert again == []  # the topic survived
        records = consume_all(broker.bootstrap, topic, expected=len(sent))
        assert {record.key: record.value for record in records} == sent
    finally:
        broker.stop()

    with ApacheKafkaBroker(port=free_port(), data_dir=data_dir) as other:  # a new launcher, new port
        records = consume_all(other.bootstrap, topic, expected=len(sent))
        assert {record.key: record.value for record in records} == sent
        assert other.cluster_id == cluster_id
    assert data_dir.is_dir()


def test_a_broker_that_dies_at_startup_reports_its_log(kafka_libs, tmp_path):
    # A log dir formatted for node 2 makes node 1 exit at once with a clear error.
    logs = tmp_path / "data" / "kafka-logs"
    logs.mkdir(parents=True)
    (logs / "meta.properties").write_text(
        "version=1\ncluster.id=AAAAAAAAAAAAAAAAAAAAAA\nnode.id=2\ndirectory.id=BBBBBBBBBBBBBBBBBBBBBB\n")
    broker = ApacheKafkaBroker(port=free_port(), data_dir=tmp_path / "data")

    with pytest.raises(KafkaBrokerError, match="exited during startup") as raised:
        broker.start(timeout=60.0)

    assert "last lines of the broker log" in str(raised.value)
    assert not broker.running and port_is_free("127.0.0.1", broker.port)


def test_missing_maven_is_reported_with_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.delenv("JAVA_HOME", raising=False)

    with pytest.raises(KafkaToolsMissing, match="apt-get install openjdk-17-jre-headless maven"):
        resolve_kafka_jars(cache_dir=tmp_path / "cold-cache")


def test_a_warm_cache_needs_no_maven(kafka_libs, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    started = time.monotonic()
    assert resolve_kafka_jars() == kafka_libs
    assert time.monotonic() - started < 0.5
