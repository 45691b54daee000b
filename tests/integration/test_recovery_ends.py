"""Table recovery's end offsets, checked by fetching (streams.recovery_ends), on both brokers."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition
from faust.types import TP

from streams.recovery_ends import fetched_ends
from tests.integration.harness import unique_name

pytestmark = pytest.mark.broker

RECORDS = 12


async def one_batch_of_records(bootstrap: str, topic: str) -> None:
    """``RECORDS`` records in one record batch, as a worker's changelog writes often are."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=500)
    await producer.start()
    try:
        sent = [await producer.send(topic, key=f"k{n}".encode(), value=b"v", partition=0)
                for n in range(RECORDS)]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


def test_the_fetched_end_is_the_partitions_real_end(broker):
    topic = unique_name("changelog")

    async def scenario():
        await one_batch_of_records(broker.bootstrap, topic)
        tp = TP(topic, 0)
        client = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap)
        await client.start()
        try:
            reported = await client.end_offsets([TopicPartition(topic, 0)])
        finally:
            await client.stop()
        ends = await fetched_ends(lambda: AIOKafkaConsumer(bootstrap_servers=broker.bootstrap),
                                  {tp: reported[TopicPartition(topic, 0)]})
        return reported[TopicPartition(topic, 0)], ends[tp]

    reported, fetched = asyncio.run(scenario())
    assert fetched == RECORDS, f"broker reported end {reported}, the fetch found {fetched}"


def test_an_unreachable_broker_leaves_the_reported_ends():
    async def scenario():
        return await fetched_ends(
            lambda: AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9", request_timeout_ms=1000),
            {TP("changelog", 0): 5, TP("changelog", 1): 0}, timeout=1.0)

    assert asyncio.run(scenario()) == {TP("changelog", 0): 5, TP("changelog", 1): 0}
