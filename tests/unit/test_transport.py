"""The worker's transport: Faust's aiokafka consumer with a short fetch wait (streams.transport)."""

from __future__ import annotations

import asyncio

import aiokafka
import faust
import pytest

from streams.transport import FETCH_MAX_WAIT_MS, PromptFetchConsumerThread, Transport, install

UNREACHABLE = "kafka://127.0.0.1:9"  # nothing here connects: the consumer is built, not started


def test_the_worker_consumer_faust_builds_waits_briefly_for_fetches_and_keeps_faust_settings():
    async def build():
        app = faust.App("transport-test", broker=UNREACHABLE, broker_session_timeout=7)
        transport = install(app)
        thread = app.consumer._thread  # built as the worker builds it

        return app, transport, thread, thread._create_worker_consumer(transport)

    app, transport, thread, kafka_consumer = asyncio.run(build())
    assert app.transport is transport and isinstance(transport, Transport)
    assert isinstance(thread, PromptFetchConsumerThread)
    assert kafka_consumer._fetch_max_wait_ms == FETCH_MAX_WAIT_MS
    assert kafka_consumer._session_timeout_ms == 7000  # everything else is still Faust's
    assert kafka_consumer._group_id == "transport-test"


def test_aiokafka_still_hands_the_attribute_we_set_to_its_fetcher():
    # If aiokafka renames it, our setting would silently do nothing.
    async def build():
        return aiokafka.AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9", fetch_max_wait_ms=123)

    assert asyncio.run(build())._fetch_max_wait_ms == 123
    import inspect
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in inspect.getsource(aiokafka.AIOKafkaConsumer.start)


def test_install_refuses_an_app_whose_transport_is_already_in_use():
    app = faust.App("transport-test-late", broker=UNREACHABLE)
    app.transport  # noqa: B018 -- Faust creates its own on first use
    with pytest.raises(RuntimeError, match="before the app creates its transport"):
        install(app)


def test_the_worker_app_uses_this_transport(tmp_path):
    from streams.app import Monitor
    from streams.settings import Settings

    async def build():
        monitor = Monitor(Settings(broker=UNREACHABLE, data_dir=tmp_path))
        return monitor.app.transport, monitor.app.consumer._thread

    transport, thread = asyncio.run(build())
    assert isinstance(transport, Transport)
    assert isinstance(thread, PromptFetchConsumerThread)


def test_the_worker_consumer_commits_only_after_earlier_writes(tmp_path):
    from streams.app import Monitor
    from streams.commit_barrier import WritesBeforeCommit
    from streams.settings import Settings

    async def build():
        return Monitor(Settings(broker=UNREACHABLE, data_dir=tmp_path)).app.consumer

    consumer = asyncio.run(build())
    assert isinstance(consumer, WritesBeforeCommit)
    # The mixin's _commit_offsets must be the one Faust calls, ahead of Faust's own.
    assert type(consumer)._commit_offsets is WritesBeforeCommit._commit_offsets


def test_the_worker_consumer_checks_each_batch_against_rebalances_and_seeks(tmp_path):
    from streams.app import Monitor
    from streams.settings import Settings
    from streams.transport import WorkerConsumer

    async def build():
        return Monitor(Settings(broker=UNREACHABLE, data_dir=tmp_path)).app.consumer

    consumer = asyncio.run(build())
    assert type(consumer)._getmany is WorkerConsumer._getmany
    assert type(consumer._thread)._fetch_records is PromptFetchConsumerThread._fetch_records


def test_install_refuses_a_threaded_producer():
    app = faust.App("transport-test-threaded", broker=UNREACHABLE, producer_threaded=True)
    with pytest.raises(RuntimeError, match="producer_threaded"):
        install(app)


class RecordingFetcher:
    """aiokafka's fetcher as the consumer thread sees it (the broker side): it records the
    partitions it was asked for, as they were when it was asked, and has nothing to give."""

    def __init__(self, subscriptions) -> None:
        self._subscriptions = subscriptions
        self._closed = False
        self.asked: list[set | None] = []

    async def fetched_records(self, partitions, timeout=0, max_records=None):
        await asyncio.sleep(0)  # the event loop runs on meanwhile and may change Faust's set
        self.asked.append(None if partitions is None else set(partitions))
        return {}


def fetch_through_the_worker_thread(active_partitions, change_meanwhile=lambda: None):
    async def scenario():
        app = faust.App("transport-fetch-test", broker=UNREACHABLE)
        transport = install(app)
        thread = app.consumer._thread
        kafka_consumer = thread._create_worker_consumer(transport)
        fetcher = kafka_consumer._fetcher = RecordingFetcher(kafka_consumer._subscription)
        fetching = asyncio.ensure_future(thread._fetch_records(kafka_consumer, active_partitions, timeout=0.1))
        await asyncio.sleep(0)
        change_meanwhile()
        return await fetching, fetcher.asked

    return asyncio.run(scenario())


def test_a_fetch_for_no_active_partition_fetches_nothing():
    # aiokafka reads an empty set as "every partition": the records of paused partitions
    # would be counted consumed and then dropped by Faust.
    records, asked = fetch_through_the_worker_thread(set())
    assert records == {} and asked == []


def test_a_fetch_asks_for_the_partitions_active_when_it_was_called():
    from faust.types import TP

    active = {TP("events", 0), TP("events", 1)}
    records, asked = fetch_through_the_worker_thread(active, change_meanwhile=active.clear)
    assert asked == [{TP("events", 0), TP("events", 1)}]  # not the emptied live set
