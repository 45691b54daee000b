"""Builds the Faust application: one agent, one sweep timer, /metrics and the worklists.

Everything the agent and the timer touch is owned by :class:`Monitor`; the domain
rules live in :mod:`streams.core` and know nothing of Faust.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import faust
from prometheus_client import CollectorRegistry

from streams.collector import ObjectivesCollector, PromiseStateCollector
from streams.commit_barrier import held_writes_handed_over
from streams.deadletters import dead_letter
from streams.exposition import MetricsPage
from streams.ingest import install_ingest
from streams.metrics import Instruments, TeamLabels
from streams.policy import Policy
from streams.processor import EventProcessor
from streams.progress import ConsumerProgress
from streams.recovery_watch import RecoveryWatch
from streams.settings import Settings
from streams.state import PartitionStates
from streams.transport import install as install_transport
from streams.worklists import WorklistQueryError, parse_query, worklist

log = logging.getLogger(__name__)

# Unsent state changes after which the agent sends them without waiting for the sweep tick.
MAX_PENDING_WRITES = 1000

# Faust hands the Kafka producer one record at a time, and without a linger each one that
# finds the sender idle goes out in a produce request of its own: about one request per two
# events, a tenth of the worker's CPU. Waiting 50 ms lets state writes, findings and dead
# letters share requests (side by side: about 20 % less CPU per event, the broker's CPU down
# from 15 % to 6 %). Each flush (two per commit, one per rebalance), each finding and each
# HTTP ingest request waits that much longer at most.
PRODUCER_LINGER_SECONDS = 0.05


class Monitor:
    """The worker: its Faust app, state, metrics and the agent/timer/page wired to them."""

    def __init__(self, settings: Settings, policy: Policy | None = None) -> None:
        self.settings = settings
        self.policy = policy if policy is not None else service_policy(settings)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.app = faust.App(
            settings.app_id,
            broker=settings.broker,
            store="memory://",
            autodiscover=False,
            datadir=str(settings.data_dir / settings.app_id),
            topic_partitions=settings.partitions,
            web_enabled=True,
            web_port=settings.web_port,
            web_bind=settings.web_host,
            web_host=settings.web_host,
            # Tansu holds a group join for half the session timeout.
            broker_session_timeout=settings.session_timeout,
            broker_heartbeat_interval=settings.heartbeat_interval,
            consumer_auto_offset_reset="earliest",
            producer_acks=-1,
            producer_linger=PRODUCER_LINGER_SECONDS,
            logging_config=None,
        )
        app = self.app
        self.transport = install_transport(app)
        self.events_topic = app.topic(
            settings.topic, key_type=bytes, value_type=bytes,
            key_serializer="raw", value_serializer="raw",
            partitions=settings.partitions,
        )
        self.dead_letter_topic = app.topic(
            settings.dead_letter_topic, key_serializer="raw", value_serializer="raw",
            partitions=settings.partitions,
        )
        self.findings_topic = app.topic(
            settings.findings_topic, key_serializer="raw", value_serializer="raw",
            partitions=settings.partitions,
        )
        # Keys and values are JSON (Faust's default for untyped tables).
        table_options = dict(default=None, partitions=settings.partitions)
        self.states = PartitionStates(
            app.Table("promises", **table_options),
            app.Table("outcome-totals", **table_options),
            app.Table("seen-events", **table_options),
            grace_seconds=settings.grace_seconds,
        )
        self.registry = CollectorRegistry()
        self.instruments = Instruments(self.registry, TeamLabels(settings.max_teams))
        # These read state only the event loop may touch, so they are not in the registry
        # that is rendered in a thread.
        self.metrics_page = MetricsPage(self.registry, [
            PromiseStateCollector(self.states.books, self.instruments, self.states.inquiry_books),
            ObjectivesCollector(self.policy, self.instruments),
        ])
        self.processor = EventProcessor(self.states, self.instruments, self.policy)
        # The state's changes go out in batches (streams.state), always before a commit.
        self.transport.before_commit.append(self.states.send_pending)
        self.transport.after_writes_delivered.append(self.states.mark_ends)
        # A batch may hold a few thousand writes: Faust's default (100 waiting) would hold
        # up the agent at each one and log a warning.
        app.producer.buffer.max_messages = 4 * MAX_PENDING_WRITES
        self.progress = ConsumerProgress(app, settings.topic)

        app.agent(self.events_topic, name="servicewatch.interactions")(self._consume)
        app.timer(settings.sweep_interval, name="servicewatch.deadline-sweep")(self._sweep)
        self.recovery_watch = RecoveryWatch(app)
        app.timer(1.0, name="servicewatch.recovery-watch")(self._watch_recovery)
        registry = self.registry
        render_metrics = self.metrics_page.render

        # A plain function, not a bound method: Faust binds it to its View.
        async def metrics_page(web: Any, request: Any) -> Any:
            body, content_type = await render_metrics(request.headers.get("Accept", ""))
            return web.bytes(body, headers={"Content-Type": content_type})

        app.page("/metrics")(metrics_page)
        partition_books = self.states.partition_books

        def worklist_page(which: str):
            async def page(web: Any, request: Any) -> Any:
                try:
                    team, limit = parse_query(dict(request.query))
                except WorklistQueryError as error:
                    return web.json({"error": str(error)}, status=400)
                return web.json(worklist(partition_books(), which, team, limit))
            return page

        app.page("/promises/at-risk")(worklist_page("at_risk"))
        app.page("/promises/overdue")(worklist_page("overdue"))
        install_ingest(app, self.events_topic, token=settings.ingest_token,
                       max_bytes=settings.ingest_max_bytes, registry=registry)
        # Partition state may only be restored from the tables once Faust has
        # recovered them: between a rebalance and the end of recovery the sweep
        # waits. (Faust has no single flag covering that whole window.)
        self._tables_recovered = False
        app.on_partitions_revoked.connect(self._on_revoked)
        app.on_partitions_assigned.connect(self._on_assigned)
        app.on_rebalance_complete.connect(self._on_rebalance_complete)

    async def _consume(self, stream: Any) -> None:
        process = self.processor.process
        states = self.states
        async for event in stream.events():
            message = event.message
            try:
                rejection = process(message.partition, message.offset, message.timestamp,
                                    message.key, message.value, message.headers)
            except Exception:  # the worker must never die on one message
                log.exception("unexpected error on %s[%s]@%s", message.topic, message.partition, message.offset)
                rejection = self.processor.reject(
                    "processing_error", "servicewatch failed on this event; the worker log has the details"
                )
            if states.pending_writes >= MAX_PENDING_WRITES:
                states.send_pending()
            if self.processor.findings:
                await self._publish_findings()
            if rejection is not None:
                await self.dead_letter_topic.send(
                    key=message.key,
                    value=json.dumps(dead_letter(message, rejection)).encode(),
                    headers={"servicewatch-reason": rejection.reason.encode()},
                )

    async def _watch_recovery(self) -> None:
        try:
            await self.recovery_watch.check()
        except Exception:  # checked again next second; never stop the timer
            log.exception("checking table recovery failed")

    async def _sweep(self) -> None:
        app = self.app
        if self._tables_recovered and not app.rebalancing and not getattr(app, "in_recovery", False):
            # (Until table recovery is done the state is incomplete: no sweep.)
            try:
                self._sweep_partitions()
                if self.processor.findings:
                    await self._publish_findings()
            except Exception:  # a failed sweep is retried on the next tick; never stop the timer
                log.exception("deadline sweep failed")
        try:
            self.states.send_pending()
        except Exception:  # kept and sent again at the next tick or commit
            log.exception("sending state changes failed")

    async def _publish_findings(self) -> None:
        findings, self.processor.findings = self.processor.findings, []
        send = self.findings_topic.send
        for finding in findings:
            await send(key=finding.key, value=finding.value,
                       headers={"servicewatch-finding": finding.finding_type.encode()})

    def _sweep_partitions(self) -> None:
        progress = self.progress
        try:
            self.processor.topic_partitions = progress.topic_partition_count()
        except Exception:  # the metadata changed under us: read again at the next sweep
            log.debug("reading the events topic's partition count failed", exc_info=True)
        assigned = progress.assigned_partitions()
        self.states.release({s.partition for s in self.states.held()} - assigned)
        instruments = self.instruments
        for partition in assigned:
            state = self.states.get(partition)
            caught_up_at = progress.caught_up_at(partition, state.next_offset)
            if caught_up_at is not None:
                state.clock.caught_up(caught_up_at)
            self.processor.sweep(state)
            lag = progress.lag(partition, state.next_offset)
            if lag is not None:
                instruments.partition_lag.labels(str(partition)).set(lag)
            now = state.clock.now()
            if now is not None:
                instruments.partition_time.labels(str(partition)).set(now)

    async def _on_assigned(self, sender: Any, assigned: Any, **_: Any) -> None:
        self._tables_recovered = False

    async def _on_rebalance_complete(self, sender: Any, **_: Any) -> None:
        self._tables_recovered = True

    async def _on_revoked(self, sender: Any, revoked: Any, **_: Any) -> None:
        self._tables_recovered = False
        partitions = {tp.partition for tp in revoked if tp.topic == self.settings.topic}
        # Faust has committed; what a sweep changed since goes to the next owner too,
        # the same way as before a commit.
        timeout = self.app.conf.broker_request_timeout
        if await held_writes_handed_over(self.app, self.transport, timeout):
            await self.app.producer.flush()
        else:
            log.warning("state writes were not sent within %g s while partitions were revoked", timeout)
        self.states.release(partitions)
        for partition in partitions:
            for gauge in (self.instruments.partition_lag, self.instruments.partition_time):
                try:
                    gauge.remove(str(partition))
                except KeyError:
                    pass  # never set for this partition


def service_policy(settings: Settings) -> Policy:
    """The policy file's, or the built-in policy with the ``--at-risk`` threshold."""
    from streams.policy import load_policy

    if settings.policy_path is not None:
        return load_policy(settings.policy_path)
    return Policy.default(at_risk_seconds=settings.at_risk_seconds)
