"""Fixtures for end-to-end tests: a broker, and servicewatch workers as real processes.

The ``broker`` fixture yields an object with ``.bootstrap`` ("host:port", for
kafka-python) and ``.url`` ("kafka://host:port", for ``--broker``); tests use nothing
else, and every test that takes it runs twice: on the embedded broker (Tansu) and on
a real Apache Kafka 4.x broker.
"""

from __future__ import annotations

import os
from typing import Callable, Iterator

import pytest

from streams.embedded_broker import EmbeddedBroker, free_port
from streams.kafka_broker import ApacheKafkaBroker, KafkaToolsMissing

from tests.integration.harness import WorkerProcess, unique_name


BROKERS = {"tansu": EmbeddedBroker, "kafka": ApacheKafkaBroker}


@pytest.fixture(scope="session", params=sorted(BROKERS))
def broker(request, tmp_path_factory) -> Iterator[EmbeddedBroker | ApacheKafkaBroker]:
    """One broker of each kind on 127.0.0.1 for the whole session (empty at start)."""
    kind = request.param
    log_file = tmp_path_factory.mktemp(f"broker-{kind}") / f"{kind}.log"
    try:
        with BROKERS[kind](port=free_port(), log_file=log_file) as broker:
            yield broker
    except KafkaToolsMissing as missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Apache Kafka cannot run here: {missing}")
        pytest.skip(f"Apache Kafka cannot run here: {missing}")


@pytest.fixture
def start_worker(broker, tmp_path, request) -> Iterator[Callable[..., WorkerProcess]]:
    """Start ``python -m streams worker`` processes; each is stopped at teardown.

    Every worker started by one test shares that test's topic and app id (so several
    workers form one group); a different test gets its own, so consumer groups and
    changelog topics never collide. Returns the started process once /metrics answers.
    """
    topic = unique_name("events")
    app_id = unique_name("sw-test")
    workers: list[WorkerProcess] = []

    def start(partitions: int = 4, extra_args: tuple[str, ...] = (),
              ready_timeout: float = 60.0) -> WorkerProcess:
        index = len(workers)
        worker = WorkerProcess(
            broker_url=broker.url,
            topic=topic,
            app_id=app_id,
            web_port=free_port(),
            data_dir=tmp_path / f"data-{index}",
            log_path=tmp_path / f"worker-{index}.log",
            partitions=partitions,
            extra_args=extra_args,
        )
        workers.append(worker)
        worker.start()
        worker.first_scrape = worker.wait_until_serving(ready_timeout)
        return worker

    yield start

    failed = getattr(request.node, "rep_call", None)
    for worker in workers:
        code = worker.stop(timeout=15.0)
        if failed is not None and failed.failed:
            print(f"worker {worker.app_id} exited with {code}{worker.log_tail(80)}")


@pytest.fixture
def worker(start_worker) -> WorkerProcess:
    """One worker on a fresh topic, serving /metrics."""
    return start_worker()


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # Lets fixtures see whether the test failed, to print the worker log only then.
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
