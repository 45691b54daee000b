"""The /metrics page, rendered in a thread so a scrape does not hold up the event loop.

Rendering a few thousand samples takes prometheus_client about 100 ms, and on the
event loop nothing else happens meanwhile: no event is processed, no deadline swept.
The collectors that read the worker's state (promise books, known teams) must run
on the loop, which is the only writer of that state; that part is a small sum.
What they return, and prometheus_client's own instruments (thread-safe), are then
formatted in a single worker thread, while the loop goes on between the
interpreter's thread switches.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable, Iterator

from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector


class _Families:
    """A registry as the encoders see it: its families, then ones collected earlier."""

    def __init__(self, registry: Any, collected: list) -> None:
        self._registry = registry
        self._collected = collected

    def collect(self) -> Iterator:
        yield from self._registry.collect()
        yield from self._collected


class MetricsPage:
    """Renders ``registry`` plus ``loop_collectors`` (called on the loop) for one request."""

    def __init__(self, registry: Any, loop_collectors: Iterable[Collector]) -> None:
        self.registry = registry
        self.loop_collectors = list(loop_collectors)
        # One thread: simultaneous scrapes queue instead of competing for the interpreter.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="metrics-page")

    def collected_on_loop(self) -> list:
        return [family for collector in self.loop_collectors for family in collector.collect()]

    async def render(self, accept: str) -> tuple[bytes, str]:
        encoder, content_type = choose_encoder(accept)
        families = _Families(self.registry, self.collected_on_loop())
        body = await asyncio.get_running_loop().run_in_executor(self._executor, encoder, families)
        return body, content_type
