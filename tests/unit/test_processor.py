"""The processor and partition state, driven without Kafka.

The tables here are stand-ins for Faust tables with the two members servicewatch
uses (``data`` and ``send_changelog``); what is under test is the processor and
the state it writes, including that a changelog replay restores it exactly.
"""

import json
import time
import weakref
from datetime import datetime, timedelta, timezone

from prometheus_client import CollectorRegistry

from schemas.replay_hold import hold_header
from streams.collector import PromiseStateCollector
from streams.metrics import Instruments, TeamLabels
from streams.policy import Policy
from streams.processor import EventProcessor
from streams.state import PartitionStates

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)


class ChangelogTable:
    def __init__(self):
        self.data = {}
        self.changelog = []  # (partition, key, value) in send order

    def send_changelog(self, partition, key, value, value_serializer=None):
        self.changelog.append((partition, key, value))

    def replayed(self, partition):
        """A fresh table rebuilt from this table's changelog for one partition."""
        table = ChangelogTable()
        for p, key, value in self.changelog:
            if p != partition:
                continue
            if value is None:
                table.data.pop(key, None)
            else:
                table.data[key] = json.loads(json.dumps(value))  # as the JSON codec would
        return table


def make_worker(tables=None, max_teams=50, policy=None):
    tables = tables or (ChangelogTable(), ChangelogTable(), ChangelogTable())
    states = PartitionStates(*tables, grace_seconds=2.0)
    registry = CollectorRegistry()
    instruments = Instruments(registry, TeamLabels(max_teams))
    registry.register(PromiseStateCollector(states.books, instruments, states.inquiry_books))
    policy = policy or Policy.default(at_risk_seconds=60)
    return EventProcessor(states, instruments, policy), registry, tables


def event(event_type, event_id, case_id="c1", at=NOW, **fields):
    body = dict(event_id=event_id, type=event_type, occurred_at=at.isoformat(),
                case_id=case_id, team="billing", channel="phone", **fields)
    return json.dumps(body).encode()


# Per processor and partition, the offset the next fed record gets: records fed in several
# calls follow each other in the partition, as in Kafka.
_next_offsets: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def feed(processor, records, partition=0, first_offset=None):
    """Process ``records`` in order; ``first_offset`` reads them again from an earlier offset."""
    offsets = _next_offsets.setdefault(processor, {})
    start = offsets.get(partition, 0) if first_offset is None else first_offset
    rejections = []
    for offset, (known_at, key, value) in enumerate(records, start):
        rejection = processor.process(partition, offset, known_at.timestamp(), key, value)
        if rejection:
            rejections.append(rejection)
    offsets[partition] = max(offsets.get(partition, 0), start + len(records))
    processor.states.send_pending()  # as the sweep tick after them would
    return rejections


def sample(registry, name, **labels):
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_outcomes_duplicates_and_rejections_reach_the_metrics():
    processor, registry, _ = make_worker()
    due = (NOW + timedelta(minutes=5)).isoformat()
    rejections = feed(processor, [
        (NOW, b"c1", event("promise", "e1", promise_id="p1", due_at=due, kind="callback")),
        (NOW, b"c1", event("delivery", "e2", promise_id="p1")),
        (NOW, b"c1", event("delivery", "e2", promise_id="p1")),  # repeated event id
        (NOW, b"other", event("delivery", "e3", promise_id="p1")),
        (NOW, b"c1", b"{oops"),
    ])
    assert [r.reason for r in rejections] == ["key_mismatch", "invalid_json"]
    labels = dict(team="billing", kind="callback", audience="external")
    assert sample(registry, "servicewatch_promise_outcomes_total", outcome="on_time", **labels) == 1
    assert sample(registry, "servicewatch_promise_outcomes_total", outcome="missed", **labels) == 0
    assert sample(registry, "servicewatch_events_duplicate_total") == 1
    assert sample(registry, "servicewatch_events_total", type="delivery") == 1
    assert sample(registry, "servicewatch_delivery_margin_seconds_count", **labels) == 1


