"""Renegotiated, cancelled and at-risk promises in the promise book, with time passed in."""

import pytest

from streams.core.promises import (
    CANCELLED,
    MISSED,
    ON_TIME,
    LateDelivery,
    PromiseAtRisk,
    PromiseBook,
    PromiseCancelled,
    PromiseKept,
    PromiseMissed,
    PromiseRecord,
    PromiseRevised,
)

DUE = 1_000.0
GRACE = 2.0
LABELS = ("billing", "callback", "external")


def promise(promise_id="p1", due_at=DUE, at_risk_at=None):
    return PromiseRecord(
        promise_id=promise_id, case_id="c1", team="billing", kind="callback",
        audience="external", channel="phone", due_at=due_at, made_at=100.0, at_risk_at=at_risk_at,
    )


@pytest.fixture
def book():
    return PromiseBook(grace_seconds=GRACE)


def restored(book):
    """The book as a restart would rebuild it from what was persisted."""
    upserts, _, archive = book.take_dirty()
    return PromiseBook.restore([PromiseRecord.from_dict(r.to_dict()) for r in book.records()],
                               archive, grace_seconds=GRACE)


# -- revisions ----------------------------------------------------------------------------------
def test_a_revision_moves_the_due_time_and_counts_a_renegotiation(book):
    book.make(promise(), known_at=900)
    [revised] = book.revise("p1", due_at=2_000.0, known_at=950)
    assert isinstance(revised, PromiseRevised) and revised.previous_due_at == DUE
    assert book.totals.revisions[LABELS] == 1
    assert book.expire(now=DUE + GRACE + 10) == []  # the old deadline no longer counts
    [kept] = book.deliver("p1", "c1", delivered_at=1_500.0, known_at=1_500.0)
    assert isinstance(kept, PromiseKept) and kept.margin_seconds == 500.0
    assert book.totals.outcomes[(*LABELS, ON_TIME)] == 1


def test_the_outcome_is_judged_on_the_latest_agreed_time(book):
    book.make(promise(), known_at=900)
    book.revise("p1", due_at=2_000.0, known_at=950)
    book.revise("p1", due_at=1_200.0, known_at=960)  # brought forward again
    assert book.totals.revisions[LABELS] == 2
    [missed] = book.expire(now=1_200.0 + GRACE + 0.5)
    assert isinstance(missed, PromiseMissed)
    assert book.get("p1").ended_as == MISSED


def test_a_revision_known_after_the_deadline_changes_nothing(book):
    book.make(promise(), known_at=900)
    assert book.revise("p1", due_at=5_000.0, known_at=DUE + GRACE + 0.1) == []
    assert book.totals.revisions[LABELS] == 0
    [missed] = book.expire(now=DUE + GRACE + 0.2)
    assert isinstance(missed, PromiseMissed)


def test_a_revision_of_an_ended_or_unknown_promise_changes_nothing(book):
    assert book.revise("nobody", due_at=5_000.0, known_at=10) == []
    book.make(promise(), known_at=900)
    book.deliver("p1", "c1", delivered_at=950, known_at=950)
    assert book.revise("p1", due_at=5_000.0, known_at=960) == []
    assert book.get("p1").due_at == DUE and book.totals.revisions[LABELS] == 0


def test_a_late_delivery_waiting_for_the_deadline_is_kept_by_a_revision_that_covers_it(book):
    book.make(promise(), known_at=900)
    assert book.deliver("p1", "c1", delivered_at=DUE + 1, known_at=DUE + 1) == []  # late, not final
    changes = book.revise("p1", due_at=DUE + 60, known_at=DUE + 1.5)
    assert [type(c) for c in changes] == [PromiseRevised, PromiseKept]
    assert book.get("p1").ended_as == ON_TIME


def test_revisions_survive_a_restart_and_are_archived_with_the_record(book):
    book.make(promise(), known_at=900)
    book.revise("p1", due_at=1_100.0, known_at=950)
    again = restored(book)
    assert again.totals.revisions[LABELS] == 1
    [missed] = again.expire(now=1_100.0 + GRACE + 1)
    assert missed.record.due_at == 1_100.0
    again.expire(now=1_100.0 + again.retention + 1)  # forgotten: counted in the archive
    assert again.get("p1") is None
    assert again.archive.revisions[LABELS] == 1 and again.totals.revisions[LABELS] == 1
    assert restored(again).totals.revisions[LABELS] == 1


