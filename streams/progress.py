"""How far each assigned partition has been fetched and processed.

Faust does not expose the fetch response's high watermark and its time in its
public API, so this module is the one place that reads them from the aiokafka
consumer underneath. The high watermark comes from fetch responses (correct on
Tansu too, unlike ``end_offsets``); ``last_poll_timestamp`` is when it was
answered.
"""

from __future__ import annotations

from typing import Any

from faust.types import TP


class ConsumerProgress:
    def __init__(self, app: Any, topic: str) -> None:
        self._app = app
        self._topic = topic

    def assigned_partitions(self) -> set[int]:
        return {tp.partition for tp in self._app.consumer.assignment() if tp.topic == self._topic}

    def _aiokafka_consumer(self) -> Any:
        return self._app.consumer._thread._ensure_consumer()

    def processed_position(self, partition: int, next_offset: int | None) -> int:
        """The next offset to process: what the agent did, or where it started."""
        tp = TP(self._topic, partition)
        committed = self._app.consumer._committed_offset.get(tp)
        return max(next_offset or 0, committed or 0)

    def caught_up_at(self, partition: int, next_offset: int | None) -> float | None:
        """When a fetch last found nothing left to process, in epoch seconds, else None."""
        tp = TP(self._topic, partition)
        consumer = self._aiokafka_consumer()
        highwater = consumer.highwater(tp)
        polled_ms = consumer.last_poll_timestamp(tp)
        if highwater is None or polled_ms is None:
            return None
        if self.processed_position(partition, next_offset) >= highwater:
            return polled_ms / 1000.0
        return None

    def lag(self, partition: int, next_offset: int | None) -> int | None:
        highwater = self._aiokafka_consumer().highwater(TP(self._topic, partition))
        if highwater is None:
            return None
        return max(highwater - self.processed_position(partition, next_offset), 0)