def test_sweep_declares_the_miss_once_the_partition_clock_passes_due_plus_grace():
    processor, registry, _ = make_worker()
    due = NOW + timedelta(seconds=10)
    feed(processor, [(NOW, b"c1", event("promise", "e1", promise_id="p1", due_at=due.isoformat(), kind="refund"))])
    state = processor.states.get(0)
    labels = dict(team="billing", kind="refund", audience="external")
    state.clock.caught_up(at=(due + timedelta(seconds=2)).timestamp())  # exactly due + grace
    processor.sweep(state)
    assert sample(registry, "servicewatch_promise_outcomes_total", outcome="missed", **labels) == 0
    state.clock.caught_up(at=(due + timedelta(seconds=2.5)).timestamp())
    processor.sweep(state)
    processor.sweep(state)
    assert sample(registry, "servicewatch_promise_outcomes_total", outcome="missed", **labels) == 1
    assert sample(registry, "servicewatch_promises_overdue", **labels) == 1


# History three hours old: a promise due an hour in, delivered 20 minutes early.
HISTORY = NOW - timedelta(hours=3)
VISIT = dict(team="billing", kind="visit", audience="external")


def backfill_promise(processor):
    """Process the history's promise as ``servicewatch replay`` sends it: held."""
    due = HISTORY + timedelta(minutes=60)
    processor.process(0, 0, HISTORY.timestamp(), b"c1", event(
        "promise", "e1", at=HISTORY, promise_id="p1", due_at=due.isoformat(), kind="visit"),
        [hold_header(NOW.timestamp() + 30)])


def catch_up_now_then_deliver(processor):
    """The worker finds the partition caught up (now) before the delivery arrives."""
    state = processor.states.get(0)
    state.clock.caught_up(at=NOW.timestamp())
    processor.sweep(state)
    delivered = HISTORY + timedelta(minutes=40)
    processor.process(0, 1, delivered.timestamp(), b"c1", event("delivery", "e2", at=delivered, promise_id="p1"))
    processor.sweep(state)


def test_a_backfill_caught_up_between_a_promise_and_its_delivery_keeps_the_promise():
    processor, registry, _ = make_worker()
    processor.states.get(0).clock.caught_up(at=NOW.timestamp() - 5)  # the empty topic, caught up
    backfill_promise(processor)
    catch_up_now_then_deliver(processor)
    assert sample(registry, "servicewatch_promise_outcomes_total", outcome="missed", **VISIT) == 0
    assert sample(registry, "servicewatch_promise_outcomes_total", outcome="on_time", **VISIT) == 1


def test_a_backfill_hold_survives_a_restart_between_a_promise_and_its_delivery():
    processor, _, tables = make_worker()
    backfill_promise(processor)
    processor.states.send_pending()  # as before the commit that covers the promise
    restarted, registry, restarted_tables = make_worker(tuple(t.replayed(0) for t in tables))
    catch_up_now_then_deliver(restarted)  # committed to the end: caught up at once
    assert sample(registry, "servicewatch_promise_outcomes_total", outcome="missed", **VISIT) == 0
    assert sample(registry, "servicewatch_promise_outcomes_total", outcome="on_time", **VISIT) == 1
    # The last record held nothing: the hold is over, and so is the stored one.
    restarted.states.send_pending()
    assert restarted.states.get(0).clock.held_until is None
    again, _, _ = make_worker(tuple(t.replayed(0) for t in restarted_tables))
    assert again.states.get(0).clock.held_until is None


def test_a_hold_far_ahead_holds_a_day_at_most():
    processor, _, _ = make_worker()
    processor.process(0, 0, NOW.timestamp(), b"c1", event("greeting", "g1", contact_at=NOW.isoformat()),
                      [hold_header(4_000_000_000)])
    assert processor.states.get(0).clock.held_until <= time.time() + 86_400 + 1


