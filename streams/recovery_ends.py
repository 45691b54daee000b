"""Where a changelog partition really ends, so table recovery reads all of it.

Faust recovers a table by reading its changelog partitions up to their end
offsets, as ListOffsets reports them. The embedded broker (Tansu) reports the
first offset of a partition's last record batch + 1, so recovery stopped short of
the rest of that batch: a worker that took over partitions from a killed one
restored their promises without the last few writes (the kill fault test on
Tansu; TOOLCHAIN.md). The high watermark in a fetch response is right on every
broker, so the end is asked once more that way: a client-only consumer fetches
once from just before each reported end and reads the high watermark it is
answered with. Apache Kafka answers with the same end, at the cost of one fetch
per recovery (a client bootstrap and one fetch, bounded by ``PROBE_SECONDS`` for
each of its steps); if the probe fails, the reported ends are used as before.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable, Mapping

from aiokafka.structs import TopicPartition

log = logging.getLogger(__name__)

PROBE_SECONDS = 5.0


async def fetched_ends(new_probe: Callable[[], Any], reported: Mapping[Any, int | None],
                       timeout: float = PROBE_SECONDS) -> dict[Any, int | None]:
    """``reported`` end offsets, each raised to the high watermark a fetch answers with."""
    ends = dict(reported)
    # aiokafka wants its own TopicPartition; Faust's TP is an equal tuple of another type.
    probed = {TopicPartition(tp.topic, tp.partition): (tp, end) for tp, end in reported.items() if end}
    if not probed:
        return ends
    probe = None
    try:
        probe = new_probe()
        await asyncio.wait_for(probe.start(), timeout)
        probe.assign(list(probed))
        for partition, (_, end) in probed.items():
            probe.seek(partition, end - 1)
        deadline = time.monotonic() + timeout
        waiting = set(probed)
        while waiting and time.monotonic() < deadline:
            await probe.getmany(*waiting, timeout_ms=200)
            for partition in list(waiting):
                highwater = probe.highwater(partition)
                if highwater is not None:
                    tp, end = probed[partition]
                    ends[tp] = max(end, highwater)
                    waiting.discard(partition)
        if waiting:
            log.warning("no fetch answered for %d changelog partitions within %.0f s; their reported "
                        "end offsets are used", len(waiting), timeout)
    except Exception as error:  # recovery must go on with what the broker reported
        log.warning("could not check changelog end offsets by fetching (%s); the reported ones are used",
                    error)
    finally:
        if probe is not None:
            try:
                await asyncio.wait_for(probe.stop(), timeout)
            except Exception:  # noqa: BLE001 -- a probe that will not stop must not stop recovery
                log.debug("end-offset probe did not stop cleanly", exc_info=True)
    return ends
