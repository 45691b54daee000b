"""Stream partitions are resumed only once the seek that follows is done (streams.seek_before_resume).

A real (unstarted) Faust consumer of the worker's class; only the broker side (the
assignment and the committed offsets the seek reads) is played by the test.
"""

import asyncio

import faust
from faust.types import TP

from streams.seek_before_resume import SeekBeforeResume
from streams.transport import install

EVENTS = [TP("events", p) for p in range(3)]


def worker_consumer():
    app = faust.App("seek-before-resume-test", broker="kafka://127.0.0.1:9", store="memory://",
                    autodiscover=False, web_enabled=False)
    app.Table("promises", default=None)
    install(app)
    consumer = app.consumer
    assert isinstance(consumer, SeekBeforeResume)
    changelog = TP(next(iter(app.tables.changelog_topics)), 0)
    consumer.assignment = lambda: set(EVENTS) | {changelog}
    return consumer, changelog


def test_resumed_stream_partitions_wait_for_the_seek_and_changelogs_do_not():
    async def scenario():
        consumer, changelog = worker_consumer()
        consumer.pause_partitions(consumer.assignment())
        active_during_seek = []

        async def seek_to_committed():  # the thread's seek, as the broker answers it
            active_during_seek.append(set(consumer._get_active_partitions()))
            return {tp: 5 for tp in EVENTS}

        consumer.seek_to_committed = seek_to_committed
        # What Faust's Recovery does when a rebalance's recovery ends:
        consumer.resume_partitions({changelog, *EVENTS})
        active_before_seek = set(consumer._get_active_partitions())
        await consumer.perform_seek()
        return changelog, active_before_seek, active_during_seek, set(consumer._get_active_partitions()), consumer

    changelog, before, during, after, consumer = asyncio.run(scenario())
    assert before == {changelog}, "the changelog partition is resumed at once, the streams are not"
    assert not (during[0] & set(EVENTS)), "a stream partition was active before the seek"
    assert set(EVENTS) <= after
    assert not (consumer._paused_partitions & set(EVENTS))
    assert all(consumer._read_offset[tp] == 5 for tp in EVENTS)


def test_a_failed_seek_still_resumes_the_partitions():
    async def scenario():
        consumer, _ = worker_consumer()

        async def seek_to_committed():
            raise ConnectionError("broker gone")

        consumer.seek_to_committed = seek_to_committed
        consumer.resume_partitions(set(EVENTS))
        try:
            await consumer.perform_seek()
        except ConnectionError:
            pass
        return set(consumer._get_active_partitions())

    assert set(EVENTS) <= asyncio.run(scenario())


def test_a_partition_revoked_before_the_seek_is_not_resumed():
    async def scenario():
        consumer, _ = worker_consumer()

        async def seek_to_committed():
            consumer.assignment = lambda: set(EVENTS[:2])  # a rebalance took partition 2
            return {}

        consumer.seek_to_committed = seek_to_committed
        consumer.resume_partitions(set(EVENTS))
        await consumer.perform_seek()
        return set(consumer._get_active_partitions())

    active = asyncio.run(scenario())
    assert EVENTS[2] not in active and set(EVENTS[:2]) <= active


def test_partitions_a_new_rebalance_pauses_during_the_seek_stay_paused_after_it():
    # A rebalance pauses its assignment while the previous recovery's seek is still
    # running; that seek, cancelled or not, must not resume them for the new recovery.
    async def scenario():
        consumer, changelog = worker_consumer()
        consumer.pause_partitions(consumer.assignment())
        broker_answers = asyncio.Event()

        async def seek_to_committed():
            await broker_answers.wait()
            return {tp: 5 for tp in EVENTS}

        consumer.seek_to_committed = seek_to_committed
        consumer.resume_partitions({changelog, *EVENTS})
        seeking = asyncio.ensure_future(consumer.perform_seek())
        await asyncio.sleep(0)
        consumer.pause_partitions(consumer.assignment())  # the new rebalance
        seeking.cancel()
        try:
            await seeking
        except asyncio.CancelledError:
            pass
        return set(consumer._get_active_partitions())

    assert not (asyncio.run(scenario()) & set(EVENTS))
