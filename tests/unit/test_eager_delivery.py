"""Eager delivery (streams.eager_delivery), compared with what Faust's own code does.

Each delivery scenario runs twice on a real (unstarted) Faust consumer: once the way
Faust 0.15's drain loop delivers a message -- ``wait_first(callback(message),
suspend_flow.wait())`` -- and once through ``EagerDelivery._deliver``; what
the callback and the caller observe must be the same. No broker is needed.
"""

import asyncio
import difflib
import inspect

import faust
import pytest

from streams.eager_delivery import EagerDelivery
from streams.transport import install


def make_consumer():
    app = faust.App("fast-consumer-test", broker="kafka://127.0.0.1:1", store="memory://",
                    autodiscover=False, web_enabled=False)
    transport = install(app)
    consumer = app.consumer
    assert isinstance(consumer, EagerDelivery)
    return app, transport, consumer


async def faust_deliver(consumer, callback, message):
    """Faust 0.15.3, Consumer._drain_messages: how one message is handed to the conductor."""
    await consumer.wait_first(callback(message), consumer.suspend_flow.wait())


async def eager_deliver(consumer, callback, message):
    await consumer._deliver(callback, message)


DELIVERIES = pytest.mark.parametrize("deliver", [faust_deliver, eager_deliver], ids=["faust", "eager"])


class Buffer:
    """A stand-in for the conductor's callback: puts the message in a bounded queue."""

    def __init__(self, maxsize):
        self.queue = asyncio.Queue(maxsize)
        self.log = []

    async def __call__(self, message):
        self.log.append(("start", message))
        try:
            await self.queue.put(message)
        except asyncio.CancelledError:
            self.log.append(("cancelled", message))
            raise
        self.log.append(("delivered", message))


@DELIVERIES
def test_a_message_with_room_in_the_buffer_is_delivered(deliver):
    async def scenario():
        _, _, consumer = make_consumer()
        buffer = Buffer(maxsize=10)
        await deliver(consumer, buffer, "m1")
        assert buffer.log == [("start", "m1"), ("delivered", "m1")]
        assert buffer.queue.get_nowait() == "m1"

    asyncio.run(scenario())


def test_an_eager_delivery_with_room_makes_no_task_and_no_wait():
    async def scenario():
        _, _, consumer = make_consumer()

        def no_wait_first(*args, **kwargs):
            raise AssertionError("wait_first used for a delivery that could finish at once")

        consumer.wait_first = no_wait_first
        tasks_before = len(asyncio.all_tasks())
        buffer = Buffer(maxsize=10)
        for n in range(5):
            await consumer._deliver(buffer, n)
        assert len(asyncio.all_tasks()) == tasks_before
        assert [m for what, m in buffer.log if what == "delivered"] == [0, 1, 2, 3, 4]

    asyncio.run(scenario())


@DELIVERIES
def test_a_delivery_into_a_full_buffer_waits_until_there_is_room(deliver):
    async def scenario():
        _, _, consumer = make_consumer()
        buffer = Buffer(maxsize=1)
        buffer.queue.put_nowait("earlier")
        delivery = asyncio.ensure_future(deliver(consumer, buffer, "m1"))
        await asyncio.sleep(0.01)
        assert not delivery.done()
        assert buffer.queue.get_nowait() == "earlier"  # the stream takes one: room again
        await asyncio.wait_for(delivery, 1)
        assert buffer.log == [("start", "m1"), ("delivered", "m1")]
        assert buffer.queue.get_nowait() == "m1"

    asyncio.run(scenario())


@DELIVERIES
def test_a_rebalance_abandons_a_delivery_waiting_for_room(deliver):
    async def scenario():
        _, _, consumer = make_consumer()
        buffer = Buffer(maxsize=1)
        buffer.queue.put_nowait("earlier")
        delivery = asyncio.ensure_future(deliver(consumer, buffer, "m1"))
        await asyncio.sleep(0.01)
        consumer.stop_flow()  # what Faust does first when partitions are revoked
        await asyncio.wait_for(delivery, 1)
        await asyncio.sleep(0)
        assert buffer.log == [("start", "m1"), ("cancelled", "m1")]
        assert buffer.queue.qsize() == 1

    asyncio.run(scenario())


@DELIVERIES
def test_with_the_flow_suspended_a_delivery_that_needs_no_room_still_happens(deliver):
    async def scenario():
        _, _, consumer = make_consumer()
        consumer.stop_flow()
        buffer = Buffer(maxsize=10)
        await asyncio.wait_for(deliver(consumer, buffer, "m1"), 1)
        await asyncio.sleep(0)
        assert buffer.log == [("start", "m1"), ("delivered", "m1")]

    asyncio.run(scenario())


@DELIVERIES
@pytest.mark.parametrize("when", ["at once", "after waiting"])
def test_an_error_in_the_callback_reaches_the_drain_loop(deliver, when):
    async def scenario():
        _, _, consumer = make_consumer()
        gate = asyncio.get_running_loop().create_future()

        async def failing(message):
            if when == "after waiting":
                await gate
            raise ValueError(f"bad {message}")

        delivery = asyncio.ensure_future(deliver(consumer, failing, "m1"))
        await asyncio.sleep(0.01)
        if not gate.done():
            gate.set_result(None)
        with pytest.raises(ValueError, match="bad m1"):
            await asyncio.wait_for(delivery, 1)

    asyncio.run(scenario())


def _statements(function) -> list[str]:
    """The function's body, line by line, without indentation, blank lines and comments."""
    body = inspect.getsource(function).splitlines()[1:]
    return [line.strip() for line in body if line.strip() and not line.strip().startswith("#")]


def test_the_drain_loop_is_fausts_own_but_for_the_delivery():
    # EagerDelivery._drain_messages is a copy of Faust's; if Faust's changes (a new
    # faust-streaming release), this fails: copy it again and make the one change.
    from faust.transport.consumer import Consumer

    changes = [line for line in difflib.unified_diff(
        _statements(Consumer._drain_messages), _statements(EagerDelivery._drain_messages),
        lineterm="", n=0) if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert changes == [
        # typing casts dropped
        "-consumer_should_stop = cast(Service, self)._stopped.is_set",
        "-fetcher_should_stop = cast(Service, fetcher)._stopped.is_set",
        "+consumer_should_stop = self._stopped.is_set",
        "+fetcher_should_stop = fetcher._stopped.is_set",
        "+deliver = self._deliver",
        "-ait = cast(AsyncIterator, getmany(timeout=1.0))",
        "+ait = getmany(timeout=1.0)",
        # the change
        "-await self.wait_first(",
        "-callback(message), self.suspend_flow.wait()",
        "-)",
        "+await deliver(callback, message)",
        # a skipped message is logged where it can be seen
        "-self.log.dev(",
        '-"DROPPED MESSAGE ROFF %r: k=%r v=%r",',
        "-offset,",
        "-message.key,",
        "-message.value,",
        "+self.log.info(",
        '+"skipped %s@%s: below the read offset %s", tp, offset, r_offset',
    ]
