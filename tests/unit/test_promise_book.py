"""The promise book's outcome rules, with time passed in: no Kafka, no sleeping."""

import pytest

from streams.core.clock import PartitionClock
from streams.core.dedup import RecentEventIds
from streams.core.promises import (
    MISSED,
    ON_TIME,
    LateDelivery,
    PromiseBook,
    PromiseKept,
    PromiseMissed,
    PromiseRecord,
)

DUE = 1_000.0
GRACE = 2.0


def promise(promise_id="p1", due_at=DUE, team="billing", kind="callback"):
    return PromiseRecord(
        promise_id=promise_id, case_id="c1", team=team, kind=kind,
        audience="external", channel="phone", due_at=due_at,
    )


@pytest.fixture
def book():
    return PromiseBook(grace_seconds=GRACE)


def test_delivery_before_due_is_on_time_with_its_margin(book):
    book.make(promise(), known_at=900)
    changes = book.deliver("p1", "c1", delivered_at=990, known_at=990.5)
    assert changes == [PromiseKept(book.get("p1"), margin_seconds=10)]
    assert book.totals.outcomes[("billing", "callback", "external", ON_TIME)] == 1
    assert book.open_count[("billing", "callback", "external")] == 0


def test_delivery_exactly_at_due_is_on_time(book):
    book.make(promise(), known_at=900)
    [kept] = book.deliver("p1", "c1", delivered_at=DUE, known_at=DUE + GRACE)
    assert isinstance(kept, PromiseKept) and kept.margin_seconds == 0


def test_open_promise_is_not_missed_before_due_plus_grace(book):
    book.make(promise(), known_at=900)
    assert book.expire(now=DUE + GRACE) == []
    assert book.open_count[("billing", "callback", "external")] == 1


def test_missed_at_the_deadline_without_any_delivery(book):
    book.make(promise(), known_at=900)
    [missed] = book.expire(now=DUE + GRACE + 0.001)
    assert isinstance(missed, PromiseMissed)
    assert missed.record.ended_as == MISSED
    assert book.overdue_count[("billing", "callback", "external")] == 1
    assert book.totals.outcomes[("billing", "callback", "external", MISSED)] == 1


def test_missed_then_delivered_late_counts_the_late_delivery_once(book):
    book.make(promise(), known_at=900)
    book.expire(now=DUE + 10)
    [late] = book.deliver("p1", "c1", delivered_at=DUE + 60, known_at=DUE + 60)
    assert late == LateDelivery(book.get("p1"), lateness_seconds=60, reported_late=False)
    assert book.overdue_count[("billing", "callback", "external")] == 0
    assert book.totals.outcomes[("billing", "callback", "external", MISSED)] == 1
    assert book.totals.late_deliveries[("billing", "callback", "external")] == 1
    assert book.deliver("p1", "c1", delivered_at=DUE + 61, known_at=DUE + 61) == []


def test_late_delivery_read_before_the_sweep_still_ends_missed(book):
    """Whether the sweep or the late delivery comes first, the outcome is the same."""
    book.make(promise(), known_at=900)
    changes = book.deliver("p1", "c1", delivered_at=DUE + 5, known_at=DUE + 5)
    assert [type(c) for c in changes] == [PromiseMissed, LateDelivery]
    assert book.expire(now=DUE + 100) == []
    assert book.totals.outcomes[("billing", "callback", "external", MISSED)] == 1
    assert book.overdue_count[("billing", "callback", "external")] == 0


def test_delivery_in_time_but_known_after_grace_is_missed_and_reported_late(book):
    book.make(promise(), known_at=900)
    changes = book.deliver("p1", "c1", delivered_at=DUE - 1, known_at=DUE + GRACE + 1)
    assert isinstance(changes[0], PromiseMissed)
    assert changes[1].reported_late is True and changes[1].lateness_seconds == 0


def test_duplicate_promise_and_duplicate_delivery_change_nothing(book):
    book.make(promise(), known_at=900)
    assert book.make(promise(), known_at=901) == []
    book.deliver("p1", "c1", delivered_at=990, known_at=990)
    assert book.deliver("p1", "c1", delivered_at=990, known_at=990) == []
    assert sum(book.totals.outcomes.values()) == 1
    assert book.expire(now=DUE + 100) == []


def test_delivery_arriving_before_its_promise_is_applied_when_the_promise_comes(book):
    assert book.deliver("p1", "c1", delivered_at=950, known_at=950) == []
    [kept] = book.make(promise(), known_at=951)
    assert isinstance(kept, PromiseKept) and kept.margin_seconds == 50
    assert book.open_count[("billing", "callback", "external")] == 0
    assert book.expire(now=DUE + 100) == []


