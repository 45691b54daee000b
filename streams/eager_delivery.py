"""Faust's consumer hands each fetched message to the agent without a task when it can.

Why
---
Faust's drain loop (``Consumer._drain_messages``, faust-streaming 0.15.3) delivers every
fetched message with::

    await self.wait_first(callback(message), self.suspend_flow.wait())

``callback`` is the conductor's ``on_message``; it may have to wait (a full stream
buffer), and a rebalance (``stop_flow()`` sets ``suspend_flow``) must be able to abandon a
delivery that waits. ``Service.wait_first`` pays for that with four tasks (the callback,
``suspend_flow``, the service's stopped and crashed events), an ``asyncio.wait`` and the
cancellation of three of them, for every message, although the callback almost always
finishes at once: the stream buffer has room.

What changes
------------
:class:`EagerDelivery` runs the callback coroutine synchronously up to its first
suspension (``coro.send(None)``, as Python 3.12's eager tasks do):

* it completes: the message was delivered, exactly as Faust's callback task would have
  delivered it on its first step, with no task and no ``asyncio.wait``;
* it suspends (it has to wait): from there on it goes Faust's way, under ``wait_first``
  with ``suspend_flow``; the same coroutine is continued from where it stopped, seeing the
  same future, and cancellation is thrown into it as ``await`` would (:class:`_Resumed`);
* the flow is already suspended: ``wait_first`` from the start, as Faust.

Everything else in the loop (read offsets, gaps, ``commit_every``, the ``sleep(0)`` every
100 messages, stop and error handling) is Faust 0.15.3's code unchanged, and so are
acknowledgements, offset tracking and commits, except that a message skipped because it
lies below the partition's read offset is logged at info level (Faust's "dev" level is
never shown, and such a message is never processed).

Why it is safe
--------------
* The same callback gets the same messages in the same order, one at a time; the read
  offset is set after the delivery, as before.
* A delivery that completes synchronously would have completed in Faust too: Faust's
  callback task is created before the ``suspend_flow`` task and steps first, so a
  callback that needs no wait delivers even if the flow was suspended in between.
  ``suspend_flow`` is set only by other tasks (``stop_flow()``), never during a
  synchronous step.
* A delivery that has to wait can be abandoned by a rebalance or by stopping exactly as
  in Faust (``wait_first`` cancels the continuation).
* Exceptions (``CancelledError`` included) reach the drain loop as from ``wait_first``.
* Bounded buffers still bound: a full buffer makes the callback suspend, which falls
  back to Faust's path. What changes is scheduling: the drain loop gives the event loop
  a turn every 100 messages (Faust's own ``yield_every``) and at every fetch instead of
  at every message.

tests/unit/test_eager_delivery.py runs each delivery scenario (room, full buffer, a
rebalance while waiting, suspended flow, errors at once and after waiting) through
Faust's ``wait_first`` and through ``_deliver`` and requires the same observations.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Coroutine, Generator

from faust.transport.consumer import CONSUMER_FETCHING


class _Resumed:
    """Awaitable that continues ``coro`` from the point where it yielded ``yielded``.

    Used to hand a coroutine that was started synchronously (``coro.send(None)``) and
    then had to wait over to an asyncio task: the task sees exactly the future the
    coroutine is waiting for, and sends and throws (cancellation) go through to it, as
    ``await`` would have done. Python 3.12's eager tasks do the same inside asyncio.
    """

    __slots__ = ("_coro", "_yielded")

    def __init__(self, coro: Coroutine, yielded: Any) -> None:
        self._coro = coro
        self._yielded = yielded

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, yielded = self._coro, self._yielded
        while True:
            try:
                sent = yield yielded
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # thrown in by the task: cancellation
                try:
                    yielded = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    yielded = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


async def _resume(coro: Coroutine, yielded: Any) -> Any:
    return await _Resumed(coro, yielded)


class EagerDelivery:
    """Mixin for Faust's consumer: each fetched message is delivered without a task when it can.

    See the module docstring: what changes against Faust 0.15.3 and why it is safe.
    """

    async def _deliver(self: Any, callback: Callable[[Any], Coroutine], message: Any) -> None:
        suspend_flow = self.suspend_flow
        if suspend_flow.is_set():
            await self.wait_first(callback(message), suspend_flow.wait())
            return
        coro = callback(message)
        try:
            yielded = coro.send(None)
        except StopIteration:
            return  # delivered without waiting
        # Has to wait (flow control, producer buffer, a full stream buffer): as Faust does.
        await self.wait_first(_resume(coro, yielded), suspend_flow.wait())

    async def _drain_messages(self: Any, fetcher: Any) -> None:  # run by the integration and fault tests
        # Faust 0.15.3's Consumer._drain_messages; the two changes are marked.
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set

        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        flag_consumer_fetching = CONSUMER_FETCHING
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        deliver = self._deliver

        yield_every = 100
        num_since_yield = 0
        sleep = asyncio.sleep

        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(flag_consumer_fetching)
                ait = getmany(timeout=1.0)

                # Sleeping because sometimes getmany is called in a loop
                # never releasing to the event loop
                await self.sleep(0)
                if not self.should_stop:
                    async for tp, message in ait:
                        num_since_yield += 1
                        if num_since_yield > yield_every:
                            await sleep(0)
                            num_since_yield = 0

                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            gap = offset - (r_offset or 0)
                            # We have a gap in income messages
                            if gap > 1 and r_offset:
                                acks_enabled = acks_enabled_for(message.topic)
                                if acks_enabled:
                                    await self._add_gap(tp, r_offset + 1, offset)
                            if commit_every is not None:
                                if self._n_acked >= commit_every:
                                    self._n_acked = 0
                                    await self.commit()
                            # The change: Faust awaits
                            #   self.wait_first(callback(message), self.suspend_flow.wait())
                            await deliver(callback, message)
                            set_read_offset(tp, offset)
                        else:
                            # Second change: Faust logs this at its "dev" level, which is
                            # never shown; a message skipped here is never processed.
                            self.log.info(
                                "skipped %s@%s: below the read offset %s", tp, offset, r_offset
                            )
                    unset_flag(flag_consumer_fetching)

        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                # we're already stopping so ignore
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                # we're already stopping so ignore
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(flag_consumer_fetching)
