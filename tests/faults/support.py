"""What the fault tests share: compressed traffic, a fleet of worker processes, the log read
back from the broker, and the oracle's numbers set against the workers' /metrics.

Nothing here knows which fault a test injects; the tests say that in their own words.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

from streams.core.oracle import LoggedRecord, OracleResult, judge
from streams.embedded_broker import free_port
from streams.simulation import CHANNELS, CasePlanner, SimulationProfile, TrafficSchedule
from tests.integration.harness import Metrics, WorkerProcess, parse_metrics, wait_for

GRACE = 2.0  # the workers' default --grace

OUTCOMES = "servicewatch_promise_outcomes_total"
LATE = "servicewatch_late_deliveries_total"
OPEN = "servicewatch_promises_open"
OVERDUE = "servicewatch_promises_overdue"
LAG = "servicewatch_consumer_lag_messages"
PARTITION_TIME = "servicewatch_partition_time_seconds"
EVENTS = "servicewatch_events_total"
DUPLICATES = "servicewatch_events_duplicate_total"
REJECTED = "servicewatch_events_rejected_total"

# Whole cases within ~20 s: promises fall due 3-10 s after they are made, late deliveries come
# up to 4 s late, one or two replies within a few seconds.
FAST_PROFILE = SimulationProfile(
    quick_greeting_seconds=(0.1, 1.0),
    slow_greeting_seconds=(1.0, 3.0),
    response_seconds={channel: (0.2, 2.0) for channel in CHANNELS},
    slow_response_share=0.0,
    follow_up_seconds=(0.2, 1.0),
    responses_per_case=(1, 2),
    promise_after_response_seconds=(0.1, 0.5),
    promise_due_seconds=(3.0, 10.0),
    lateness_seconds=(0.5, 4.0),
    late_share=0.20,
    never_share=0.10,
)


# -- traffic ---------------------------------------------------------------------------------------
class Traffic(threading.Thread):
    """Starts simulated cases (a seeded CasePlanner) at ``rate`` cases/s for ``seconds``, then
    sends the rest of the cases already started, each event when its occurred_at comes (so
    CreateTime and event time agree, as with a real emitter).

    :meth:`pause` holds events back, as an emitter that cannot reach Kafka would; after
    :meth:`resume` they go out at once, stamped then: known late, as the log will tell. What
    reached the broker is read back from the topic afterwards: the log, not this sender, is
    what the oracle judges.
    """

    def __init__(self, bootstrap: str, topic: str, rate: float, seconds: float, seed: int,
                 profile: SimulationProfile = FAST_PROFILE) -> None:
        super().__init__(name=f"traffic-{topic}", daemon=True)
        self.bootstrap, self.topic, self.rate, self.seconds = bootstrap, topic, rate, seconds
        self.schedule = TrafficSchedule(CasePlanner(profile, random.Random(seed)))
        self.sent = 0
        self.acked = 0
        self.failed: list[BaseException] = []
        self.error: BaseException | None = None
        self.started_at: float | None = None
        self.acked_at: dict[tuple[int, int], float] = {}  # (partition, offset) -> epoch seconds
        self._stop_event = threading.Event()
        self._running = threading.Event()
        self._running.set()
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()

    def stop(self) -> None:
        self._stop_event.set()

    def pause(self) -> None:
        with self._send_lock:
            self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def run(self) -> None:
        from kafka import KafkaProducer

        try:
            producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=5)
        except BaseException as error:  # reported by wait_done()
            self.error = error
            return
        self.started_at = time.time()
        started = last = time.monotonic()
        credit = 1.0
        try:
            while not self._stop_event.is_set():
                tick = time.monotonic()
                starting = tick - started < self.seconds
                if not starting and not self.schedule.pending:
                    break
                if starting:
                    credit += (tick - last) * self.rate
                last = tick
                now = datetime.now(timezone.utc)
                while credit >= 1.0:
                    self.schedule.add_case(now)
                    credit -= 1.0
                with self._send_lock:  # pause() waits for a batch being sent
                    if self._running.is_set():
                        for item in self.schedule.due(now):
                            future = producer.send(self.topic, key=item.key.encode(),
                                                   value=json.dumps(item.event).encode())
                            future.add_callback(self._acked).add_errback(self._failed)
                            self.sent += 1
                self._stop_event.wait(0.05)
            producer.flush(timeout=30)
        except BaseException as error:
            self.error = error
        finally:
            producer.close(timeout=10)

    def _acked(self, metadata) -> None:
        with self._lock:
            self.acked += 1
            # when the broker's acknowledgement was read: the record was appended before
            self.acked_at[(metadata.partition, metadata.offset)] = time.time()

    def _failed(self, error: BaseException) -> None:
        with self._lock:
            self.failed.append(error)

    def flushed_and_paused(self, timeout: float = 30.0) -> None:
        """Pause, and wait until everything sent so far is acknowledged."""
        self.pause()
        wait_for(lambda: self.acked + len(self.failed) >= self.sent, timeout,
                 "sent events to be acknowledged", interval=0.05)

    def wait_done(self, timeout: float) -> "Traffic":
        self.join(timeout)
        if self.is_alive():
            raise AssertionError(f"traffic to {self.topic} did not finish within {timeout:.0f}s")
        if self.error is not None:
            raise AssertionError(f"traffic to {self.topic} failed: {self.error!r}")
        return self


# -- the log ---------------------------------------------------------------------------------------
def read_topic(bootstrap: str, topic: str, at_least: int = 0, timeout: float = 60.0,
               quiet: float = 2.0) -> list[LoggedRecord]:
    """Every record of ``topic`` from the beginning, with its Kafka timestamp.

    Reads until at least ``at_least`` records came and then nothing new for ``quiet`` s
    (end offsets are not trusted: Tansu reports them wrong).
    """
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                             auto_offset_reset="earliest")
    try:
        partitions = wait_for(lambda: consumer.partitions_for_topic(topic), 20, f"metadata of {topic}")
        assignment = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assignment)
        consumer.seek_to_beginning(*assignment)
        records: list[LoggedRecord] = []
        deadline = time.monotonic() + timeout
        last_new = time.monotonic()
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=200)
            for messages in batch.values():
                records.extend(LoggedRecord.from_kafka(m) for m in messages)
                last_new = time.monotonic()
            if len(records) >= at_least and time.monotonic() - last_new >= quiet:
                return records
        raise AssertionError(f"read {len(records)} records of {topic} in {timeout:.0f}s, "
                             f"expected at least {at_least}")
    finally:
        consumer.close()


def judged(records: list[LoggedRecord]) -> OracleResult:
    """The oracle's outcomes with every partition caught up as of now."""
    return judge(records, grace_seconds=GRACE, end_of_log_time=time.time())