# -- cancellations ------------------------------------------------------------------------------
def test_a_cancellation_before_the_due_time_takes_the_promise_out_of_the_count(book):
    book.make(promise(), known_at=900)
    [cancelled] = book.cancel("p1", cancelled_at=950, known_at=950)
    assert isinstance(cancelled, PromiseCancelled)
    assert book.open_count[LABELS] == 0
    assert book.totals.cancelled[LABELS] == 1
    assert sum(book.totals.outcomes.values()) == 0
    assert book.expire(now=DUE + 100) == []
    assert book.deliver("p1", "c1", delivered_at=DUE + 50, known_at=DUE + 50) == []
    assert book.totals.late_deliveries[LABELS] == 0 and book.overdue_count[LABELS] == 0


def test_a_cancellation_after_the_due_time_changes_nothing(book):
    book.make(promise(), known_at=900)
    assert book.cancel("p1", cancelled_at=DUE + 1, known_at=DUE + 1) == []
    [missed] = book.expire(now=DUE + GRACE + 1)
    assert isinstance(missed, PromiseMissed)


def test_a_cancellation_does_not_undo_a_kept_promise(book):
    book.make(promise(), known_at=900)
    book.deliver("p1", "c1", delivered_at=950, known_at=950)
    assert book.cancel("p1", cancelled_at=960, known_at=960) == []
    assert book.get("p1").ended_as == ON_TIME


def test_a_cancelled_promise_stays_cancelled_after_a_restart_and_after_retention(book):
    book.make(promise(), known_at=900)
    book.cancel("p1", cancelled_at=950, known_at=950)
    again = restored(book)
    assert again.get("p1").ended_as == CANCELLED
    assert again.totals.cancelled[LABELS] == 1 and again.open_count[LABELS] == 0
    again.expire(now=DUE + again.retention + 1)
    assert again.get("p1") is None and again.totals.cancelled[LABELS] == 1


# -- at risk ------------------------------------------------------------------------------------
def test_an_open_promise_is_flagged_at_risk_once_when_the_partition_time_reaches_its_warning(book):
    book.make(promise(at_risk_at=800.0), known_at=100)
    assert book.expire(now=799.0) == []
    [warning] = book.expire(now=800.0)
    assert isinstance(warning, PromiseAtRisk) and warning.declared_at == 800.0
    assert book.at_risk_count[LABELS] == 1 and book.at_risk_ids == {"p1"}
    assert book.expire(now=850.0) == []  # once
    assert book.expire(now=850.0) == []
    assert book.take_dirty()[0][0].warned  # persisted: a restart does not warn again
    assert restored_after_warning_has_no_new_warning(book)


def restored_after_warning_has_no_new_warning(book):
    again = PromiseBook.restore([PromiseRecord.from_dict(r.to_dict()) for r in book.records()],
                                grace_seconds=GRACE)
    return again.expire(now=900.0) == [] and again.at_risk_count[LABELS] == 1


def test_the_at_risk_state_ends_with_the_promise(book):
    book.make(promise(at_risk_at=800.0), known_at=100)
    book.expire(now=800.0)
    book.deliver("p1", "c1", delivered_at=900, known_at=900)
    assert book.at_risk_count[LABELS] == 0 and book.at_risk_ids == set()


def test_a_revision_clears_the_warning_and_schedules_one_for_the_new_due_time(book):
    book.make(promise(at_risk_at=800.0), known_at=100)
    book.expire(now=800.0)
    book.revise("p1", due_at=3_000.0, known_at=810, at_risk_at=2_800.0)
    assert book.at_risk_count[LABELS] == 0
    assert book.expire(now=2_799.0) == []
    [warning] = book.expire(now=2_800.0)
    assert isinstance(warning, PromiseAtRisk) and warning.record.due_at == 3_000.0


def test_a_promise_already_inside_its_warning_window_is_flagged_at_the_next_sweep(book):
    book.make(promise(at_risk_at=800.0), known_at=900)
    changes = book.expire(now=900.0)
    assert [type(c) for c in changes] == [PromiseAtRisk]


def test_a_missed_promise_is_overdue_in_the_worklist_until_delivered(book):
    book.make(promise(), known_at=100)
    book.expire(now=DUE + GRACE + 1)
    assert book.overdue_ids == {"p1"}
    [late] = book.deliver("p1", "c1", delivered_at=DUE + 30, known_at=DUE + 30)
    assert isinstance(late, LateDelivery)
    assert book.overdue_ids == set()
