"""How recovery's end offsets are confirmed (streams.recovery_ends), without a broker.

The probe here stands in for the Kafka client only; the broker-backed test is
tests/integration/test_recovery_ends.py.
"""

from __future__ import annotations

import asyncio

from faust.types import TP

from streams.recovery_ends import fetched_ends

A, B, EMPTY = TP("changelog", 0), TP("changelog", 1), TP("changelog", 2)


class Probe:
    """A client whose fetches answer with the given high watermarks."""

    def __init__(self, highwaters: dict[int, int | None]) -> None:
        self.highwaters = highwaters
        self.sought: dict[int, int] = {}
        self.stopped = False

    async def start(self) -> None: ...

    def assign(self, partitions) -> None:
        self.assigned = sorted(tp.partition for tp in partitions)

    def seek(self, tp, offset: int) -> None:
        self.sought[tp.partition] = offset

    async def getmany(self, *partitions, timeout_ms: int = 0) -> dict:
        await asyncio.sleep(timeout_ms / 1000 / 10)
        return {}

    def highwater(self, tp) -> int | None:
        return self.highwaters.get(tp.partition)

    async def stop(self) -> None:
        self.stopped = True


def test_each_end_is_raised_to_what_a_fetch_from_just_before_it_reports():
    probe = Probe({0: 12, 1: 3})
    ends = asyncio.run(fetched_ends(lambda: probe, {A: 1, B: 5, EMPTY: 0}))
    assert ends == {A: 12, B: 5, EMPTY: 0}  # never lowered; an empty partition is not asked
    assert probe.assigned == [0, 1] and probe.sought == {0: 0, 1: 4} and probe.stopped


def test_a_partition_no_fetch_answers_for_keeps_its_reported_end():
    ends = asyncio.run(fetched_ends(lambda: Probe({0: 12}), {A: 1, B: 5}, timeout=0.3))
    assert ends == {A: 12, B: 5}


def test_no_probe_is_made_when_every_partition_is_empty():
    def no_probe():
        raise AssertionError("no partition needed one")

    assert asyncio.run(fetched_ends(no_probe, {A: 0, B: None})) == {A: 0, B: None}


def test_a_probe_that_cannot_be_made_leaves_the_reported_ends():
    def broken():
        raise OSError("no route to broker")

    assert asyncio.run(fetched_ends(broken, {A: 1})) == {A: 1}
