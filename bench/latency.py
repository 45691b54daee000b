"""Latency with the worker caught up (nothing left to consume before each sample).

A /metrics scrape is not free: the worker renders a few thousand lines on its event loop
(~100 ms here, printed with the results), and while it renders it processes nothing. Polling
/metrics "quickly" would therefore measure the polling. So each latency is taken from a signal
that costs the worker nothing, the worker's own changelog writes (read from the broker by the
harness), and also as a client of /metrics sees it, polled at a stated interval:

end to end, changelog   One greeting at a time, 5 a second: from just before the producer's
                        send (acks=all, linger 0, flushed) until the harness reads the event's
                        id in ``<app id>-seen-events-changelog``, which the worker writes (in a
                        batch of ids, at its next 0.2 s sweep tick) once it has processed the
                        event. Producer round trip + broker + Faust fetch + processing + the
                        wait for the tick + the changelog write and read: an upper bound on
                        when the event was processed, and when its effects became durable.
end to end, /metrics    The same, until /metrics shows ``servicewatch_events_total{type=
                        "greeting"}`` one higher; /metrics polled every 100 ms.
miss, changelog         Promises due at D = now + 1 s, never delivered, each on its own case
                        (spread over the partitions), one every 0.3 s, no other traffic: idle
                        partitions, the worst case of the rule (an idle partition's miss is
                        declared once a fetch answered after D + grace finds it caught up).
                        From D + grace (wall clock; grace = the worker's --grace) until the
                        harness reads the promise's record with ``ended_as: "missed"`` in
                        ``<app id>-promises-changelog``.
miss, /metrics          The same promises, until ``servicewatch_promise_outcomes_total{team=T,
                        outcome="missed"}`` increments (each promise has its own team label,
                        bench-miss-K, K cycling over 40); /metrics polled every second, as a
                        Prometheus with a 1 s scrape interval would.
miss, finding           D + grace until a ``promise_missed`` finding with the promise id as key is
                        consumed from the findings topic (``servicewatch.findings`` or
                        ``<events topic>.findings``) if such a topic exists once the worker is
                        up; else "n/a (no findings topic yet)".
"""

from __future__ import annotations

import json
import statistics
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable

from bench import scrape

MISS_TEAMS = 40
MISS_SPACING = 0.3
DUE_AFTER = 1.0
E2E_RATE = 5.0
E2E_METRICS_POLL = 0.1
MISS_METRICS_POLL = 1.0
WAIT_AFTER = 30.0


@dataclass
class Latencies:
    name: str
    samples: list[float] = field(default_factory=list)
    note: str = ""

    def quantile(self, q: float) -> float | None:
        if not self.samples:
            return None
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]

    @property
    def p50(self) -> float | None:
        return self.quantile(0.50)

    @property
    def p99(self) -> float | None:
        return self.quantile(0.99)


def _event(type_: str, case_id: str, team: str, **fields) -> dict:
    now = datetime.now(timezone.utc)
    return {"event_id": uuid.uuid4().hex, "type": type_, "occurred_at": now.isoformat(),
            "case_id": case_id, "team": team, "channel": "chat", "source": "bench", **fields}


def _producer(bootstrap: str):
    from kafka import KafkaProducer
    return KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)


class TopicWatcher(threading.Thread):
    """Reads ``topic`` from (about) its end and calls ``on_record(key, value, seen_at)``."""

    def __init__(self, bootstrap: str, topic: str, on_record: Callable[[str, bytes, float], None]) -> None:
        super().__init__(name=f"watch-{topic}", daemon=True)
        from kafka import KafkaConsumer, TopicPartition
        # A short fetch wait: Tansu holds an empty fetch for the whole wait even when records
        # arrive, so kafka-python's 500 ms default would add up to half a second to every sample.
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                      fetch_max_wait_ms=10)
        deadline = time.monotonic() + 30
        partitions = None
        while not partitions and time.monotonic() < deadline:
            partitions = self.consumer.partitions_for_topic(topic)
            time.sleep(0.1)
        if not partitions:
            raise RuntimeError(f"topic {topic} not found")
        assignment = [TopicPartition(topic, p) for p in partitions]
        self.consumer.assign(assignment)
        self.consumer.seek_to_end(*assignment)  # on Tansu a little before the end: harmless
        for tp in assignment:
            self.consumer.position(tp)
        self.on_record = on_record
        self.stopping = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                for records in self.consumer.poll(timeout_ms=20).values():
                    seen = time.time()
                    for record in records:
                        key = record.key.decode(errors="replace").strip('"') if record.key else ""
                        self.on_record(key, record.value, seen)
        finally:
            self.consumer.close()

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)


