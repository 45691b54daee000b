"""Which changelog partitions table recovery has stopped receiving (streams.recovery_watch).

The recovery object is Faust's own Recovery, with its bookkeeping set as recovery sets it.
"""

from __future__ import annotations

import asyncio

import faust
from faust.types import TP

from streams.recovery_watch import stalled_partitions

UNREACHABLE = "kafka://127.0.0.1:9"
A, B, C = TP("promises-changelog", 4), TP("promises-changelog", 5), TP("promises-changelog", 6)


def recovery_at(started: float, received: dict, offsets: dict, highwaters: dict, in_recovery=True):
    async def build():
        recovery = faust.App("recovery-watch-test", broker=UNREACHABLE).tables.recovery
        recovery.in_recovery = in_recovery
        recovery._recovery_started_at = started
        recovery._active_events_received_at.update(received)
        for tp in highwaters:
            recovery.active_tps.add(tp)
        recovery.active_offsets.update(offsets)
        recovery.active_highwaters.update(highwaters)
        return recovery
    return asyncio.run(build())


def test_a_partition_that_delivered_nothing_since_recovery_started_is_stalled():
    recovery = recovery_at(started=100.0, received={B: 110.0}, offsets={A: 0, B: 30, C: 50},
                           highwaters={A: 40, B: 60, C: 50})
    # A: nothing for 20 s; B: an event 10 s ago; C: read to its end.
    assert stalled_partitions(recovery, now=120.0, stall_seconds=15) == {A: 0}
    assert stalled_partitions(recovery, now=130.0, stall_seconds=15) == {A: 0, B: 30}


def test_nothing_is_stalled_outside_recovery():
    recovery = recovery_at(started=100.0, received={}, offsets={A: 0}, highwaters={A: 40}, in_recovery=False)
    assert stalled_partitions(recovery, now=500.0) == {}
