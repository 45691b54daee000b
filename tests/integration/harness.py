"""Helpers for end-to-end tests: a real worker process, its /metrics, events on the wire.

Nothing here knows which broker it talks to: give it a bootstrap address ("host:port")
and a broker URL ("kafka://host:port"), from the embedded Tansu broker or an Apache Kafka.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from prometheus_client.parser import text_string_to_metric_families

POLL_INTERVAL = 0.2
LOG_TAIL_LINES = 40

# {(sample name, frozenset of label items): value}
Metrics = dict[tuple[str, frozenset], float]


# -- waiting ---------------------------------------------------------------------------------------
class ConditionTimeout(AssertionError):
    pass


def wait_for(condition: Callable[[], Any], timeout: float, what: str,
             context: Callable[[], str] | None = None, interval: float = POLL_INTERVAL) -> Any:
    """Poll ``condition`` every ``interval`` s until it returns something truthy, or fail.

    ``context`` is called on failure and its text is added to the message (e.g. the last
    metrics seen and the worker log tail).
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            extra = context() if context is not None else ""
            raise ConditionTimeout(f"timed out after {timeout:.0f}s waiting for {what}{extra}")
        time.sleep(interval)


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# -- metrics ---------------------------------------------------------------------------------------
def parse_metrics(text: str) -> Metrics:
    """Prometheus text exposition -> {(sample_name, frozenset(labels.items())): value}."""
    parsed: Metrics = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            parsed[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return parsed


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    """The sample ``name`` with exactly ``labels``, or None if the series is absent."""
    return metrics.get((name, frozenset(labels.items())))


def total(metrics: Metrics, name: str, **labels: str) -> float:
    """Sum of every ``name`` sample whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (sample, sample_labels), v in metrics.items()
               if sample == name and wanted <= sample_labels)


def series(metrics: Metrics, name: str) -> dict[frozenset, float]:
    """Every series of sample ``name``: {frozenset(labels.items()): value}."""
    return {labels: v for (sample, labels), v in metrics.items() if sample == name}


def show(metrics: Metrics, prefix: str = "servicewatch_") -> str:
    """Non-zero samples (and no histogram buckets), one a line, for failure messages."""
    lines = []
    for (name, labels), v in sorted(metrics.items(), key=lambda item: (item[0][0], sorted(item[0][1]))):
        if name.startswith(prefix) and not name.endswith("_bucket") and v:
            shown = ",".join(f"{k}={val}" for k, val in sorted(labels))
            lines.append(f"  {name}{{{shown}}} = {v:g}")
    return "\n".join(lines)


# -- the worker process ----------------------------------------------------------------------------
@dataclass
class WorkerProcess:
    """One ``python -m streams worker`` child process, with its log file and web port."""

    broker_url: str
    topic: str
    app_id: str
    web_port: int
    data_dir: Path
    log_path: Path
    partitions: int = 4
    extra_args: tuple[str, ...] = ()
    first_scrape: Metrics | None = None  # the first answer of /metrics, before any input
    process: subprocess.Popen | None = field(default=None, repr=False)
    _log_handle: Any = field(default=None, repr=False)

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}/metrics"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> "WorkerProcess":
        env = dict(os.environ)
        for name in list(env):  # only what this test sets, nothing from the caller's shell
            if name.startswith("SERVICEWATCH_"):
                del env[name]
        env.update(SERVICEWATCH_DATA_DIR=str(self.data_dir), SERVICEWATCH_APP_ID=self.app_id,
                   PYTHONUNBUFFERED="1")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_handle = open(self.log_path, "ab")
        command = [sys.executable, "-m", "streams", "worker",
                   "--broker", self.broker_url,
                   "--web-port", str(self.web_port),
                   "--topic", self.topic,
                   "--partitions", str(self.partitions),
                   *self.extra_args]
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=self._log_handle, stderr=subprocess.STDOUT,
            env=env, cwd=str(Path(__file__).resolve().parents[2]),
        )
        return self

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def scrape_text(self, timeout: float = 2.0) -> str | None:
        """The /metrics page, or None if it does not answer 200."""
        try:
            with urllib.request.urlopen(self.metrics_url, timeout=timeout) as response:
                if response.status != 200:
                    return None
                return response.read().decode("utf-8")
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return None

    def scrape(self) -> Metrics:
        text = self.scrape_text()
        if text is None:
            raise AssertionError(f"{self.metrics_url} did not answer 200{self.log_tail()}")
        return parse_metrics(text)

    def wait_until_serving(self, timeout: float = 60.0) -> Metrics:
        """Wait until /metrics answers 200; return that first scrape."""
        def ready():
            if not self.running():
                raise AssertionError(
                    f"worker exited with code {self.process.returncode} before serving /metrics"
                    f"{self.log_tail()}")
            return self.scrape_text()

        text = wait_for(ready, timeout, f"{self.metrics_url} to answer 200", self.log_tail)
        return parse_metrics(text)

    def wait_until_caught_up(self, timeout: float = 60.0) -> Metrics:
        """Wait until the worker holds every partition and has a partition time for each.

        ``servicewatch_partition_time_seconds{partition}`` appears once a fetch found that
        partition caught up: the group is joined and the consumer is polling.
        """
        wanted = {str(p) for p in range(self.partitions)}
        last: dict[str, Metrics] = {}

        def caught_up():
            text = self.scrape_text()
            if text is None:
                return None
            metrics = last["metrics"] = parse_metrics(text)
            have = {dict(labels).get("partition")
                    for labels in series(metrics, "servicewatch_partition_time_seconds")}
            return metrics if wanted <= have else None

        return wait_for(caught_up, timeout, f"partition times of all {self.partitions} partitions",
                        lambda: self.context(last.get("metrics")))

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL. Returns the exit code. Idempotent."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            try:
                os.kill(process.pid, signal.SIGCONT)  # a paused worker cannot handle SIGTERM
                process.send_signal(signal.SIGTERM)
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            except ProcessLookupError:
                pass
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None
        return process.returncode

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        tail = text.strip().splitlines()[-lines:]
        return f"\n--- last lines of the worker log ({self.log_path}) ---\n" + "\n".join(tail)

    def context(self, metrics: Metrics | None = None) -> str:
        shown = f"\n--- last metrics seen (non-zero) ---\n{show(metrics)}" if metrics else ""
        return shown + self.log_tail()


# -- events ----------------------------------------------------------------------------------------
def iso(moment: datetime) -> str:
    return moment.isoformat()


def event(type_: str, case_id: str, occurred_at: datetime, team: str = "billing",
          channel: str = "phone", event_id: str | None = None, **fields: Any) -> dict:
    """An event as a JSON-ready dict; datetimes in ``fields`` become ISO 8601 strings."""
    body = {
        "event_id": event_id or f"ev-{uuid.uuid4().hex}",
        "type": type_,
        "occurred_at": iso(occurred_at),
        "case_id": case_id,
        "team": team,
        "channel": channel,
    }
    for name, field_value in fields.items():
        body[name] = iso(field_value) if isinstance(field_value, datetime) else field_value
    return body


@dataclass(frozen=True)
class Sent:
    """One produced record: what was sent and where it landed."""

    key: bytes | None
    value: bytes
    partition: int
    offset: int
    timestamp_ms: int


class EventSender:
    """A kafka-python producer sending one record at a time, in order, waiting for each ack."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        from kafka import KafkaProducer

        self.topic = topic
        self._producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0,
                                       max_in_flight_requests_per_connection=1)

    def send(self, value: Mapping | bytes, key: str | bytes | None = None) -> Sent:
        raw = value if isinstance(value, bytes) else json.dumps(value).encode()
        if key is None and isinstance(value, Mapping):
            key = value["case_id"]
        raw_key = key.encode() if isinstance(key, str) else key
        metadata = self._producer.send(self.topic, key=raw_key, value=raw).get(timeout=15)
        return Sent(raw_key, raw, metadata.partition, metadata.offset, metadata.timestamp)

    def close(self) -> None:
        self._producer.close(timeout=5)

    def __enter__(self) -> "EventSender":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def read_all(bootstrap: str, topic: str, expected: int, timeout: float = 20.0,
             settle: float = 1.0) -> list:
    """Every record of ``topic`` from the beginning of all its partitions.

    Polls until ``expected`` records were read (or the deadline), then ``settle`` s more
    to catch any extra record that should not be there.
    """
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             group_id=None, auto_offset_reset="earliest")
    try:
        partitions = wait_for(lambda: consumer.partitions_for_topic(topic), 10,
                              f"metadata of {topic}")
        assignment = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assignment)
        consumer.seek_to_beginning(*assignment)
        records: list = []
        deadline = time.monotonic() + timeout
        settle_until = None
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
            if len(records) >= expected:
                settle_until = settle_until or time.monotonic() + settle
                if time.monotonic() >= settle_until:
                    break
        return records
    finally:
        consumer.close()


def scenario_summary(sent: Iterable[tuple[str, Sent]]) -> str:
    return "\n".join(f"  {label}: p{s.partition}@{s.offset}" for label, s in sent)
