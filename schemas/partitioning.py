"""Where Kafka's default partitioner puts a key: murmur2, as every servicewatch producer does.

All events of a case must reach one partition: a delivery on another partition than its
promise never meets it, and the promise is declared missed. Kafka's Java client,
kafka-python (the emitter and ``servicewatch replay``), aiokafka (the worker's HTTP ingest),
franz-go and KafkaJS hash the key with murmur2; clients built on librdkafka default to CRC32
(``consistent_random``) and Sarama to FNV-1a. The emitter names partitions with this, and the
worker counts records that are not where it puts them.

Imports kafka-python, so the event models (``schemas``) do not import this module.
"""

from __future__ import annotations

from kafka.partitioner import murmur2


def murmur2_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``key`` among ``partitions``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
