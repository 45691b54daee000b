"""How far one partition's time has provably moved on."""

from __future__ import annotations


class PartitionClock:
    """The time up to which one partition's log is known, in epoch seconds.

    It reads ``max(highest record timestamp consumed, time of the last fetch that
    found the partition caught up)`` and never runs ahead of what has been read:
    while a worker is paused or behind, its clock stops, so it cannot declare a
    promise missed whose on-time delivery is still waiting in Kafka. A caught-up,
    idle partition still moves on with the fetches, so misses surface promptly.

    A partition that a backfill is still writing history to is not idle, even when
    caught up between two of its records: the latest record read may *hold* the clock
    until a wall time (:meth:`hold`). While held, the partition's time is its records'
    alone (an earlier caught-up fetch, e.g. of the empty topic the backfill fills, no
    longer counts), and only a fetch answered once the hold is over lets the wall clock in.
    """

    __slots__ = ("_last_record_at", "_caught_up_at", "_held_until")

    def __init__(self) -> None:
        self._last_record_at: float | None = None
        self._caught_up_at: float | None = None
        self._held_until: float | None = None

    def hold(self, until: float | None) -> None:
        """The record just read says more history may come until ``until`` (epoch seconds);
        ``None`` (a live record) ends any hold."""
        self._held_until = until

    @property
    def held_until(self) -> float | None:
        return self._held_until

    @property
    def last_record_at(self) -> float | None:
        return self._last_record_at

    def restore_hold(self, until: float, last_record_at: float | None) -> None:
        """A hold persisted by the partition's previous owner, with its record time then."""
        self._held_until = until
        if last_record_at is not None:
            self.observe(last_record_at)

    def observe(self, record_timestamp: float) -> float:
        """A record stamped ``record_timestamp`` has been read; returns when it became known.

        That is the highest timestamp read so far: a record placed in the log after a
        later-stamped one (producers whose clocks disagree) was not known before it.
        Judging by this, never by the raw timestamp, keeps outcomes independent of
        when sweeps happen to run.
        """
        if self._last_record_at is None or record_timestamp > self._last_record_at:
            self._last_record_at = record_timestamp
        return self._last_record_at

    def caught_up(self, at: float) -> None:
        """Everything in the partition was processed as of a fetch answered ``at``."""
        if self._held_until is not None:
            if at < self._held_until:
                return  # a backfill may still write older-stamped records
            self._held_until = None
        if self._caught_up_at is None or at > self._caught_up_at:
            self._caught_up_at = at

    def now(self) -> float | None:
        """The partition's time, or ``None`` before anything is known."""
        if self._held_until is not None:
            return self._last_record_at
        if self._last_record_at is None:
            return self._caught_up_at
        if self._caught_up_at is None:
            return self._last_record_at
        return max(self._last_record_at, self._caught_up_at)
