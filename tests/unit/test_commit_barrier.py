"""Offsets are committed only after the state writes queued before them (streams.commit_barrier).

The writes go through Faust's real ProducerBuffer and its background task; only the
Kafka side (each write's hand-over, the commit request) is played by the test.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import faust
from faust.transport.producer import ProducerBuffer

from streams.commit_barrier import WritesBeforeCommit, buffered_writes_handed_over

UNREACHABLE = "kafka://127.0.0.1:9"
SLOW_HANDOVER = 0.15  # longer than the 0.1 s after which Faust's flush gives up


class KafkaProducerSide:
    """Where the buffer's task hands writes: records the order, taking ``delay`` per write."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.handed_over: list[str] = []
        self.stuck = asyncio.Event()  # set: hand-overs never finish

    def write(self, name: str) -> SimpleNamespace:
        side = self

        class Channel:
            async def publish_message(self, fut, wait=False):
                if side.stuck.is_set():
                    await asyncio.Event().wait()
                await asyncio.sleep(side.delay)
                side.handed_over.append(name)

        # The shape Faust's buffer task reads: fut.message.channel.publish_message(fut)
        return SimpleNamespace(message=SimpleNamespace(channel=Channel()))


async def started_buffer() -> ProducerBuffer:
    buffer = ProducerBuffer()
    buffer.app = faust.App("commit-barrier-test", broker=UNREACHABLE)
    await buffer.start()
    return buffer


async def discard(buffer: ProducerBuffer) -> None:
    """Stop the buffer without sending what is left (Faust's stop would insist on it)."""
    while not buffer.pending.empty():
        buffer.pending.get_nowait()
    await buffer.stop()


def test_faust_flush_gives_up_while_writes_are_still_queued():
    # Why the barrier exists; if Faust's flush ever waits for all, this test says so.
    async def scenario():
        buffer = await started_buffer()
        kafka = KafkaProducerSide(SLOW_HANDOVER)
        for n in range(4):
            buffer.put(kafka.write(f"w{n}"))
        await buffer.flush()
        left = buffer.size
        await discard(buffer)
        return left

    assert asyncio.run(scenario()) > 0


def test_the_barrier_returns_only_when_every_earlier_write_was_handed_over():
    async def scenario():
        buffer = await started_buffer()
        kafka = KafkaProducerSide(SLOW_HANDOVER)
        for n in range(4):
            buffer.put(kafka.write(f"w{n}"))
        handed = await buffered_writes_handed_over(buffer, timeout=5)
        seen_at_return = list(kafka.handed_over)
        await discard(buffer)
        return handed, seen_at_return

    handed, seen = asyncio.run(scenario())
    assert handed is True
    assert seen == ["w0", "w1", "w2", "w3"]


def test_the_barrier_reports_writes_that_cannot_be_handed_over():
    async def scenario():
        buffer = await started_buffer()
        kafka = KafkaProducerSide(0)
        kafka.stuck.set()
        buffer.put(kafka.write("never"))
        handed = await buffered_writes_handed_over(buffer, timeout=0.3)
        await discard(buffer)
        return handed

    assert asyncio.run(scenario()) is False


class RecordingCommit:
    """The Faust commit underneath the mixin: records what it was asked, and when."""

    def __init__(self, buffer: ProducerBuffer, kafka: KafkaProducerSide) -> None:
        self.flushes: list[list[str]] = []  # what was handed over at each producer flush

        async def flush():
            self.flushes.append(list(kafka.handed_over))

        self.app = SimpleNamespace(producer=SimpleNamespace(buffer=buffer, flush=flush),
                                   conf=SimpleNamespace(broker_request_timeout=5.0))
        self.kafka = kafka
        self.commits: list[tuple[dict, list[str]]] = []
        self.transport = SimpleNamespace(before_commit=[], after_writes_delivered=[])

    async def _commit_offsets(self, offsets, start_new_transaction=True):
        self.commits.append((dict(offsets), list(self.kafka.handed_over)))
        return True


