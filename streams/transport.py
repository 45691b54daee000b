"""Faust's aiokafka transport, with four changes to its consumer:

* a shorter fetch wait, so missed deadlines are seen sooner (below);
* offset commits wait for the state writes made before them (:mod:`streams.commit_barrier`);
* a batch that a rebalance or seek overtook on its way from the consumer thread is
  dropped, records of partitions paused meanwhile are read again later, and a batch
  fetched again after a seek is not taken for read already (:mod:`streams.fetch_guard`);
* stream partitions resumed after a rebalance wait for the seek to their committed
  offsets (:mod:`streams.seek_before_resume`).

A fetch for partitions with nothing new is held by the broker for up to the
consumer's ``fetch_max_wait_ms``, which Faust fixes at 1,500 ms. A worker may only
judge a promise missed once its partition is known to be read past due + grace,
and the earliest time it knows that is the *previous* fetch answer
(:mod:`streams.progress`), so on a quiet partition a miss was counted one to two
fetch waits after due + grace: 1.7 s at the median, 3.8-5.2 s at p99 (issue 11's
benchmark). With a 100 ms wait it is one to two tenths of a second plus the 200 ms
deadline sweep. The price is up to ten empty fetches a second per broker connection
while idle; under load fetches are answered at once anyway.

The thread that owns the aiokafka consumer is replaced the way Faust builds it
(``Consumer._new_consumer_thread``), and the app gets the transport through its
public ``App.transport`` setter before anything uses it (:func:`install`); nothing
in Faust's source is changed.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from faust.transport.drivers import aiokafka as aiokafka_driver

from streams import fetch_guard
from streams.commit_barrier import WritesBeforeCommit
from streams.seek_before_resume import SeekBeforeResume

FETCH_MAX_WAIT_MS = 100
# How long a fetch for no partition at all waits before it answers with nothing.
NOTHING_ACTIVE_WAIT = 0.05


class PromptFetchConsumerThread(aiokafka_driver.AIOKafkaConsumerThread):
    """Faust's consumer thread: fetches wait at most ``FETCH_MAX_WAIT_MS``, and each batch
    records where it was taken (:func:`streams.fetch_guard.taken`)."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka hands this to its Fetcher when the consumer starts; Faust passes
        # a literal 1500 and no setting reaches it.
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer

    async def _fetch_records(self, consumer: Any, active_partitions: Any,
                             timeout: float | None = None, max_records: int | None = None) -> Any:
        # Faust passes its live set, which a rebalance or recovery may empty while this
        # call waits in the thread's queue, and aiokafka reads an empty set as "every
        # partition" (streams.fetch_guard).
        partitions = None if active_partitions is None else set(active_partitions)
        if partitions is not None and not partitions:
            # Faust itself sleeps 1 s when it sees no active partition; a short wait keeps
            # the partitions' resumption prompt.
            await asyncio.sleep(NOTHING_ACTIVE_WAIT)
            return fetch_guard.taken(consumer, {})
        records = await super()._fetch_records(consumer, partitions,
                                               timeout=timeout, max_records=max_records)
        return fetch_guard.taken(consumer, records)


class WorkerConsumer(SeekBeforeResume, WritesBeforeCommit, aiokafka_driver.Consumer):
    def _new_consumer_thread(self) -> PromptFetchConsumerThread:
        return PromptFetchConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _getmany(self, active_partitions: Any, timeout: float) -> Any:
        fetched = await super()._getmany(active_partitions, timeout)
        kafka_consumer = self._thread._ensure_consumer()
        records = fetch_guard.still_current(kafka_consumer, fetched)
        records, read_again = fetch_guard.not_active(records, active_partitions, self._buffered_partitions)
        if read_again:
            await self._thread.call_thread(fetch_guard.rewind, kafka_consumer, read_again,
                                           getattr(fetched, "taken_at", None))
        fetch_guard.read_from_start(self._read_offset, records)
        return records


class Transport(aiokafka_driver.Transport):
    Consumer = WorkerConsumer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Called, in order, before every offset commit (:mod:`streams.commit_barrier`),
        #: and once the writes they sent are in Kafka, before the commit itself.
        self.before_commit: list[Callable[[], None]] = []
        self.after_writes_delivered: list[Callable[[], None]] = []


def install(app: Any) -> Transport:
    """Give ``app`` this transport; call before anything uses ``app.transport``.

    Faust builds its producer from the same transport; only the consumer differs.
    """
    if getattr(app, "_transport", None) is not None:
        raise RuntimeError("install() must run before the app creates its transport")
    if app.conf.producer_threaded:
        # The commit barrier queues its marker in the producer buffer's own queue.
        raise RuntimeError("the worker transport does not support producer_threaded=True")
    transport = Transport(app.conf.broker_consumer, app)
    app.transport = transport
    return transport
