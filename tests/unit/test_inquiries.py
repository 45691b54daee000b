"""Customers waiting for an answer: response deadlines judged while the customer waits."""

import pytest

from streams.core.inquiries import AwaitingAnswers
from streams.core.promises import MISSED, ON_TIME, LateDelivery, PromiseKept, PromiseMissed, PromiseRecord

GRACE = 2.0
LABELS = ("support", "chat", "external")


def inquiry(inquiry_id="q1", case_id="c1", asked_at=100.0, due_at=160.0):
    return PromiseRecord(
        promise_id=inquiry_id, case_id=case_id, team="support", kind="chat", audience="external",
        channel="chat", due_at=due_at, made_at=asked_at,
    )


@pytest.fixture
def waiting():
    return AwaitingAnswers(grace_seconds=GRACE)


def test_an_answer_within_the_target_ends_the_wait_on_time(waiting):
    waiting.ask(inquiry(), known_at=100.0)
    [kept] = waiting.answer("c1", answered_at=130.0, known_at=130.5)
    assert isinstance(kept, PromiseKept) and kept.margin_seconds == 30.0
    assert waiting.waiting_on("c1") is None
    assert waiting.book.totals.outcomes[(*LABELS, ON_TIME)] == 1


def test_no_answer_by_the_target_is_reported_overdue_while_the_customer_waits(waiting):
    waiting.ask(inquiry(), known_at=100.0)
    assert waiting.expire(now=160.0 + GRACE) == []
    [overdue] = waiting.expire(now=160.0 + GRACE + 0.1)
    assert isinstance(overdue, PromiseMissed)
    assert waiting.book.overdue_ids == {"q1"}
    assert waiting.waiting_on("c1").promise_id == "q1"  # still waiting
    [late] = waiting.answer("c1", answered_at=300.0, known_at=300.0)
    assert isinstance(late, LateDelivery) and late.lateness_seconds == 140.0
    assert waiting.waiting_on("c1") is None and waiting.book.overdue_ids == set()


def test_more_messages_from_a_waiting_customer_do_not_restart_the_clock(waiting):
    waiting.ask(inquiry("q1", asked_at=100.0, due_at=160.0), known_at=100.0)
    assert waiting.ask(inquiry("q2", asked_at=150.0, due_at=210.0), known_at=150.0) == []
    [overdue] = waiting.expire(now=165.0)
    assert overdue.record.promise_id == "q1"


def test_after_an_answer_the_next_inquiry_starts_a_new_clock(waiting):
    waiting.ask(inquiry("q1"), known_at=100.0)
    waiting.answer("c1", answered_at=120.0, known_at=120.0)
    waiting.ask(inquiry("q2", asked_at=200.0, due_at=260.0), known_at=200.0)
    assert waiting.waiting_on("c1").promise_id == "q2"
    [overdue] = waiting.expire(now=263.0)
    assert overdue.record.promise_id == "q2"
    assert waiting.book.totals.outcomes[(*LABELS, ON_TIME)] == 1
    assert waiting.book.totals.outcomes[(*LABELS, MISSED)] == 1


def test_a_response_that_occurred_before_the_inquiry_does_not_answer_it(waiting):
    waiting.ask(inquiry(asked_at=100.0), known_at=100.0)
    assert waiting.answer("c1", answered_at=90.0, known_at=101.0) == []
    assert waiting.waiting_on("c1") is not None


def test_a_response_on_a_case_nobody_waits_on_changes_nothing(waiting):
    assert waiting.answer("c9", answered_at=90.0, known_at=101.0) == []


def test_a_repeated_inquiry_event_is_ignored(waiting):
    waiting.ask(inquiry("q1"), known_at=100.0)
    waiting.answer("c1", answered_at=120.0, known_at=120.0)
    assert waiting.ask(inquiry("q1"), known_at=121.0) == []  # redelivered after the answer
    assert waiting.waiting_on("c1") is None


def test_a_restart_keeps_who_is_waiting_and_forgets_them_after_retention(waiting):
    waiting.ask(inquiry("q1", case_id="c1"), known_at=100.0)
    waiting.ask(inquiry("q2", case_id="c2"), known_at=100.0)
    waiting.answer("c2", answered_at=110.0, known_at=110.0)
    waiting.expire(now=170.0)  # q1 overdue
    records = [PromiseRecord.from_dict(r.to_dict()) for r in waiting.book.records()]
    again = AwaitingAnswers.restore(records, grace_seconds=GRACE)
    assert again.waiting_on("c1").promise_id == "q1"
    assert again.waiting_on("c2") is None
    assert again.book.overdue_count[LABELS] == 1
    again.expire(now=160.0 + again.book.retention + 1)
    assert again.waiting_on("c1") is None and len(again) == 0
