"""Which hold each record of a backfill carries (the header: :mod:`schemas.replay_hold`).

A backfill is read twice: once to plan, noting when each partition's records are due to be
sent, and once to send. Every record but its partition's last holds the partition until the
partition's *next* record is due, plus a margin; the last holds nothing, so the partition's
time moves on with the wall clock as soon as all of its history is in. A replay that dies
leaves its partitions held for one gap and the margin at most. At ``--speed max`` every
record is due at once, so each holds its partition for the margin from when it is sent.
"""

from __future__ import annotations

from array import array

# Covers a record that waits in the producer's buffer (the emitter's delivery timeout is
# 120 s), a replay running behind its schedule, and clocks that disagree between the
# replaying machine and the worker. Only a replay that stops early pays it: the last record
# of each partition ends the hold.
HOLD_MARGIN_SECONDS = 180.0


class ReplayPlan:
    """Events are planned, then sent, in the same order, each with its partition."""

    def __init__(self) -> None:
        # partition -> seconds after the start at which each of its events is due, in order
        self._due: dict[int, array] = {}
        # partition -> how many of its events were sent
        self._sent: dict[int, int] = {}

    def plan(self, partition: int, send_offset: float) -> None:
        """The next event, for ``partition``, due ``send_offset`` seconds after the start."""
        self._due.setdefault(partition, array("d")).append(send_offset)

    def hold_for(self, partition: int, now: float, started_at: float) -> float | None:
        """Until when (epoch seconds) the next event sent to ``partition``, at ``now``, by a
        replay that started at ``started_at``, holds its partition; ``None``: it is the last."""
        sent = self._sent[partition] = self._sent.get(partition, 0) + 1
        due = self._due.get(partition)
        if due is None:  # not planned: the file changed between the passes
            return now + HOLD_MARGIN_SECONDS
        if sent >= len(due):
            return None
        return max(now, started_at + due[sent]) + HOLD_MARGIN_SECONDS
