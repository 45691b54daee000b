"""The worker's check that a record sits where Kafka's default partitioner puts its key."""

import logging

import pytest

from schemas.partitioning import murmur2_partition
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