def test_sweep_only_touches_expired_promises_in_due_order(book):
    for i, due in enumerate([30.0, 10.0, 20.0, 40.0]):
        book.make(promise(f"p{i}", due_at=due), known_at=0)
    missed = book.expire(now=25.0)
    assert [c.record.due_at for c in missed] == [10.0, 20.0]


def test_restore_rebuilds_open_overdue_and_totals(book):
    book.make(promise("open", due_at=5_000), known_at=0)
    book.make(promise("overdue", due_at=100), known_at=0)
    book.make(promise("kept", due_at=200), known_at=0)
    book.deliver("kept", "c1", delivered_at=150, known_at=150)
    book.expire(now=300)
    upserts, deleted, archive = book.take_dirty()
    assert deleted == [] and archive is None  # nothing forgotten yet: the records carry the totals
    restored = PromiseBook.restore(
        [PromiseRecord.from_dict(r.to_dict()) for r in upserts], archive, grace_seconds=GRACE
    )
    labels = ("billing", "callback", "external")
    assert restored.open_count[labels] == 1
    assert restored.overdue_count[labels] == 1
    assert restored.totals.outcomes == book.totals.outcomes
    [missed] = restored.expire(now=6_000)
    assert missed.record.promise_id == "open"


def test_ended_promises_are_forgotten_after_retention_and_still_counted():
    book = PromiseBook(grace_seconds=GRACE, retention_seconds=100)
    book.make(promise(due_at=10), known_at=0)
    book.deliver("p1", "c1", delivered_at=5, known_at=5)
    book.make(promise("p2", due_at=500), known_at=0)
    records = {r.promise_id: r for r in book.take_dirty()[0]}
    book.expire(now=200)
    assert book.get("p1") is None
    _, deleted, archive = book.take_dirty()
    assert deleted == ["p1"] and archive.archived_through == 110
    labels = ("billing", "callback", "external", ON_TIME)
    # Restored from the archive and the records that remain, the count is unchanged ...
    assert PromiseBook.restore([records["p2"]], archive, retention_seconds=100).totals.outcomes[labels] == 1
    # ... and a crash between writing the archive and deleting p1 does not count p1 twice.
    assert PromiseBook.restore(records.values(), archive, retention_seconds=100).totals.outcomes[labels] == 1


def test_partition_clock_takes_the_later_of_records_and_caught_up_fetches():
    clock = PartitionClock()
    assert clock.now() is None
    clock.observe(100)
    clock.observe(90)  # out of order records never move time back
    assert clock.now() == 100
    clock.caught_up(at=150)
    assert clock.now() == 150
    clock.observe(120)
    assert clock.now() == 150


def test_a_held_partition_clock_moves_only_with_records_until_the_hold_ends():
    clock = PartitionClock()
    clock.hold(until=500)
    clock.observe(100)
    clock.caught_up(at=499)  # a backfill may still write older records: no jump
    assert clock.now() == 100
    clock.observe(120)
    assert clock.now() == 120
    clock.caught_up(at=500)
    assert clock.now() == 500


def test_a_hold_sets_aside_the_caught_up_time_from_before_the_backfill():
    clock = PartitionClock()
    clock.caught_up(at=400)  # the empty topic, caught up, before the backfill starts
    clock.hold(until=500)
    clock.observe(100)
    assert clock.now() == 100
    clock.caught_up(at=600)
    assert clock.now() == 600


def test_a_record_without_a_hold_ends_it():
    clock = PartitionClock()
    clock.hold(until=500)
    clock.observe(100)
    clock.hold(None)
    clock.caught_up(at=150)
    assert clock.now() == 150


def test_recent_event_ids_forget_the_oldest_beyond_capacity():
    seen = RecentEventIds(capacity=2)
    for event_id in ("a", "b", "c"):
        seen.add(event_id)
    assert "a" not in seen and "b" in seen and "c" in seen and len(seen) == 2


def test_due_by_counts_open_promises_due_soon_and_ignores_ended_ones(book):
    for i, due in enumerate([50.0, 10.0, 30.0, 70.0, 20.0, 90.0]):
        book.make(promise(f"p{i}", due_at=due, kind="visit" if due == 30.0 else "callback"), known_at=0)
    book.deliver("p4", "c1", delivered_at=15, known_at=15)  # due 20, kept
    found = book.due_by(50.0)
    assert found == {("billing", "callback", "external"): 2, ("billing", "visit", "external"): 1}
    assert book.due_by(5.0) == {}
