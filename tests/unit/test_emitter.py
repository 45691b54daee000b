"""The Python emitter without a broker: what it builds, what it refuses (by field), what it sends.

kafka-python's producer and admin client are replaced by fakes that record what they are given;
the one real network check is the fast, quiet failure when nothing listens at the address.
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import datetime, timedelta, timezone

import kafka
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import schemas.emitter as emitter_module
from schemas import EVENT_TYPES, Delivery, Promise, decode_event
from schemas.emitter import (
    BrokerUnreachableError,
    EmitError,
    Emitter,
    InvalidEventError,
    TopicNotFoundError,
    build_event,
    event_record,
)
from streams.embedded_broker import free_port

UTC = timezone.utc
T0 = datetime(2026, 11, 28, 14, 0, tzinfo=UTC)
PROMISE = dict(case_id="case-42", team="billing", channel="phone", promise_id="case-42-callback",
               kind="callback", due_at=T0 + timedelta(hours=1))


# -- fakes ------------------------------------------------------------------------------------------
class FakeFuture:
    def __init__(self, metadata, error=None):
        self.metadata, self.error = metadata, error
        self.is_done = True

    def add_errback(self, callback):
        if self.error is not None:
            callback(self.error)
        return self

    def get(self, timeout=None):
        if self.error is not None:
            raise self.error
        return self.metadata


class FakeProducer:
    DEFAULT_CONFIG = kafka.KafkaProducer.DEFAULT_CONFIG
    instances: list["FakeProducer"] = []
    fail_next: list[Exception] = []

    def __init__(self, **options):
        self.options = options
        self.config = {**self.DEFAULT_CONFIG, **options}
        self.sent: list[dict] = []
        self.flushed = self.closed = 0
        self._lock = threading.Lock()
        FakeProducer.instances.append(self)

    def send(self, topic, key=None, value=None, timestamp_ms=None, **_):
        with self._lock:
            self.sent.append(dict(topic=topic, key=key, value=value, timestamp_ms=timestamp_ms))
            offset = len(self.sent) - 1
        error = FakeProducer.fail_next.pop() if FakeProducer.fail_next else None
        return FakeFuture({"topic": topic, "offset": offset}, error)

    def flush(self, timeout=None):
        self.flushed += 1

    def close(self, timeout=None):
        self.closed += 1


class FakeAdmin:
    DEFAULT_CONFIG = kafka.KafkaAdminClient.DEFAULT_CONFIG
    topics = ["servicewatch.events", "servicewatch.events.dlq"]

    def __init__(self, **options):
        unknown = set(options) - set(self.DEFAULT_CONFIG)
        assert not unknown, f"the admin client would refuse {unknown}"

    def list_topics(self):
        return list(self.topics)

    def close(self):
        pass


@pytest.fixture
def fake_kafka(monkeypatch):
    FakeProducer.instances.clear()
    FakeProducer.fail_next.clear()
    monkeypatch.setattr(kafka, "KafkaProducer", FakeProducer)
    monkeypatch.setattr(kafka, "KafkaAdminClient", FakeAdmin)
    monkeypatch.setattr(emitter_module, "_probe", lambda *args: None)
    return FakeProducer.instances


def sent(emitter: Emitter) -> list[dict]:
    return emitter._producer.sent


# -- building and validating ------------------------------------------------------------------------
def test_event_id_and_occurred_at_are_filled_in():
    before = datetime.now(UTC)
    event = build_event("delivery", case_id="c1", team="billing", channel="phone", promise_id="p1")
    assert uuid.UUID(event.event_id).version == 4
    assert event.occurred_at.utcoffset() == timedelta(0)
    assert before <= event.occurred_at <= datetime.now(UTC)


def test_given_event_id_and_occurred_at_are_kept():
    event = build_event("promise", event_id="crm-row-17", occurred_at=T0, **PROMISE)
    assert (event.event_id, event.occurred_at) == ("crm-row-17", T0)


def test_due_at_as_a_timedelta_is_relative_to_occurred_at():
    event = build_event("promise", occurred_at=T0, **{**PROMISE, "due_at": timedelta(minutes=30)})
    assert event.due_at == T0 + timedelta(minutes=30)


@pytest.mark.parametrize("fields, field, words", [
    ({"due_at": datetime(2026, 11, 28, 15, 0)}, "due_at", "time zone"),
    ({"due_at": "2026-11-28T15:00:00"}, "due_at", "time zone"),
    ({"team": "billing team"}, "team", "letters, digits"),
    ({"kind": "someday"}, "kind", "callback"),
    ({"channel": "pigeon"}, "channel", "phone"),
    ({"promise_id": ""}, "promise_id", "at least 1"),
    ({"case_id": "x" * 129}, "case_id", "128"),
])
def test_a_wrong_field_is_named_in_the_error(fields, field, words):
    with pytest.raises(InvalidEventError) as raised:
        build_event("promise", **{**PROMISE, **fields})
    error = raised.value
    assert error.field == field
    assert f"{field}: " in str(error) and words in str(error)
    assert str(error).startswith("invalid promise event: ")
    assert isinstance(error, ValueError)


def test_every_wrong_field_is_listed():
    with pytest.raises(InvalidEventError) as raised:
        build_event("promise", case_id="c1", team="bad team", channel="phone", kind="x",
                    due_at="tomorrow")
    fields = [error.field for error in raised.value.errors]
    assert set(fields) >= {"team", "kind", "due_at", "promise_id"}


def test_a_customer_time_after_the_event_is_refused_by_name():
    with pytest.raises(InvalidEventError) as raised:
        build_event("greeting", case_id="c1", team="t", channel="chat", occurred_at=T0,
                    contact_at=T0 + timedelta(seconds=1))
    assert raised.value.field == "contact_at"


def test_the_record_is_keyed_by_case_id_and_decodes_as_the_worker_reads_it():
    event = build_event("promise", case_id="  case-42 ", **{k: v for k, v in PROMISE.items() if k != "case_id"})
    key, value = event_record(event)
    assert key == b"case-42"
    decoded = decode_event(value)
    assert decoded == event
    assert b"null" not in value  # unset optional fields are left out, not sent as null
    assert json.loads(value)["due_at"].endswith("Z")


def test_event_record_accepts_a_dict_with_datetimes():
    key, value = event_record({"type": "delivery", "event_id": "e1", "occurred_at": T0,
                               "case_id": "c9", "team": "t", "channel": "sms", "promise_id": "p"})
    assert key == b"c9" and isinstance(decode_event(value), Delivery)


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydantic warns about the unchecked model
def test_event_record_refuses_what_the_worker_would_refuse():
    unchecked = Promise.model_construct(**{**PROMISE, "event_id": "e1", "occurred_at": "yesterday",
                                           "type": "promise"})
    with pytest.raises(InvalidEventError):
        event_record(unchecked)


@settings(max_examples=200, deadline=None)
@given(
    case_id=st.text(st.characters(codec="utf-8"), min_size=1, max_size=40).filter(str.strip),
    team=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,20}", fullmatch=True),
    agent_id=st.none() | st.text(st.characters(codec="utf-8"), max_size=20),
    minutes=st.integers(-10_000, 10_000),
    offset_minutes=st.integers(-14 * 60, 14 * 60),
)
def test_whatever_the_helpers_accept_the_worker_accepts(case_id, team, agent_id, minutes, offset_minutes):
    zone = timezone(timedelta(minutes=offset_minutes))
    try:
        event = build_event("promise", case_id=case_id, team=team, channel="web", agent_id=agent_id,
                            promise_id="p", kind="other", occurred_at=T0.astimezone(zone),
                            due_at=timedelta(minutes=minutes))
    except InvalidEventError as error:
        assert error.errors and all(e.error for e in error.errors)
        return
    key, value = event_record(event)
    decoded = decode_event(value)
    assert decoded == event and key == decoded.case_id.encode()


# -- sending ----------------------------------------------------------------------------------------
def test_producer_defaults_favour_durability(fake_kafka):
    with Emitter("kafka://127.0.0.1:9092", source="crm") as emitter:
        options = emitter._producer.options
    assert options["acks"] == "all"
    assert options["enable_idempotence"] is True
    assert options["allow_auto_create_topics"] is False
    assert options["bootstrap_servers"] == ["127.0.0.1:9092"]
    assert options["retries"] > 0


def test_producer_options_override_the_defaults(fake_kafka):
    with Emitter("h1:9092,kafka://h2:9093", linger_ms=50, security_protocol="SSL") as emitter:
        options = emitter._producer.options
    assert options["linger_ms"] == 50 and options["security_protocol"] == "SSL"
    assert options["bootstrap_servers"] == ["h1:9092", "h2:9093"]


def test_helpers_send_validated_events_keyed_by_case(fake_kafka):
    with Emitter(source="crm") as emitter:
        promise = emitter.promise(**PROMISE)
        delivery = emitter.delivery(case_id="case-42", team="billing", channel="phone",
                                    promise_id="case-42-callback", source="warehouse")
        records = sent(emitter)
    assert [r["key"] for r in records] == [b"case-42", b"case-42"]
    assert {r["topic"] for r in records} == {"servicewatch.events"}
    first, second = (decode_event(r["value"]) for r in records)
    assert first == promise.event and second == delivery.event
    assert first.source == "crm" and second.source == "warehouse"
    assert records[0]["timestamp_ms"] is None  # the producer's clock stamps live events


def test_a_helper_for_every_event_type(fake_kafka):
    with Emitter() as emitter:
        emitter.greeting(case_id="c", team="t", channel="chat", contact_at=T0, occurred_at=T0)
        emitter.response(case_id="c", team="t", channel="chat", requested_at=T0, priority="high")
        emitter.promise(case_id="c", team="t", channel="chat", promise_id="p", kind="refund",
                        due_at=T0 + timedelta(days=1))
        emitter.delivery(case_id="c", team="t", channel="chat", promise_id="p")
        emitter.inquiry(case_id="c", team="t", channel="chat", priority="urgent")
        emitter.promise_revised(case_id="c", team="t", channel="chat", promise_id="p",
                                due_at=T0 + timedelta(days=2))
        emitter.promise_cancelled(case_id="c", team="t", channel="chat", promise_id="p",
                                  reason="no longer needed")
        emitter.feedback(case_id="c", team="t", channel="chat", score=4)
        emitter.complaint(case_id="c", team="t", channel="chat", category="waiting time")
        bodies = [json.loads(r["value"]) for r in sent(emitter)]
    assert [body["type"] for body in bodies] == list(EVENT_TYPES)
    assert bodies[7]["score"] == 4 and bodies[5]["due_at"].startswith("2026")
    with Emitter() as emitter, pytest.raises(InvalidEventError, match="score"):
        emitter.feedback(case_id="c", team="t", channel="chat", score=6)


def test_send_accepts_a_model_a_dict_or_json(fake_kafka):
    model = build_event("delivery", case_id="c1", team="t", channel="phone", promise_id="p1")
    as_dict = {"type": "delivery", "event_id": "e2", "occurred_at": T0, "case_id": "c2",
               "team": "t", "channel": "phone", "promise_id": "p2"}
    as_json = json.dumps({**as_dict, "event_id": "e3", "case_id": "c3", "occurred_at": T0.isoformat()})
    with Emitter(source="crm") as emitter:
        emitter.send(model)
        emitter.send(as_dict)
        emitter.send(as_json)
        emitter.send(as_json.encode())
        records = sent(emitter)
    assert [r["key"] for r in records] == [b"c1", b"c2", b"c3", b"c3"]
    assert decode_event(records[0]["value"]).source is None  # a model is sent as built
    assert decode_event(records[1]["value"]).source == "crm"  # a dict gets the default source


def test_an_invalid_event_is_refused_before_anything_is_sent(fake_kafka):
    with Emitter() as emitter:
        with pytest.raises(InvalidEventError) as raised:
            emitter.send({"type": "promise", "case_id": "c1", "team": "t", "channel": "phone",
                          "event_id": "e", "occurred_at": T0, "promise_id": "p", "kind": "callback",
                          "due_at": "2026-11-28T15:00:00"})
        assert raised.value.field == "due_at"
        with pytest.raises(InvalidEventError) as raised:
            emitter.promise(**{**PROMISE, "team": "not a label"})
        assert raised.value.field == "team"
        with pytest.raises(InvalidEventError):
            emitter.send('{"type": "delivery"')
        with pytest.raises(InvalidEventError):
            emitter.send(["not", "an", "event"])
        assert sent(emitter) == []


def test_a_backfill_timestamp_stamps_the_record(fake_kafka):
    with Emitter() as emitter:
        emitter.promise(occurred_at=T0, **PROMISE)
        event = emitter.promise(occurred_at=T0, **PROMISE).event
        emitter.send(event, timestamp=event.occurred_at)
        emitter.send(event, timestamp=1_700_000_000.5)
        with pytest.raises(ValueError, match="time zone"):
            emitter.send(event, timestamp=datetime(2026, 1, 1))
        stamps = [r["timestamp_ms"] for r in sent(emitter)]
    assert stamps[2:] == [int(T0.timestamp() * 1000), 1_700_000_000_500]


def test_wait_returns_the_acknowledgement(fake_kafka):
    with Emitter() as emitter:
        emitted = emitter.delivery(case_id="c", team="t", channel="web", promise_id="p", wait=True)
        assert emitted.done() and emitted.get()["offset"] == 0
        assert emitted.event_id == emitted.event.event_id


def test_a_failed_write_is_reported_by_flush_once(fake_kafka):
    FakeProducer.fail_next.append(kafka.errors.TopicAuthorizationFailedError())
    emitter = Emitter()
    emitted = emitter.delivery(case_id="c", team="t", channel="web", promise_id="p")
    assert emitter.failed == 1
    with pytest.raises(EmitError, match="1 event.*not written.*WRITE permission"):
        emitter.flush()
    emitter.flush()  # reported once
    with pytest.raises(EmitError, match="TopicAuthorizationFailed"):
        emitted.get()
    emitter.close()


def test_wait_raises_when_the_write_failed(fake_kafka):
    FakeProducer.fail_next.append(kafka.errors.KafkaTimeoutError("no ack"))
    with pytest.raises(EmitError, match="KafkaTimeoutError"):
        with Emitter() as emitter:
            emitter.delivery(case_id="c", team="t", channel="web", promise_id="p", wait=True)


def test_close_flushes_once_and_sending_afterwards_fails(fake_kafka):
    emitter = Emitter()
    emitter.close()
    emitter.close()
    assert emitter._producer.closed == 1 and emitter._producer.flushed == 1
    with pytest.raises(EmitError, match="closed"):
        emitter.delivery(case_id="c", team="t", channel="web", promise_id="p")


def test_an_error_inside_the_with_block_is_not_hidden_by_a_failed_flush(fake_kafka):
    FakeProducer.fail_next.append(kafka.errors.KafkaTimeoutError())
    with pytest.raises(ZeroDivisionError):
        with Emitter() as emitter:
            emitter.delivery(case_id="c", team="t", channel="web", promise_id="p")
            1 / 0


def test_one_emitter_is_shared_by_threads(fake_kafka):
    with Emitter() as emitter:
        def work(n):
            for i in range(50):
                emitter.delivery(case_id=f"case-{n}", team="t", channel="web", promise_id=f"p{i}")
        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        records = sent(emitter)
    assert len(records) == 400
    assert len({decode_event(r["value"]).event_id for r in records}) == 400


def test_a_missing_topic_is_an_error_with_advice(fake_kafka):
    with pytest.raises(TopicNotFoundError, match="servicewatch worker once"):
        Emitter(topic="servicewatch.evnets")
    assert fake_kafka == []  # no producer was opened: it could have created the topic
    Emitter(topic="anything", check_topic=False).close()


@pytest.mark.parametrize("broker", ["", "kafka://", "http://host:9092", "host", "host:port", "host:0"])
def test_a_malformed_broker_address_is_a_value_error(fake_kafka, broker):
    with pytest.raises(ValueError, match="host:port"):
        Emitter(broker)


def test_an_unreachable_broker_fails_fast_and_says_so():
    port = free_port()  # nothing listens there
    with pytest.raises(BrokerUnreachableError, match=f"cannot reach a Kafka broker at 127.0.0.1:{port}"):
        Emitter(f"kafka://127.0.0.1:{port}", connect_timeout=0.5)