def request_seconds(url: str, count: int, pause: float = 0.0) -> list[float]:
    """Seconds each of ``count`` GETs of ``url`` took, one after another, ``pause`` s apart."""
    times = []
    for _ in range(count):
        started = time.perf_counter()
        scrape.page(url)
        times.append(time.perf_counter() - started)
        time.sleep(pause)
    return times


def small_request_url(metrics_url: str) -> str:
    """A request the worker answers in about a millisecond: one entry of its at-risk worklist."""
    return metrics_url.rsplit("/metrics", 1)[0] + "/promises/at-risk?limit=1"


def scrape_seconds(url: str, count: int = 5) -> float:
    """Median seconds one /metrics scrape takes (worker render + transfer)."""
    return statistics.median(request_seconds(url, count))


def loop_held_by_scrapes(metrics_url: str, requests: int = 40) -> tuple[float, float]:
    """Median and max seconds a small request (one at-risk worklist entry) takes while
    /metrics is scraped back to back: how long a scrape keeps the worker's event loop
    from anything else (events, deadline sweeps, other requests)."""
    stop = threading.Event()

    def scrape_back_to_back() -> None:
        while not stop.is_set():
            scrape.page(metrics_url)

    scraper = threading.Thread(target=scrape_back_to_back, daemon=True)
    scraper.start()
    try:
        times = request_seconds(small_request_url(metrics_url), requests, pause=0.05)
    finally:
        stop.set()
        scraper.join(10)
    return statistics.median(times), max(times)


def end_to_end(bootstrap: str, topic: str, app_id: str, metrics_url: str, samples: int) -> list[Latencies]:
    via_log = Latencies("end to end: produced -> processed (changelog)")
    via_metrics = Latencies(f"end to end: produced -> on /metrics (polled {E2E_METRICS_POLL * 1000:.0f} ms)")
    sent_at: dict[str, float] = {}
    lock = threading.Lock()

    def on_seen(_key: str, value: bytes, seen: float) -> None:
        # The worker writes a partition's event ids as one record per batch (streams.state).
        try:
            ids = json.loads(value)["ids"] if value else []
        except (ValueError, KeyError, TypeError):
            return
        with lock:
            sents = [sent_at.pop(event_id, None) for event_id in ids]
        via_log.samples.extend(seen - sent for sent in sents if sent is not None)

    watcher = TopicWatcher(bootstrap, f"{app_id}-seen-events-changelog", on_seen)
    watcher.start()
    producer = _producer(bootstrap)
    try:
        for metrics_pass in (False, True):
            before = _greetings(scrape.page(metrics_url) or "")
            for _ in range(samples):
                case = f"bench-e2e-{uuid.uuid4().hex[:12]}"
                body = _event("greeting", case, "bench-e2e", contact_at=datetime.now(timezone.utc).isoformat())
                started = time.monotonic()
                with lock:
                    if not metrics_pass:
                        sent_at[body["event_id"]] = time.time()
                sent = time.time()
                producer.send(topic, key=case.encode(), value=json.dumps(body).encode())
                producer.flush()
                if metrics_pass:
                    while time.monotonic() - started < WAIT_AFTER:
                        time.sleep(E2E_METRICS_POLL)
                        count = _greetings(scrape.page(metrics_url) or "")
                        if count > before:
                            via_metrics.samples.append(time.time() - sent)
                            before = count
                            break
                time.sleep(max(0.0, 1.0 / E2E_RATE - (time.monotonic() - started)))
        deadline = time.monotonic() + 5
        while sent_at and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        producer.close(timeout=5)
        watcher.stop()
    if sent_at:
        via_log.note = f"{len(sent_at)} not seen in the changelog"
    return [via_log, via_metrics]


def _greetings(text: str) -> float:
    return sum(v for labels, v in scrape.labelled(text, "servicewatch_events_total")
               if labels.get("type") == "greeting")


