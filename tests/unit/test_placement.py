"""The worker's check that a record sits where Kafka's default partitioner puts its key."""

import logging
from types import SimpleNamespace

import pytest

from schemas.partitioning import murmur2_partition
from streams.progress import ConsumerProgress
from tests.unit.test_processor import NOW, event, make_worker, sample

# Kafka's own murmur2 test vectors (clients' UtilsTest), as signed 32-bit Java ints.
JAVA_MURMUR2 = {b"21": -973932308, b"foobar": -790332482, b"a-little-bit-long-string": -985981536,
                b"a-little-bit-longer-string": -1486304829, b"abc": 479470107,
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971}


@pytest.mark.parametrize("partitions", [1, 3, 8, 100])
def test_partitions_match_the_java_client(partitions):
    for key, java_hash in JAVA_MURMUR2.items():
        assert murmur2_partition(key, partitions) == (java_hash & 0x7FFFFFFF) % partitions


def greeting(event_id):
    return event("greeting", event_id, case_id="case-1", contact_at=NOW.isoformat())


def test_an_event_off_its_partition_is_counted_and_still_processed(caplog):
    processor, registry, _ = make_worker()
    processor.topic_partitions = 8
    right = murmur2_partition(b"case-1", 8)
    with caplog.at_level(logging.WARNING, logger="streams.processor"):
        assert processor.process(right, 0, NOW.timestamp(), b"case-1", greeting("g1")) is None
        assert sample(registry, "servicewatch_events_misplaced_total") == 0
        assert not caplog.text
        assert processor.process((right + 1) % 8, 0, NOW.timestamp(), b"case-1", greeting("g2")) is None
    assert sample(registry, "servicewatch_events_misplaced_total") == 1
    assert sample(registry, "servicewatch_events_total", type="greeting") == 2
    assert "partitioner=murmur2_random" in caplog.text


def test_nothing_is_checked_before_the_partition_count_is_known():
    processor, registry, _ = make_worker()
    wrong = (murmur2_partition(b"case-1", 8) + 1) % 8
    processor.process(wrong, 0, NOW.timestamp(), b"case-1", greeting("g1"))
    assert sample(registry, "servicewatch_events_misplaced_total") == 0


def test_a_steady_stream_of_misplaced_events_warns_once_a_minute(caplog, monkeypatch):
    processor, registry, _ = make_worker()
    processor.topic_partitions = 8
    wrong = (murmur2_partition(b"case-1", 8) + 1) % 8
    clock = [1000.0]
    monkeypatch.setattr("streams.processor.time.monotonic", lambda: clock[0])
    with caplog.at_level(logging.WARNING, logger="streams.processor"):
        for n in range(500):
            clock[0] += 0.25  # two minutes of 4 events a second
            processor.process(wrong, n, NOW.timestamp(), b"case-1", greeting(f"g{n}"))
    assert sample(registry, "servicewatch_events_misplaced_total") == 500
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 3, warnings  # at the first, after one minute, after two
    assert warnings[1].startswith("240 event(s) since the last warning")


class FakeCluster:
    def partitions_for_topic(self, topic):
        return {0, 1, 2} if topic == "events" else None


def test_the_partition_count_comes_from_metadata_every_group_member_keeps():
    # Faust's consumer.topic_partitions() reads a snapshot only the group leader fills, so a
    # follower would never check; the cluster metadata is every member's.
    aiokafka_consumer = SimpleNamespace(_client=SimpleNamespace(cluster=FakeCluster()))
    faust_consumer = SimpleNamespace(_thread=SimpleNamespace(_ensure_consumer=lambda: aiokafka_consumer),
                                     topic_partitions=lambda topic: None)
    app = SimpleNamespace(consumer=faust_consumer)
    assert ConsumerProgress(app, "events").topic_partition_count() == 3
    assert ConsumerProgress(app, "other").topic_partition_count() is None