def last_deadline(oracle: OracleResult) -> float:
    return max((v.due_at for v in oracle.verdicts.values()), default=0.0) + GRACE


def wait_past(moment: float, margin: float = 1.0) -> None:
    """Wait (without sleeping blind: the condition is the wall clock) until ``moment`` + margin."""
    wait_for(lambda: time.time() > moment + margin, max(moment + margin - time.time(), 0) + 5,
             "the last deadline to pass", interval=0.1)


@dataclass(frozen=True)
class Persisted:
    """A promise as the workers persisted it in the promises changelog."""

    outcome: str | None  # ended_as of the latest write
    ended_written_at: float | None  # Kafka timestamp of the first write that ended it
    delivery_known_at: float | None


def changelog_outcomes(bootstrap: str, app_id: str) -> dict[tuple[int, str], Persisted]:
    """Each promise as the workers persisted it, from its history in the promises changelog."""
    history: dict[bytes, list[LoggedRecord]] = {}
    for record in read_topic(bootstrap, f"{app_id}-promises-changelog", timeout=60):
        history.setdefault(record.key, []).append(record)
    persisted = {}
    for writes in history.values():
        writes.sort(key=lambda r: r.offset)
        if writes[-1].value is None:
            continue  # forgotten
        stored = json.loads(writes[-1].value)
        record = stored["record"]
        if stored.get("book") == "inquiries":
            continue  # a customer's inquiry, kept in the same table
        if record.get("due_at") is None:
            continue  # a delivery whose promise never came
        ended_at = next((w.timestamp for w in writes
                         if w.value is not None and json.loads(w.value)["record"]["ended_as"]), None)
        persisted[(stored["partition"], record["promise_id"])] = Persisted(
            record["ended_as"], ended_at, record.get("delivery_known_at"))
    return persisted


# -- workers ---------------------------------------------------------------------------------------
@dataclass
class Fleet:
    """Worker processes of one app id on one topic (one consumer group), as start_worker makes
    them, usable outside a single test (module fixtures) and for several app ids."""

    broker_url: str
    topic: str
    app_id: str
    base_dir: Path
    partitions: int = 8
    workers: list[WorkerProcess] = field(default_factory=list)

    def start(self, count: int = 1, ready_timeout: float = 90.0) -> list[WorkerProcess]:
        started = []
        for _ in range(count):
            index = len(self.workers)
            worker = WorkerProcess(
                broker_url=self.broker_url, topic=self.topic, app_id=self.app_id,
                web_port=free_port(), data_dir=self.base_dir / f"{self.app_id}-data-{index}",
                log_path=self.base_dir / f"{self.app_id}-worker-{index}.log",
                partitions=self.partitions,
            )
            self.workers.append(worker)
            started.append(worker.start())
        for worker in started:
            worker.first_scrape = worker.wait_until_serving(ready_timeout)
        return started

    def live(self) -> list[WorkerProcess]:
        return [w for w in self.workers if w.running()]

    def kill(self, worker: WorkerProcess) -> None:
        """SIGKILL: no shutdown, no flush, no commit, no leaving the group."""
        os.kill(worker.pid, signal.SIGKILL)
        worker.process.wait(30)

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop(timeout=20)

    def logs(self, lines: int = 30) -> str:
        return "".join(w.log_tail(lines) for w in self.workers)


