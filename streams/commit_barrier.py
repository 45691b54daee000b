"""An offset commit waits until the state writes made before it have reached Kafka.

The worker's state writes (changelog records) do not go straight to Kafka: Faust
queues them in its producer buffer and a background task hands them, one at a
time, to the Kafka producer. Before committing offsets Faust flushes that buffer,
but its flush gives up as soon as 0.1 s pass without a message leaving the buffer
(``ProducerBuffer.flush_atmost``), for example while the Kafka producer waits for
room or the event loop is busy, and the commit goes ahead. A worker killed after
such a commit has committed events whose state writes never left the process:
their outcomes are lost for good, because nobody reads those events again
(seen with SIGKILLed workers in ``tests/faults/test_worker_killed.py``).

:class:`WritesBeforeCommit` first has the app send the writes it holds back
(the transport's ``before_commit`` callbacks: :meth:`streams.state.PartitionStates.send_pending`),
then puts a marker at the end of the buffer and commits only once the background task
has reached it: by then every earlier write is in the Kafka producer, and Faust's own
flush, which runs next, waits for the Kafka producer to deliver them. If the app asks for
it (``after_writes_delivered``: :meth:`streams.state.PartitionStates.mark_ends`), the
writes are first flushed to Kafka, the follow-up writes are sent and handed over too,
and only then is the commit made. If the marker is not reached in
time (the producer has stopped or cannot reach the broker) the commit is skipped:
the events are read again later and the state they find tells them apart.

What this does not cover: a write the Kafka producer hands over and then fails to
deliver (after its own retries) is logged by Faust as an error and the commit still
goes ahead, as in Faust.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Mapping

log = logging.getLogger(__name__)


class BufferMarker:
    """Queued in Faust's producer buffer like a message; "sending" it only records the fact.

    Faust's buffer task calls ``fut.message.channel.publish_message(fut)`` for each
    entry in order, so the marker stands in for all three.
    """

    def __init__(self) -> None:
        self.reached = asyncio.get_running_loop().create_future()
        self.message = self
        self.channel = self

    async def publish_message(self, fut: Any, wait: bool = False) -> None:
        if not self.reached.done():
            self.reached.set_result(None)


async def buffered_writes_handed_over(buffer: Any, timeout: float) -> bool:
    """True once everything queued in ``buffer`` so far is in the Kafka producer.

    False at once if the buffer is not running (stopping, or crashed: nothing would
    reach the marker), and False after ``timeout``; either way no marker is left behind,
    so Faust's own flush at shutdown does not trip over it.
    """
    if buffer.state != "running":
        return False
    marker = BufferMarker()
    buffer.put(marker)
    deadline = asyncio.get_running_loop().time() + timeout
    try:
        while not marker.reached.done():
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0 or buffer.state != "running":
                return False
            try:
                await asyncio.wait_for(asyncio.shield(marker.reached), min(remaining, 0.5))
            except asyncio.TimeoutError:
                pass
        return True
    finally:
        if not marker.reached.done():
            _withdraw(buffer, marker)


def _withdraw(buffer: Any, marker: BufferMarker) -> None:
    # asyncio.Queue keeps its items in the deque ``_queue``; Faust reads it the same way.
    try:
        buffer.pending._queue.remove(marker)
    except ValueError:
        pass  # taken by the buffer task meanwhile: it only marks itself reached


class WritesBeforeCommit:
    """Mixin for a Faust consumer: commit offsets only after the writes made before them."""

    #: How long a commit waits for earlier writes before it is skipped (default: the
    #: broker request timeout). A write waits only for room in the Kafka producer.
    handover_timeout: float | None = None

    async def _commit_offsets(self, offsets: Mapping[Any, int], start_new_transaction: bool = True) -> bool:
        app: Any = self.app  # type: ignore[attr-defined]
        timeout = self.handover_timeout or app.conf.broker_request_timeout
        if not await held_writes_handed_over(app, self.transport, timeout):  # type: ignore[attr-defined]
            log.warning("offset commit skipped: state writes queued before it were not sent within %g s; "
                        "the events will be read again", timeout)
            return False
        # Faust's commit flushes the producer first, so the writes are in Kafka before it.
        return await super()._commit_offsets(offsets, start_new_transaction)  # type: ignore[misc]


async def held_writes_handed_over(app: Any, transport: Any, timeout: float) -> bool:
    """Send the writes the app holds back and wait until the Kafka producer has them.

    The transport's ``before_commit`` callbacks send them into Faust's buffer; if there
    are ``after_writes_delivered`` callbacks, the writes are then flushed to Kafka and
    the callbacks' own writes (end marks) are sent and handed over too. False if any
    of it was not handed over within ``timeout``. What was handed over last is not
    flushed yet: the caller's ``producer.flush()`` (Faust's commit does one) finishes it.
    """
    for send_held_writes in transport.before_commit:
        send_held_writes()
    buffer = app.producer.buffer
    if not await buffered_writes_handed_over(buffer, timeout):
        return False
    if not transport.after_writes_delivered:
        return True
    await app.producer.flush()  # (the writes are handed over: this waits for Kafka)
    for follow_up in transport.after_writes_delivered:
        follow_up()
    return await buffered_writes_handed_over(buffer, timeout)
