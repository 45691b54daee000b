"""Which hold each record of a backfill carries (the header: :mod:`schemas.replay_hold`).

A backfill is read twice: once to plan, where each partition's last record is and when it
is due to be sent, and once to send. Every record but its partition's last holds the
partition until that last record is due, plus a margin for a replay running behind its
schedule; the last record holds nothing, so the partition's time moves on with the wall
clock as soon as all of its history is in. At ``--speed max`` nothing is scheduled and
the hold rolls: each record holds its partition for the margin from when it was sent.
"""

from __future__ import annotations

from collections.abc import Callable

# Covers a replay that falls behind its schedule (a slow broker, a paused machine) and
# clocks that disagree between the replaying machine and the worker.
HOLD_MARGIN_SECONDS = 30.0


class ReplayHolds:
    """``partition_for(case_id)`` names the partition an event goes to; events are
    planned and then asked about in the same order, numbered from 0."""

    def __init__(self, partition_for: Callable[[str], int]) -> None:
        self.partition_for = partition_for
        # partition -> (number of its last event, seconds after the start it is due)
        self._ends: dict[int, tuple[int, float]] = {}
        self._planned = 0

    def plan(self, case_id: str, send_offset: float) -> None:
        """The next event, due ``send_offset`` seconds after the replay starts."""
        self._ends[self.partition_for(case_id)] = (self._planned, send_offset)
        self._planned += 1

    def hold_for(self, number: int, partition: int, now: float, started_at: float) -> float | None:
        """Until when (epoch seconds) event ``number``, sent at ``now`` to ``partition`` by a
        replay that started at ``started_at``, holds its partition; ``None``: it is the last."""
        last, due_offset = self._ends[partition]
        if number >= last:
            return None
        return max(now, started_at + due_offset) + HOLD_MARGIN_SECONDS
