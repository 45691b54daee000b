"""The topics a worker needs exist with the right shape, on both brokers.

Faust creates its changelog topics itself; servicewatch creates the events and
dead-letter topics before subscribing. What the two brokers do differently
(auto-creation, reported configs) must not change the outcome.
"""

from __future__ import annotations

import pytest
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

pytestmark = pytest.mark.broker

PARTITIONS = 4


def describe(bootstrap: str, topics: list[str]) -> tuple[dict[str, int], dict[str, dict]]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        partitions = {meta["name"]: len(meta["partitions"]) for meta in admin.describe_topics(topics)}
        described = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic) for topic in topics], config_filter="all"
        )
        return partitions, described["topic"]
    finally:
        admin.close()


def test_worker_creates_its_topics_and_faust_compacts_the_changelogs(broker, start_worker):
    worker = start_worker(partitions=PARTITIONS)
    worker.wait_until_caught_up()  # /metrics answers before Faust has declared its tables
    changelogs = [f"{worker.app_id}-{table}-changelog" for table in ("promises", "outcome-totals", "seen-events")]
    topics = [worker.topic, f"{worker.topic}.dlq", *changelogs]
    partitions, configs = describe(broker.bootstrap, topics)
    assert partitions == {topic: PARTITIONS for topic in topics}
    for changelog in changelogs:
        assert configs[changelog]["cleanup.policy"]["value"] == "compact", (changelog, configs[changelog])