# Lines a worker logs every few milliseconds while the broker is away: left out of excerpts.
_RECONNECT_NOISE = ("Unable connect to node", "Failed fetch messages", "Unable to update metadata",
                    "Coordinator Request failed", "NodeNotReadyError")


def log_excerpt(worker: WorkerProcess, lines: int = 60) -> str:
    """The worker log's last ``lines`` lines that say something (reconnect noise left out)."""
    try:
        text = worker.log_path.read_text(errors="replace")
    except OSError:
        return ""
    kept = [line[:400] for line in text.splitlines() if not any(n in line for n in _RECONNECT_NOISE)]
    return f"\n--- worker log {worker.log_path}, reconnect noise left out ---\n" + "\n".join(kept[-lines:])


def scrape_all(workers: Iterable[WorkerProcess]) -> list[Metrics]:
    scraped = []
    for worker in workers:
        text = worker.scrape_text(timeout=5)
        if text is None:
            raise AssertionError(f"{worker.metrics_url} did not answer{worker.log_tail()}")
        scraped.append(parse_metrics(text))
    return scraped


def holdings(metrics: Metrics) -> set[int]:
    """Partitions a worker reports a partition time for: those it holds and has polled."""
    return {int(dict(labels)["partition"]) for (name, labels) in metrics if name == PARTITION_TIME}


def lag_by_partition(metrics: Metrics) -> dict[int, float]:
    return {int(dict(labels)["partition"]): v for (name, labels), v in metrics.items() if name == LAG}


def assignment_problem(scraped: list[Metrics], partitions: int, workers_wanted: int | None = None) -> str | None:
    """None if every partition is held by exactly one worker (and by ``workers_wanted`` workers)."""
    held = [holdings(m) for m in scraped]
    counts = Counter(p for h in held for p in h)
    missing = set(range(partitions)) - set(counts)
    doubled = {p for p, n in counts.items() if n > 1}
    if missing or doubled:
        return f"held {[sorted(h) for h in held]}: missing {sorted(missing)}, doubled {sorted(doubled)}"
    if workers_wanted is not None and sum(1 for h in held if h) != workers_wanted:
        return f"held {[sorted(h) for h in held]}: wanted {workers_wanted} workers holding partitions"
    return None


def wait_for_assignment(workers: list[WorkerProcess], partitions: int, workers_wanted: int,
                        timeout: float = 120.0) -> list[set[int]]:
    last: dict[str, str | None] = {}

    def settled():
        scraped = scrape_all(workers)
        last["problem"] = assignment_problem(scraped, partitions, workers_wanted)
        return [holdings(m) for m in scraped] if last["problem"] is None else None

    return wait_for(settled, timeout, f"{partitions} partitions spread over {workers_wanted} workers",
                    lambda: f"\nlast: {last.get('problem')}" + "".join(w.log_tail(20) for w in workers))


def counts(metrics_list: Iterable[Metrics], name: str, with_outcome: bool = False) -> Counter:
    """Non-zero values of a (team, kind, audience[, outcome]) metric, summed over workers."""
    total: Counter = Counter()
    for metrics in metrics_list:
        for (sample, labels), v in metrics.items():
            if sample != name or not v:
                continue
            d = dict(labels)
            key = (d["team"], d["kind"], d["audience"])
            total[(*key, d["outcome"]) if with_outcome else key] += v
    return total


def nonzero(counter: Counter) -> Counter:
    return Counter({k: v for k, v in counter.items() if v})


def outcome_problems(scraped: list[Metrics], oracle: OracleResult, partitions: int) -> list[str]:
    """Where the workers' summed numbers differ from the oracle's (empty: they agree)."""
    problems = []
    problem = assignment_problem(scraped, partitions)
    if problem:
        problems.append(f"assignment: {problem}")
    lag = {p: v for m in scraped for p, v in lag_by_partition(m).items()}
    if any(lag.values()) or len(lag) < partitions:
        problems.append(f"lag by partition: {dict(sorted(lag.items()))}")
    for name, want, with_outcome in ((OUTCOMES, oracle.outcomes, True),
                                     (LATE, oracle.late_deliveries, False),
                                     (OVERDUE, oracle.overdue, False),
                                     (OPEN, oracle.open, False)):
        got = counts(scraped, name, with_outcome)
        want = nonzero(want)
        if got != want:
            keys = sorted(set(got) | set(want))
            diffs = [f"{k}: got {got.get(k, 0):g}, want {want.get(k, 0)}" for k in keys
                     if got.get(k, 0) != want.get(k, 0)]
            problems.append(f"{name}: " + "; ".join(diffs))
    return problems