def test_a_restarted_worker_restores_state_from_the_changelog_and_counts_nothing_twice():
    processor, registry, tables = make_worker()
    due = NOW + timedelta(seconds=30)
    records = [
        (NOW, b"c1", event("promise", "e1", promise_id="p1", due_at=due.isoformat(), kind="visit")),
        (NOW, b"c2", event("promise", "e2", case_id="c2", promise_id="p2", due_at=due.isoformat(), kind="visit")),
        (NOW + timedelta(seconds=5), b"c1", event("delivery", "e3", promise_id="p1", at=NOW + timedelta(seconds=5))),
        (NOW, b"c1", event("greeting", "e4", contact_at=NOW.isoformat())),
    ]
    feed(processor, records)
    processor.sweep(processor.states.get(0))

    restarted, registry2, _ = make_worker(tuple(t.replayed(0) for t in tables))
    # After a crash the uncommitted records are delivered again.
    feed(restarted, records)
    labels = dict(team="billing", kind="visit", audience="external")
    assert sample(registry2, "servicewatch_promise_outcomes_total", outcome="on_time", **labels) == 1
    assert sample(registry2, "servicewatch_promises_open", **labels) == 1
    # Every id survives the restart: nothing is counted or observed twice.
    assert sample(registry2, "servicewatch_events_duplicate_total") == 4
    assert sample(registry2, "servicewatch_greeting_seconds_count", channel="phone", **{
        "team": "billing", "audience": "external"}) == 0
    state = restarted.states.get(0)
    state.clock.caught_up(at=(due + timedelta(seconds=3)).timestamp())
    restarted.sweep(state)
    assert sample(registry2, "servicewatch_promise_outcomes_total", outcome="missed", **labels) == 1


def test_teams_beyond_the_limit_share_the_other_label():
    processor, registry, _ = make_worker(max_teams=2)
    for i, team in enumerate(["a", "b", "c", "d"]):
        body = json.loads(event("greeting", f"g{i}", contact_at=NOW.isoformat()))
        body["team"] = team
        feed(processor, [(NOW, b"c1", json.dumps(body).encode())])
    count = dict(channel="phone", audience="external")
    assert sample(registry, "servicewatch_greeting_seconds_count", team="a", **count) == 1
    assert sample(registry, "servicewatch_greeting_seconds_count", team="other", **count) == 2
    assert sample(registry, "servicewatch_greeting_seconds_count", team="c", **count) == 0


def test_every_series_of_a_new_team_exists_at_zero():
    processor, registry, _ = make_worker()
    feed(processor, [(NOW, b"c1", event("greeting", "g1", contact_at=NOW.isoformat()))])
    for kind in ("callback", "delivery", "resolution", "refund", "visit", "other"):
        for outcome in ("on_time", "missed"):
            assert registry.get_sample_value(
                "servicewatch_promise_outcomes_total",
                dict(team="billing", kind=kind, audience="internal", outcome=outcome),
            ) == 0


def test_open_promises_due_within_the_at_risk_window_are_at_risk():
    processor, registry, _ = make_worker()
    feed(processor, [
        (NOW, b"c1", event("promise", "e1", promise_id="soon", kind="callback",
                           due_at=(NOW + timedelta(seconds=30)).isoformat())),
        (NOW, b"c1", event("promise", "e2", promise_id="later", kind="callback",
                           due_at=(NOW + timedelta(minutes=10)).isoformat())),
    ])
    labels = dict(team="billing", kind="callback", audience="external")
    assert sample(registry, "servicewatch_promises_at_risk", **labels) == 0  # until a sweep
    processor.sweep(processor.states.get(0))
    assert sample(registry, "servicewatch_promises_at_risk", **labels) == 1
    assert sample(registry, "servicewatch_promises_open", **labels) == 2
