"""How far each assigned partition has been fetched and processed.

Faust does not expose the fetch response's high watermark and its time in its
public API, so this module is the one place that reads them from the aiokafka
consumer underneath. The high watermark comes from fetch responses (correct on
Tansu too, unlike ``end_offsets``).

When was that high watermark true? aiokafka's ``last_poll_timestamp`` is when
the worker *read* the response, which can be long after the broker answered (a
paused or starved process): trusting it declared false misses. The request
behind a response is only sent after the previous response for the partition
was read, so the broker answered no earlier than the previous poll timestamp.
That earlier timestamp is what :meth:`caught_up_at` reports: it costs one fetch
interval of detection latency and never runs ahead of the log.
"""

from __future__ import annotations

from typing import Any

from faust.types import TP


class ConsumerProgress:
    def __init__(self, app: Any, topic: str) -> None:
        self._app = app
        self._topic = topic
        # partition -> (latest poll timestamp seen, the distinct one before it), in ms
        self._polls: dict[int, tuple[int, int | None]] = {}

    def assigned_partitions(self) -> set[int]:
        assigned = {tp.partition for tp in self._app.consumer.assignment() if tp.topic == self._topic}
        for partition in set(self._polls) - assigned:
            del self._polls[partition]
        return assigned

    def topic_partition_count(self) -> int | None:
        """How many partitions the topic has, from the cluster metadata every member keeps
        (Faust's ``topic_partitions`` reads a snapshot only the group leader fills)."""
        partitions = self._aiokafka_consumer()._client.cluster.partitions_for_topic(self._topic)
        return len(partitions) if partitions else None

    def _aiokafka_consumer(self) -> Any:
        return self._app.consumer._thread._ensure_consumer()

    def processed_position(self, partition: int, next_offset: int | None) -> int:
        """The next offset to process: what the agent did, or where it started."""
        tp = TP(self._topic, partition)
        committed = self._app.consumer._committed_offset.get(tp)
        return max(next_offset or 0, committed or 0)

    def caught_up_at(self, partition: int, next_offset: int | None) -> float | None:
        """A time (epoch seconds) by which everything in the partition was processed, else None."""
        tp = TP(self._topic, partition)
        consumer = self._aiokafka_consumer()
        # The consumer thread updates both fields together; re-read to skip a torn pair.
        polled_ms = consumer.last_poll_timestamp(tp)
        highwater = consumer.highwater(tp)
        if highwater is None or polled_ms is None or consumer.last_poll_timestamp(tp) != polled_ms:
            return None
        latest, answered_after = self._polls.get(partition, (None, None))
        if polled_ms != latest:
            answered_after = latest
            self._polls[partition] = (polled_ms, answered_after)
        if answered_after is None:
            return None
        if self.processed_position(partition, next_offset) >= highwater:
            return answered_after / 1000.0
        return None

    def lag(self, partition: int, next_offset: int | None) -> int | None:
        highwater = self._aiokafka_consumer().highwater(TP(self._topic, partition))
        if highwater is None:
            return None
        return max(highwater - self.processed_position(partition, next_offset), 0)