def totals_line(scraped: list[Metrics]) -> str:
    outcomes = counts(scraped, OUTCOMES, True)
    on_time = sum(v for k, v in outcomes.items() if k[3] == "on_time")
    missed = sum(v for k, v in outcomes.items() if k[3] == "missed")
    late = sum(counts(scraped, LATE).values())
    return f"{on_time:g} on time, {missed:g} missed, {late:g} late deliveries"


def settle_on_oracle(workers_now, oracle: OracleResult, partitions: int, timeout: float = 120.0,
                     hold: float = 3.0, context=lambda: "") -> list[Metrics]:
    """Wait until the live workers' summed numbers equal the oracle's, then insist for ``hold`` s.

    ``context()`` is added to a failure's message (what happened, per-promise evidence, logs).
    """
    last: dict[str, list[str]] = {}

    def agree():
        scraped = scrape_all(workers_now())
        last["problems"] = outcome_problems(scraped, oracle, partitions)
        return scraped if not last["problems"] else None

    def explain():
        return ("\n--- still different from the oracle ---\n  " + "\n  ".join(last.get("problems", []))
                + f"\n--- oracle ---\n  {oracle.summary()}\n" + context())

    scraped = wait_for(agree, timeout, "the workers' totals to equal the oracle's", explain, interval=0.5)
    hold_until = time.monotonic() + hold
    while time.monotonic() < hold_until:
        time.sleep(0.5)
        scraped = scrape_all(workers_now())
        problems = outcome_problems(scraped, oracle, partitions)
        assert not problems, "reached the oracle's totals, then moved away:\n  " + "\n  ".join(problems)
    return scraped


def explain_differences(bootstrap: str, app_id: str, oracle: OracleResult,
                        records: list[LoggedRecord], acked_at: dict | None = None) -> str:
    """The per-promise differences from the oracle, for a failure message."""
    try:
        differences = per_promise_differences(changelog_outcomes(bootstrap, app_id), oracle, records,
                                              acked_at)
    except AssertionError as error:  # the changelog could not be read: say so, keep the rest
        return f"--- promises changelog unreadable: {error}\n"
    return "--- promises persisted otherwise than the oracle ---\n  " + "\n  ".join(differences) + "\n"


def per_promise_differences(persisted: dict[tuple[int, str], Persisted], oracle: OracleResult,
                            records: list[LoggedRecord], acked_at: dict | None = None) -> list[str]:
    """Promises whose persisted outcome differs from the oracle's, each with its evidence: when
    its deliveries were stamped and when the worker wrote the outcome, relative to the due time."""
    deliveries: dict[str, list[LoggedRecord]] = {}
    for record in records:
        try:
            body = json.loads(record.value)
        except (TypeError, ValueError):
            continue
        if isinstance(body, dict) and body.get("type") == "delivery":
            deliveries.setdefault(body.get("promise_id"), []).append(record)
    differences = []
    for key, verdict in sorted(oracle.verdicts.items()):
        stored = persisted.get(key)
        got = stored.outcome if stored else None
        want = None if verdict.outcome == "open" else verdict.outcome
        if got == want:
            continue
        due = verdict.due_at
        evidence = []
        for r in deliveries.get(key[1], []):
            acked = (acked_at or {}).get((r.partition, r.offset))
            evidence.append(
                f"delivery p{r.partition}@{r.offset} occurred "
                f"{_iso_seconds(json.loads(r.value)['occurred_at']) - due:+.3f}s, stamped "
                f"{r.timestamp - due:+.3f}s" + (f", acknowledged {acked - due:+.3f}s" if acked else ""))
        if stored and stored.ended_written_at is not None:
            evidence.append(f"outcome written {stored.ended_written_at - due:+.3f}s")
        if stored and stored.delivery_known_at is not None:
            evidence.append(f"delivery known to the worker {stored.delivery_known_at - due:+.3f}s")
        shown = "nothing (never written, or deleted)" if stored is None else (got or "open")
        differences.append(f"{key}: persisted {shown}, oracle {want} (times after due, grace "
                           f"{GRACE:g}s; due at {due:.3f}): " + "; ".join(evidence or ["no delivery"]))
    extra = set(persisted) - set(oracle.verdicts)
    if extra:
        differences.append(f"persisted promises the oracle does not know: {sorted(extra)[:10]}")
    return differences


def _iso_seconds(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()
