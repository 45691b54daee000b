"""Checks that the broker launcher tests run against each broker (Tansu and Apache Kafka).

test_embedded_broker.py and test_apache_kafka_broker.py call these on their own
broker, so both launchers are held to the same assertions.
"""

from __future__ import annotations

import os
import time
import uuid

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from streams.embedded_broker import port_is_free
from streams.topics import TopicSpec, ensure_topics


def unique_topic(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def produce(bootstrap: str, topic: str, messages: dict[bytes, bytes]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    try:
        for key, value in messages.items():
            producer.send(topic, key=key, value=value)
        producer.flush(timeout=10)
    finally:
        producer.close()


def consume_all(bootstrap: str, topic: str, expected: int, timeout: float = 20.0) -> list:
    """Every record of `topic` from the beginning, by assignment (no consumer group:
    Tansu holds group joins for half the session timeout)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest")
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        records = []
        deadline = time.monotonic() + timeout
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def check_up_on_loopback(broker) -> None:
    assert broker.running and broker.pid
    assert broker.bootstrap == f"127.0.0.1:{broker.port}"
    assert broker.url == f"kafka://127.0.0.1:{broker.port}"
    assert not port_is_free("127.0.0.1", broker.port)


def check_creates_requested_partitions_then_nothing(bootstrap: str) -> None:
    topic = unique_topic("events")
    specs = [TopicSpec(topic, partitions=4)]

    assert ensure_topics(bootstrap, specs) == [topic]

    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        assert consumer.partitions_for_topic(topic) == {0, 1, 2, 3}
    finally:
        consumer.close()
    again = ensure_topics(bootstrap, specs)
    assert again == [] and again.warnings == []


def check_keyed_messages_round_trip(bootstrap: str) -> None:
    topic = unique_topic("roundtrip")
    ensure_topics(bootstrap, [TopicSpec(topic, partitions=4)])
    sent = {f"service-{i}".encode(): f"event-{i}".encode() for i in range(10)}

    produce(bootstrap, topic, sent)
    records = consume_all(bootstrap, topic, expected=len(sent))

    assert {record.key: record.value for record in records} == sent
    assert len(records) == len(sent)
    assert len({record.partition for record in records}) > 1  # keys spread over partitions


def check_compacted_topic_config_reads_back(bootstrap: str, prefix: str) -> None:
    topic = unique_topic(prefix)
    ensure_topics(bootstrap, [TopicSpec(topic, partitions=2, configs={"cleanup.policy": "compact"})])

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)],
                                           config_filter="all")
    finally:
        admin.close()
    assert described["topic"][topic]["cleanup.policy"]["value"] == "compact"


def check_stopped(broker, pid: int, port: int) -> None:
    """`broker` was stopped: no process, no pid, its port free again."""
    assert not broker.running and broker.pid is None
    assert not process_exists(pid)
    assert port_is_free("127.0.0.1", port)
