"""Restart the reading of a changelog partition that table recovery stopped receiving.

Twice in CI (once on Apache Kafka, once on Tansu) a worker that took over
partitions in the kill fault test stayed in table recovery for minutes: Faust
logged "No event received for active tp ... since recovery start" for the
changelog partitions it had read as a standby until then, and the worker never
processed another event. The cause is not proven; a likely one, changelog records
fetched while their partition was paused and then dropped by Faust, is now handled in
the consumer (:mod:`streams.fetch_guard`), and this watch stays as a safety net
(docs/guarantees.md). While a stall lasts the partitions' promises are not judged at all.

:class:`RecoveryWatch` is checked by the worker's timer: a changelog partition that
recovery still needs records from, and that has delivered none for
``STALL_SECONDS``, is sought again to where recovery stands. A seek resets both
aiokafka's position and Faust's record of what was read, so if the records were
being fetched and then discarded as already read, they arrive again. Each action
is logged as a warning. Faust's recovery internals are read, not changed.
"""

from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger(__name__)

STALL_SECONDS = 15.0


def stalled_partitions(recovery: Any, now: float, stall_seconds: float = STALL_SECONDS) -> dict[Any, int]:
    """Active changelog partitions recovery waits for with nothing received in ``stall_seconds``,
    each with the offset to read again from."""
    if not getattr(recovery, "in_recovery", False):
        return {}
    started = getattr(recovery, "_recovery_started_at", None)
    received = getattr(recovery, "_active_events_received_at", {})
    stalled = {}
    for tp in list(recovery.active_tps):
        highwater = recovery.active_highwaters.get(tp)
        offset = recovery.active_offsets.get(tp)
        if highwater is None or highwater < 0 or (offset is not None and offset >= highwater):
            continue  # nothing left to read
        last = received.get(tp, started)
        if last is not None and now - last >= stall_seconds:
            stalled[tp] = max(offset if offset is not None else 0, 0)
    return stalled


class RecoveryWatch:
    def __init__(self, app: Any, stall_seconds: float = STALL_SECONDS) -> None:
        self._app = app
        self._stall_seconds = stall_seconds
        self._sought_at: dict[Any, float] = {}

    async def check(self) -> None:
        recovery = self._app.tables.recovery
        now = time.monotonic()
        stalled = {tp: offset for tp, offset in stalled_partitions(recovery, now, self._stall_seconds).items()
                   if now - self._sought_at.get(tp, float("-inf")) >= self._stall_seconds}
        if not stalled:
            return
        log.warning("table recovery has received nothing for %.0f s from %d changelog partitions "
                    "it still needs; reading them again from where it stands: %s", self._stall_seconds,
                    len(stalled), ", ".join(f"{tp.topic}[{tp.partition}]@{offset}"
                                             for tp, offset in sorted(stalled.items())))
        for tp in stalled:
            self._sought_at[tp] = now
        await self._app.consumer.seek_wait(stalled)
