"""Fixtures of the fault tests: the integration suite's ``broker`` (Tansu and Apache Kafka)
and ``start_worker``, re-exported so tests here run on both brokers like the rest."""

from tests.integration.conftest import (  # noqa: F401  (fixtures and a hook, used by name)
    broker,
    pytest_runtest_makereport,
    start_worker,
)
