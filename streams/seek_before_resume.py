"""Stream partitions become active only once the seek to their committed offsets is done.

When a rebalance's table recovery ends, Faust (0.15.3, ``Recovery._resume_streams`` and
``Recovery.on_recovery_completed``) resumes the stream partitions and *then* seeks them to
their committed offsets::

    consumer.resume_partitions({tp for tp in assignment if not changelog})
    await consumer.perform_seek()

The flow may already be running (recovery resumed it to read the changelogs), so the drain
loop may fetch and process a batch of the resumed partitions in between, from wherever
their positions stood. The seek then moves them back and resets Faust's read offsets,
but the drain loop records a message delivered meanwhile as read once its delivery
returns, which raises its partition's read offset again, and Faust dropped the records
the seek fetched again below it as "already read". Seen
in the kill fault test: events no worker ever processed, so promises never recorded,
and commits stuck below the hole until the worker was killed.

:class:`SeekBeforeResume` holds the stream partitions of such a ``resume_partitions``
back until the ``perform_seek`` that follows has finished. Nothing is fetched for them
in between (aiokafka drops what it prefetched at the old positions). A record that
slips through all the same is not lost: :func:`streams.fetch_guard.read_from_start`.
"""

from __future__ import annotations

from typing import Any, Iterable

from faust.types import TP


class SeekBeforeResume:
    """Mixin for Faust's consumer; see the module docstring."""

    _held_until_seek: set[TP] | None = None

    def resume_partitions(self, tps: Iterable[TP]) -> None:
        tps = set(tps)
        streams = {tp for tp in tps if not self._is_changelog_tp(tp)}  # type: ignore[attr-defined]
        if streams:
            # They stay paused (inactive) until perform_seek() is done.
            self._held_until_seek = (self._held_until_seek or set()) | streams
        super().resume_partitions(tps - streams)  # type: ignore[misc]

    def pause_partitions(self, tps: Iterable[TP]) -> None:
        # A rebalance pauses its partitions while a seek may still be running: they wait
        # for their own recovery's seek, not for that one.
        tps = set(tps)
        if self._held_until_seek:
            self._held_until_seek -= tps
        super().pause_partitions(tps)  # type: ignore[misc]

    async def perform_seek(self) -> None:
        try:
            await super().perform_seek()  # type: ignore[misc]
        finally:
            held, self._held_until_seek = self._held_until_seek, None
            if held:
                assigned = set(self.assignment())  # type: ignore[attr-defined]
                super().resume_partitions(held & assigned)  # type: ignore[misc]
