"""/metrics rendered in a thread, with state-reading collectors called on the event loop."""

from __future__ import annotations

import asyncio
import threading
import time

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily

from streams.exposition import MetricsPage


class ThreadRecordingCollector:
    """A custom collector that notes which thread called it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.threads: list[str] = []

    def collect(self):
        self.threads.append(threading.current_thread().name)
        family = GaugeMetricFamily(self.name, "a test gauge", labels=["team"])
        family.add_metric(["billing"], 3)
        return [family]

    def describe(self):
        return []


def test_state_is_read_on_the_loop_and_the_page_is_formatted_in_the_page_thread():
    registry = CollectorRegistry()
    Counter("sw_test_events", "events", registry=registry).inc(5)
    on_loop = ThreadRecordingCollector("sw_test_state")
    in_registry = ThreadRecordingCollector("sw_test_registry")
    registry.register(in_registry)
    page = MetricsPage(registry, [on_loop])

    async def scrape():
        return threading.current_thread().name, await page.render("text/plain")

    loop_thread, (body, content_type) = asyncio.run(scrape())
    assert on_loop.threads == [loop_thread]
    assert in_registry.threads[-1].startswith("metrics-page")
    assert content_type.startswith("text/plain")

    everything = CollectorRegistry()
    Counter("sw_test_events", "events", registry=everything).inc(5)
    everything.register(ThreadRecordingCollector("sw_test_registry"))
    everything.register(ThreadRecordingCollector("sw_test_state"))
    assert without_created(body) == without_created(generate_latest(everything))  # same page


def without_created(page: bytes) -> list[bytes]:
    return [line for line in page.splitlines() if b"_created" not in line]


def test_openmetrics_is_served_to_a_client_that_asks_for_it():
    page = MetricsPage(CollectorRegistry(), [ThreadRecordingCollector("sw_test_state")])
    body, content_type = asyncio.run(page.render("application/openmetrics-text; version=1.0.0"))
    assert content_type.startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
    assert b'sw_test_state{team="billing"} 3.0' in body


def test_the_loop_keeps_running_while_a_slow_page_is_formatted():
    class SlowCollector(ThreadRecordingCollector):
        def collect(self):
            # Busy, holding the interpreter as formatting thousands of samples does.
            until = time.perf_counter() + 0.3
            while time.perf_counter() < until:
                pass
            return super().collect()

    registry = CollectorRegistry()
    registry.register(SlowCollector("sw_test_slow"))
    page = MetricsPage(registry, [])

    async def scrape_and_tick():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        await page.render("")
        task.cancel()
        return ticks

    assert asyncio.run(scrape_and_tick()) >= 10  # about 30 ticks of 10 ms if the loop is free
