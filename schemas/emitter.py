"""Emit servicewatch events from Python: checked before they leave, keyed by case id.

    from schemas.emitter import Emitter

    with Emitter("kafka://kafka:9092", source="crm") as emitter:
        emitter.promise(case_id="case-42", team="billing", channel="phone",
                        promise_id="case-42-callback", kind="callback",
                        due_at=datetime(2026, 11, 28, 15, 0, tzinfo=timezone.utc))
        ...
        emitter.delivery(case_id="case-42", team="billing", channel="phone",
                         promise_id="case-42-callback")

Every event is validated with the same models the worker uses *before* it is sent, so a mistake
raises :class:`InvalidEventError` naming the field, in the code that made it, instead of ending
up in the dead-letter topic. ``event_id`` (a UUID) and ``occurred_at`` (now, UTC) are filled in
unless given; pass your own ``event_id`` (e.g. derived from a database row) when the same event
may be emitted twice, so servicewatch drops the repeat.

Records go to one topic, JSON values, the case id as the message key (so a case stays on one
partition and in order), with ``acks="all"`` and an idempotent producer: an acknowledged event is
on every in-sync replica and retries never write it twice. Sends are asynchronous (the call
returns once the record is queued); ``flush()`` waits and raises :class:`EmitError` if any event
was not written, ``send(..., wait=True)`` waits for one. An ``Emitter`` is thread-safe: share one
per process (e.g. in a web app) rather than opening one per request.

kafka-python is imported only when an Emitter is created, so the models and
:func:`event_record` need nothing but pydantic.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

from schemas.errors import FieldError, InvalidEventError, validate_json_event, validate_python_event
from schemas.events import Envelope

__all__ = [
    "DEFAULT_BROKER",
    "DEFAULT_TOPIC",
    "BrokerUnreachableError",
    "EmitError",
    "Emitted",
    "Emitter",
    "InvalidEventError",
    "TopicNotFoundError",
    "build_event",
    "event_record",
]

log = logging.getLogger(__name__)

DEFAULT_BROKER = "kafka://127.0.0.1:9092"
DEFAULT_TOPIC = "servicewatch.events"


class EmitError(RuntimeError):
    """An event could not be written to Kafka; the message says why and what to check."""


class BrokerUnreachableError(EmitError):
    """No Kafka broker answered at the bootstrap address."""


class TopicNotFoundError(EmitError):
    """The events topic does not exist (and the emitter does not create topics)."""


# -- building and encoding events (no Kafka) ------------------------------------------------------
def _now() -> datetime:
    return datetime.now(timezone.utc)


def build_event(event_type: str, **fields: Any) -> Envelope:
    """Validate one event of ``event_type`` from keyword fields; raise InvalidEventError.

    ``None`` values are left out (so defaults apply); ``event_id`` defaults to a new UUID and
    ``occurred_at`` to now (UTC); datetimes must carry a time zone. A ``due_at`` given as a
    ``timedelta`` is taken relative to ``occurred_at``.
    """
    data = {name: value for name, value in fields.items() if value is not None}
    data["type"] = event_type
    data.setdefault("event_id", str(uuid.uuid4()))
    data.setdefault("occurred_at", _now())
    if isinstance(data.get("due_at"), timedelta):
        occurred_at = data["occurred_at"]
        if not isinstance(occurred_at, datetime):
            raise InvalidEventError(
                [FieldError("due_at", "a timedelta due_at needs occurred_at as a datetime")], event_type)
        data["due_at"] = occurred_at + data["due_at"]
    return validate_python_event(data)


def event_record(event: Envelope | Mapping[str, Any]) -> tuple[bytes, bytes]:
    """The Kafka record for an event: ``(key, value)`` = (case id, compact JSON), as bytes.

    The value is re-read with the worker's own JSON validation, so what leaves here is what the
    worker accepts; anything else raises InvalidEventError.
    """
    model = validate_python_event(event)
    try:
        value = model.model_dump_json(exclude_none=True).encode("utf-8")
    except (ValueError, UnicodeError) as exc:  # e.g. a lone surrogate in a Python string
        raise InvalidEventError([FieldError(None, f"cannot be encoded as JSON: {exc}")],
                                getattr(model, "type", None)) from None
    checked = validate_json_event(value)
    return checked.case_id.encode("utf-8"), value


# -- the emitter ------------------------------------------------------------------------------------
class Emitted:
    """One event handed to the producer: the validated ``event`` and its pending delivery."""

    __slots__ = ("event", "future", "_emitter")

    def __init__(self, event: Envelope, future: Any, emitter: "Emitter") -> None:
        self.event = event
        self.future = future
        self._emitter = emitter

    @property
    def event_id(self) -> str:
        return self.event.event_id

    def done(self) -> bool:
        return self.future.is_done

    def get(self, timeout: float | None = 30.0) -> Any:
        """Wait until Kafka acknowledged the event; return its RecordMetadata (topic,
        partition, offset, timestamp). Raises EmitError if it was not written."""
        from kafka import errors as kafka_errors

        try:
            return self.future.get(timeout=timeout)
        except kafka_errors.KafkaError as exc:
            raise EmitError(self._emitter._explain_failure(exc)) from exc

    def __repr__(self) -> str:
        return f"<Emitted {self.event.type} {self.event.event_id} case={self.event.case_id}>"


class Emitter:
    """Sends validated events to the servicewatch events topic. Thread-safe; use one per process.

    ``broker``: ``kafka://host:port`` or ``host:port``, comma-separated for several.
    ``source``: stamped on events that do not name their own (models are sent as built).
    ``connect_timeout``: seconds to wait for the broker (and the topic) when opening.
    ``check_topic``: fail at once, with advice, if the topic does not exist.
    ``producer_options``: passed to ``kafka.KafkaProducer`` (e.g. ``security_protocol``,
    ``sasl_mechanism``, ``linger_ms``); they override the defaults below.
    """

    def __init__(
        self,
        broker: str = DEFAULT_BROKER,
        topic: str = DEFAULT_TOPIC,
        *,
        source: str | None = None,
        connect_timeout: float = 10.0,
        check_topic: bool = True,
        **producer_options: Any,
    ) -> None:
        from kafka import KafkaProducer
        from kafka import errors as kafka_errors

        self.broker = broker
        self.topic = topic
        self.source = source
        self._lock = threading.Lock()
        self._failures: list[BaseException] = []
        self._closed = False
        self._partitions: list[int] | None = None
        bootstrap = _bootstrap_list(broker)
        self._bootstrap_text = ",".join(bootstrap)
        if not producer_options.get("proxy_url"):
            _probe(bootstrap, connect_timeout, self._bootstrap_text)
        options: dict[str, Any] = {
            "bootstrap_servers": bootstrap,
            "client_id": "servicewatch-emitter",
            "acks": "all",  # an acknowledged event is on every in-sync replica
            "linger_ms": 5,  # small batches without noticeable delay
            # Block a send at most this long when Kafka is unreachable, instead of a minute.
            "max_block_ms": int(max(connect_timeout, 1.0) * 1000),
            "bootstrap_timeout_ms": int(max(connect_timeout, 1.0) * 1000),
            "retries": 2**31 - 1,  # bounded by delivery_timeout_ms
            "delivery_timeout_ms": 120_000,
        }
        supported = getattr(KafkaProducer, "DEFAULT_CONFIG", {})
        if "enable_idempotence" in supported:  # kafka-python >= 2.1: retries never duplicate
            options["enable_idempotence"] = True
        if "allow_auto_create_topics" in supported:
            # A broker that auto-creates topics would make a 1-partition events topic.
            options["allow_auto_create_topics"] = False
        options.update(producer_options)
        self._options, self._connect_timeout = options, connect_timeout
        if check_topic:
            self._check_topic()
        try:
            self._producer = KafkaProducer(**options)
        except (kafka_errors.NoBrokersAvailable, kafka_errors.KafkaTimeoutError,
                kafka_errors.KafkaConnectionError) as exc:
            raise BrokerUnreachableError(_unreachable_text(self._bootstrap_text, exc)) from exc

    def _admin(self) -> Any:
        from kafka import KafkaAdminClient
        from kafka import errors as kafka_errors

        admin_options = {key: value for key, value in self._options.items()
                         if key in KafkaAdminClient.DEFAULT_CONFIG and key != "client_id"}
        admin_options["request_timeout_ms"] = int(max(self._connect_timeout, 1.0) * 1000)
        try:
            return KafkaAdminClient(client_id="servicewatch-emitter-check", **admin_options)
        except (kafka_errors.NoBrokersAvailable, kafka_errors.KafkaTimeoutError,
                kafka_errors.KafkaConnectionError) as exc:
            raise BrokerUnreachableError(_unreachable_text(self._bootstrap_text, exc)) from exc

    def timestamp_type(self) -> str | None:
        """The topic's ``message.timestamp.type``: ``"CreateTime"`` (records keep the stamp
        they are sent with), ``"LogAppendTime"`` (the broker stamps them on arrival), or
        ``None`` when the broker does not say (Tansu names only what was set at creation)."""
        from kafka import errors as kafka_errors
        from kafka.admin import ConfigResource, ConfigResourceType

        admin = self._admin()
        try:
            found = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, self.topic)],
                                           config_filter="all")
        except kafka_errors.KafkaError:
            return None
        finally:
            admin.close()
        try:
            return found["topic"][self.topic]["message.timestamp.type"]["value"]
        except (KeyError, TypeError):
            return None

    def _check_topic(self) -> None:
        # Asked with an admin client, for all topics: a producer's metadata request for one
        # topic may create it (kafka-python 3.0 does not pass allow_auto_create_topics on, and
        # Tansu creates topics on sight), and a made-up topic would swallow every event.
        from kafka import errors as kafka_errors

        admin = self._admin()
        try:
            topics = set(admin.list_topics())
        except kafka_errors.KafkaError as exc:
            raise BrokerUnreachableError(_unreachable_text(self._bootstrap_text, exc)) from exc
        finally:
            admin.close()
        if self.topic not in topics:
            raise TopicNotFoundError(
                f"topic {self.topic!r} does not exist on the Kafka broker at {self._bootstrap_text}. "
                "Start a servicewatch worker once (it creates its topics), create the topic, or "
                "check the name (--topic / SERVICEWATCH_TOPIC).")

    # -- typed helpers --------------------------------------------------------------------------
    def greeting(self, *, case_id: str, team: str, channel: str, contact_at: datetime | str,
                 event_id: str | None = None, occurred_at: datetime | str | None = None,
                 agent_id: str | None = None, customer_id: str | None = None,
                 source: str | None = None, audience: str | None = None,
                 wait: bool = False) -> Emitted:
        """A customer contact opened and acknowledged at ``occurred_at`` (default now); the
        customer reached out at ``contact_at``."""
        return self._emit("greeting", locals())

    def response(self, *, case_id: str, team: str, channel: str, requested_at: datetime | str,
                 priority: str | None = None, event_id: str | None = None,
                 occurred_at: datetime | str | None = None, agent_id: str | None = None,
                 customer_id: str | None = None, source: str | None = None,
                 audience: str | None = None, wait: bool = False) -> Emitted:
        """A reply at ``occurred_at`` (default now) to a request made at ``requested_at``."""
        return self._emit("response", locals())

    def promise(self, *, case_id: str, team: str, channel: str, promise_id: str,
                due_at: datetime | str | timedelta, kind: str,
                event_id: str | None = None, occurred_at: datetime | str | None = None,
                agent_id: str | None = None, customer_id: str | None = None,
                source: str | None = None, audience: str | None = None,
                wait: bool = False) -> Emitted:
        """A commitment to be kept by ``due_at`` (a datetime, or a timedelta from
        ``occurred_at``); ``kind`` is callback, delivery, resolution, refund, visit or other."""
        return self._emit("promise", locals())

    def delivery(self, *, case_id: str, team: str, channel: str, promise_id: str,
                 event_id: str | None = None, occurred_at: datetime | str | None = None,
                 agent_id: str | None = None, customer_id: str | None = None,
                 source: str | None = None, audience: str | None = None,
                 wait: bool = False) -> Emitted:
        """Promise ``promise_id`` kept at ``occurred_at`` (default now)."""
        return self._emit("delivery", locals())

    def inquiry(self, *, case_id: str, team: str, channel: str, priority: str | None = None,
                event_id: str | None = None, occurred_at: datetime | str | None = None,
                agent_id: str | None = None, customer_id: str | None = None,
                source: str | None = None, audience: str | None = None,
                wait: bool = False) -> Emitted:
        """The customer asked something at ``occurred_at`` (default now) and waits for an answer;
        the next ``response`` on the case answers it."""
        return self._emit("inquiry", locals())

    def promise_revised(self, *, case_id: str, team: str, channel: str, promise_id: str,
                        due_at: datetime | str | timedelta, event_id: str | None = None,
                        occurred_at: datetime | str | None = None, agent_id: str | None = None,
                        customer_id: str | None = None, source: str | None = None,
                        audience: str | None = None, wait: bool = False) -> Emitted:
        """Promise ``promise_id`` renegotiated to the new ``due_at``, before the old one passed."""
        return self._emit("promise_revised", locals())

    def promise_cancelled(self, *, case_id: str, team: str, channel: str, promise_id: str,
                          reason: str | None = None, event_id: str | None = None,
                          occurred_at: datetime | str | None = None, agent_id: str | None = None,
                          customer_id: str | None = None, source: str | None = None,
                          audience: str | None = None, wait: bool = False) -> Emitted:
        """Promise ``promise_id`` withdrawn before its due time."""
        return self._emit("promise_cancelled", locals())

    def feedback(self, *, case_id: str, team: str, channel: str, score: int,
                 event_id: str | None = None, occurred_at: datetime | str | None = None,
                 agent_id: str | None = None, customer_id: str | None = None,
                 source: str | None = None, audience: str | None = None,
                 wait: bool = False) -> Emitted:
        """The customer's satisfaction score, 1 (very dissatisfied) to 5 (very satisfied)."""
        return self._emit("feedback", locals())

    def complaint(self, *, case_id: str, team: str, channel: str, category: str | None = None,
                  event_id: str | None = None, occurred_at: datetime | str | None = None,
                  agent_id: str | None = None, customer_id: str | None = None,
                  source: str | None = None, audience: str | None = None,
                  wait: bool = False) -> Emitted:
        """A customer complaint about the case."""
        return self._emit("complaint", locals())

    def _emit(self, event_type: str, arguments: dict[str, Any]) -> Emitted:
        fields = {name: value for name, value in arguments.items() if name not in ("self", "wait")}
        if fields.get("source") is None:
            fields["source"] = self.source
        return self.send(build_event(event_type, **fields), wait=arguments["wait"])

    # -- sending --------------------------------------------------------------------------------
    def send(self, event: Envelope | Mapping[str, Any] | str | bytes, *,
             timestamp: datetime | float | None = None, wait: bool = False,
             headers: list[tuple[str, bytes]] | None = None, partition: int | None = None) -> Emitted:
        """Validate and send one event: a model, a dict (``source`` filled in when missing) or a
        JSON document. ``timestamp`` sets the Kafka record's timestamp (a datetime, or seconds
        since the epoch); by default the producer's clock stamps it, which is what live systems
        want — backfills pass the event's ``occurred_at``. ``wait=True`` blocks until Kafka
        acknowledged the event (raising EmitError if it did not). ``headers`` go on the record
        as given; ``partition``, when given, should be :meth:`partition_for` the case id, or
        the case leaves its partition."""
        if self._closed:
            raise EmitError("this Emitter is closed")
        if isinstance(event, (str, bytes, bytearray)):
            model = validate_json_event(bytes(event) if isinstance(event, bytearray) else event)
        elif isinstance(event, Mapping):
            data = dict(event)
            if self.source is not None and data.get("source") is None:
                data["source"] = self.source
            model = validate_python_event(data)
        else:
            model = validate_python_event(event)
        key, value = event_record(model)
        timestamp_ms = _timestamp_ms(timestamp)
        from kafka import errors as kafka_errors

        try:
            future = self._producer.send(self.topic, key=key, value=value, timestamp_ms=timestamp_ms,
                                         headers=headers, partition=partition)
        except kafka_errors.KafkaTimeoutError as exc:
            raise EmitError(
                f"Kafka at {self._bootstrap_text} did not take the event within "
                f"{self._producer.config['max_block_ms'] / 1000:g}s (no metadata for topic "
                f"{self.topic!r}): is the broker up and does the topic exist?") from exc
        except kafka_errors.KafkaError as exc:
            raise EmitError(self._explain_failure(exc)) from exc
        future.add_errback(self._record_failure)
        emitted = Emitted(model, future, self)
        if wait:
            emitted.get()
        return emitted

    def partition_for(self, case_id: str) -> int:
        """The partition the case's events go to: murmur2 of the key, as the Java client's and
        kafka-python's default partitioners do. (Blocks for the topic's metadata once.)"""
        from kafka import errors as kafka_errors

        from schemas.partitioning import murmur2_partition

        if self._partitions is None:
            try:
                partitions = self._producer.partitions_for(self.topic)
            except kafka_errors.KafkaError as exc:
                raise EmitError(self._explain_failure(exc)) from exc
            if not partitions:
                raise EmitError(f"Kafka at {self._bootstrap_text} reports no partitions for topic "
                                f"{self.topic!r}: does the topic exist?")
            self._partitions = sorted(partitions)
        key = case_id.encode("utf-8", "surrogatepass")
        return self._partitions[murmur2_partition(key, len(self._partitions))]

    @property
    def failed(self) -> int:
        """Events not written to Kafka since the last flush() (which reports them)."""
        with self._lock:
            return len(self._failures)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every event sent so far is acknowledged; raise EmitError if any was not
        written (all failures since the last flush are reported once)."""
        from kafka import errors as kafka_errors

        try:
            self._producer.flush(timeout=timeout)
        except kafka_errors.KafkaTimeoutError as exc:
            raise EmitError(f"events still unacknowledged after {timeout}s; Kafka at "
                            f"{self._bootstrap_text} may be down") from exc
        with self._lock:
            failures, self._failures = self._failures, []
        if failures:
            raise EmitError(f"{len(failures)} event(s) were not written to Kafka; first error: "
                            + self._explain_failure(failures[0]))

    def close(self, timeout: float | None = 30.0) -> None:
        """Flush, then release the connection. Raises EmitError like flush()."""
        if self._closed:
            return
        self._closed = True
        try:
            self.flush(timeout)
        finally:
            self._producer.close(timeout=timeout)

    def __enter__(self) -> "Emitter":
        return self

    def __exit__(self, exc_type: Any, exc: Any, traceback: Any) -> None:
        if exc_type is None:
            self.close()
        else:  # do not hide the error that is already on its way out
            try:
                self.close()
            except EmitError as error:
                log.warning("while closing after an error: %s", error)

    def _record_failure(self, error: BaseException) -> None:  # the producer's I/O thread
        log.warning("event not written to Kafka topic %s: %s", self.topic, error)
        with self._lock:
            self._failures.append(error)

    def _explain_failure(self, error: BaseException) -> str:
        name = type(error).__name__
        hints = {
            "TopicAuthorizationFailedError": "this client may not write to the topic; ask for "
            "WRITE permission on it",
            "UnknownTopicOrPartitionError": "the topic does not exist; start a servicewatch worker "
            "once or create it",
            "InvalidTimestampError": "the broker refused the record timestamp (brokers refuse "
            "timestamps too far in the future: log.message.timestamp.after.max.ms)",
            "MessageSizeTooLargeError": "the event is larger than the broker accepts",
        }
        hint = next((text for key, text in hints.items() if key in name), None)
        text = f"{name}: {error}" if str(error) else name
        return f"{text} ({hint})" if hint else f"{text} (Kafka at {self._bootstrap_text}, topic {self.topic!r})"


def _timestamp_ms(timestamp: datetime | float | None) -> int | None:
    if timestamp is None:
        return None
    if isinstance(timestamp, datetime):
        if timestamp.utcoffset() is None:
            raise ValueError("timestamp has no time zone; add one (e.g. tzinfo=timezone.utc)")
        return int(round(timestamp.timestamp() * 1000))
    return int(round(float(timestamp) * 1000))


def _bootstrap_list(broker: str) -> list[str]:
    # The product's broker URL form; same parser as the worker (kept local to stay import-light).
    if not isinstance(broker, str) or not broker.strip():
        raise ValueError("broker is empty; expected kafka://host:port or host:port[,host:port]")
    addresses = []
    for item in broker.split(","):
        item = item.strip()
        if item.lower().startswith("kafka://"):
            item = item[len("kafka://"):]
        item = item.rstrip("/")
        host, sep, port = item.rpartition(":")
        if "://" in item or not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"invalid broker address {item!r} in {broker!r}; "
                             "expected kafka://host:port or host:port[,host:port]")
        addresses.append(f"{host}:{int(port)}")
    return addresses


def _probe(bootstrap: list[str], timeout: float, shown: str) -> None:
    """Fail fast and quietly when nothing listens (kafka-python would log an error per retry)."""
    deadline = time.monotonic() + timeout
    while True:
        for address in bootstrap:
            host, _, port = address.rpartition(":")
            try:
                with socket.create_connection((host.strip("[]"), int(port)), timeout=min(timeout, 2.0)):
                    return
            except OSError as exc:
                last = exc
        if time.monotonic() >= deadline:
            raise BrokerUnreachableError(_unreachable_text(shown, last))
        time.sleep(0.2)


def _unreachable_text(shown: str, error: BaseException) -> str:
    return (f"cannot reach a Kafka broker at {shown} ({error}). Is it running, and is the "
            "address right? (kafka://host:port; SERVICEWATCH_BROKER / --broker on the CLI)")

