"""Remembering which events a partition has already seen."""

from __future__ import annotations

from collections import OrderedDict


class RecentEventIds:
    """A bounded set of event ids, oldest forgotten first.

    Duplicates come from emitters retrying and from redelivery after a crash; both
    arrive close to the original, so a bounded window is enough and memory stays
    flat however long the worker runs.
    """

    __slots__ = ("_ids", "capacity")

    def __init__(self, capacity: int = 100_000) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, event_id: str) -> bool:
        return event_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, event_id: str) -> None:
        """Remember ``event_id``, forgetting the oldest beyond the capacity."""
        self._ids[event_id] = None
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)