def misses(bootstrap: str, topic: str, app_id: str, metrics_url: str, samples: int, grace: float,
           findings_topic: str | None) -> list[Latencies]:
    via_log = Latencies(f"miss: D + grace ({grace:g} s) -> missed (changelog)")
    via_metrics = Latencies(f"miss: D + grace -> on /metrics (polled {MISS_METRICS_POLL:g} s)")
    via_finding = Latencies("miss: D + grace -> finding consumed")
    deadline_of: dict[str, float] = {}  # promise id -> D + grace (epoch s)
    pending_log: set[str] = set()
    pending_finding: set[str] = set()
    by_team: dict[str, list[float]] = {}  # team -> deadlines in order
    lock = threading.Lock()

    def on_promise(key: str, value: bytes, seen: float) -> None:
        try:
            record = json.loads(value)["record"] if value else {}
        except (ValueError, KeyError, TypeError):
            return
        if record.get("ended_as") == "missed":
            with lock:
                if key in pending_log:
                    pending_log.discard(key)
                    via_log.samples.append(seen - deadline_of[key])

    def on_finding(key: str, value: bytes, seen: float) -> None:
        try:
            body = json.loads(value)
        except (ValueError, TypeError):
            return
        if body.get("type") == "promise_missed":
            key = key or body.get("promise_id", "")
            with lock:
                if key in pending_finding:
                    pending_finding.discard(key)
                    via_finding.samples.append(seen - deadline_of[key])

    watchers = [TopicWatcher(bootstrap, f"{app_id}-promises-changelog", on_promise)]
    if findings_topic:
        watchers.append(TopicWatcher(bootstrap, findings_topic, on_finding))
    else:
        via_finding.note = "n/a (no findings topic yet)"
    stop = threading.Event()
    poller = threading.Thread(target=_poll_missed, daemon=True,
                              args=(metrics_url, by_team, lock, stop, via_metrics))
    for watcher in watchers:
        watcher.start()
    poller.start()
    producer = _producer(bootstrap)
    try:
        for i in range(samples):
            team = f"bench-miss-{i % MISS_TEAMS}"
            case = f"bench-miss-{uuid.uuid4().hex[:12]}"
            promise_id = f"prm-bench-{uuid.uuid4().hex[:12]}"
            due = datetime.now(timezone.utc) + timedelta(seconds=DUE_AFTER)
            body = _event("promise", case, team, promise_id=promise_id, due_at=due.isoformat(), kind="callback")
            with lock:
                deadline_of[promise_id] = due.timestamp() + grace
                pending_log.add(promise_id)
                if findings_topic:
                    pending_finding.add(promise_id)
                by_team.setdefault(team, []).append(due.timestamp() + grace)
            producer.send(topic, key=case.encode(), value=json.dumps(body).encode())
            producer.flush()
            time.sleep(MISS_SPACING)
        limit = max(deadline_of.values()) + WAIT_AFTER
        while time.time() < limit:
            with lock:
                if not pending_log and not pending_finding and not any(by_team.values()):
                    break
            time.sleep(0.1)
    finally:
        stop.set()
        producer.close(timeout=5)
        poller.join(5)
        for watcher in watchers:
            watcher.stop()
    for result, left in ((via_log, len(pending_log)), (via_metrics, sum(map(len, by_team.values()))),
                         (via_finding, len(pending_finding))):
        if left:
            result.note = f"{left} of {samples} not seen within {WAIT_AFTER:.0f} s of their deadline"
    return [via_log, via_metrics, via_finding]


def _poll_missed(url, by_team, lock, stop, result: Latencies) -> None:
    counts: dict[str, float] = {}
    while not stop.wait(MISS_METRICS_POLL):
        text = scrape.page(url)
        now = time.time()
        if not text:
            continue
        for labels, value in scrape.labelled(text, "servicewatch_promise_outcomes_total"):
            team = labels.get("team", "")
            if (labels.get("outcome") != "missed" or not team.startswith("bench-miss-")
                    or labels.get("kind") != "callback" or labels.get("audience") != "external"):
                continue
            new = int(value - counts.get(team, 0))
            counts[team] = value
            with lock:
                queue = by_team.get(team, [])
                for _ in range(min(new, len(queue))):
                    result.samples.append(now - queue.pop(0))


def findings_topic(bootstrap: str, events_topic: str) -> str | None:
    """The findings topic, if the broker has one: servicewatch.findings or <events topic>.findings."""
    from kafka import KafkaConsumer
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, allow_auto_create_topics=False)
    try:
        topics = consumer.topics()
    finally:
        consumer.close()
    for name in ("servicewatch.findings", f"{events_topic}.findings"):
        if name in topics:
            return name
    return None