class BarrierConsumer(WritesBeforeCommit, RecordingCommit):
    pass


async def commit_through_barrier(kafka: KafkaProducerSide, queued: list[str], offsets: dict,
                                 arrange=lambda consumer, buffer: None):
    """Queue ``queued`` writes in a running buffer and commit ``offsets`` through the barrier;
    ``arrange(consumer, buffer)`` first sets up the consumer. Returns (committed, consumer)."""
    buffer = await started_buffer()
    consumer = BarrierConsumer(buffer, kafka)
    arrange(consumer, buffer)
    for name in queued:
        buffer.put(kafka.write(name))
    try:
        return await consumer._commit_offsets(offsets), consumer
    finally:
        await discard(buffer)


def test_a_commit_waits_for_the_writes_queued_before_it():
    committed, consumer = asyncio.run(commit_through_barrier(
        KafkaProducerSide(SLOW_HANDOVER), ["w0", "w1", "w2"], {"tp": 42}))
    assert committed is True
    assert consumer.commits == [({"tp": 42}, ["w0", "w1", "w2"])]


def test_writes_the_app_holds_back_are_sent_and_handed_over_before_a_commit():
    kafka = KafkaProducerSide(SLOW_HANDOVER)
    held = ["h0", "h1"]

    def hold_back(consumer, buffer):
        def send_held():  # as PartitionStates.send_pending does: into Faust's buffer
            while held:
                buffer.put(kafka.write(held.pop(0)))

        consumer.transport.before_commit.append(send_held)

    committed, consumer = asyncio.run(commit_through_barrier(kafka, ["w0"], {"tp": 7}, hold_back))
    assert committed is True
    assert consumer.commits == [({"tp": 7}, ["w0", "h0", "h1"])]


def test_follow_up_writes_are_sent_after_a_flush_and_handed_over_before_the_commit():
    kafka = KafkaProducerSide(SLOW_HANDOVER)

    def mark_after_delivery(consumer, buffer):
        consumer.transport.after_writes_delivered.append(lambda: buffer.put(kafka.write("mark")))

    committed, consumer = asyncio.run(commit_through_barrier(kafka, ["w0"], {"tp": 3}, mark_after_delivery))
    assert committed is True
    assert consumer.flushes == [["w0"]]  # the flush came before the follow-up was sent
    assert consumer.commits == [({"tp": 3}, ["w0", "mark"])]


def test_a_commit_is_skipped_when_earlier_writes_cannot_be_sent():
    kafka = KafkaProducerSide(0)
    kafka.stuck.set()

    def short_timeout(consumer, buffer):
        consumer.handover_timeout = 0.3

    committed, consumer = asyncio.run(commit_through_barrier(kafka, ["never"], {"tp": 42}, short_timeout))
    assert committed is False
    assert consumer.commits == []


def test_a_buffer_that_is_not_running_gets_no_marker_and_no_wait():
    # After a crash the buffer's task no longer runs: waiting would stall shutdown, and a
    # marker left in the queue would make Faust's own flush raise.
    async def scenario():
        buffer = await started_buffer()
        await buffer.stop()
        started = asyncio.get_running_loop().time()
        handed = await buffered_writes_handed_over(buffer, timeout=5)
        return handed, asyncio.get_running_loop().time() - started, buffer.size

    handed, waited, left = asyncio.run(scenario())
    assert handed is False and waited < 0.5 and left == 0


def test_a_marker_not_reached_in_time_is_taken_back_out_of_the_buffer():
    async def scenario():
        buffer = await started_buffer()
        kafka = KafkaProducerSide(0)
        kafka.stuck.set()
        buffer.put(kafka.write("stuck in the hand-over"))
        buffer.put(kafka.write("queued behind it"))
        handed = await buffered_writes_handed_over(buffer, timeout=0.3)
        left = buffer.size
        await discard(buffer)
        return handed, left

    handed, left = asyncio.run(scenario())
    assert handed is False
    assert left == 1  # the write behind the stuck one, not the marker
