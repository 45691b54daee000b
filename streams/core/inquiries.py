"""Customers waiting for an answer: each case's unanswered inquiry and its response deadline.

An unanswered inquiry is judged exactly like a promise the organisation made without
saying so: "we will answer within the response target". So it lives in a
:class:`PromiseBook` of its own, and inherits that book's rule that reads only the log:
the inquiry ends ``on_time`` when a response that occurred by the deadline was in Kafka
by deadline + grace, and ``missed`` (the response is overdue) as soon as the partition's
time passes deadline + grace without one. A response that comes later still counts, as a
late answer, and ends the customer's wait.

In this book a record's ``kind`` slot holds the inquiry's channel, so its labels read
(team, channel, audience).

A case has at most one unanswered inquiry: further messages from a customer who is
already waiting do not restart the clock (helpdesks measure "next reply" from the first
unanswered message). A response answers the case's waiting inquiry if it occurred at or
after the inquiry. A response read before the inquiry it answers is not matched.
"""

from __future__ import annotations

from typing import Iterable

from streams.core.promises import (
    DEFAULT_GRACE_SECONDS,
    CANCELLED,
    DEFAULT_RETENTION_SECONDS,
    Change,
    OutcomeTotals,
    PromiseBook,
    PromiseRecord,
)


class AwaitingAnswers:
    """The inquiries of one partition; ``book`` holds the records and the totals."""

    def __init__(
        self,
        grace_seconds: float = DEFAULT_GRACE_SECONDS,
        retention_seconds: float = DEFAULT_RETENTION_SECONDS,
        book: PromiseBook | None = None,
    ) -> None:
        self.book = book if book is not None else PromiseBook(grace_seconds, retention_seconds)
        self.book.on_forget = self._forgotten
        # case id -> id of its inquiry that has no answer yet (open, or overdue)
        self._waiting: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def waiting_on(self, case_id: str) -> PromiseRecord | None:
        inquiry_id = self._waiting.get(case_id)
        return self.book.get(inquiry_id) if inquiry_id is not None else None

    def ask(self, record: PromiseRecord, known_at: float) -> list[Change]:
        """A customer asked; ``record.due_at`` is when the answer is due (the target's end)."""
        if record.case_id in self._waiting or self.book.get(record.promise_id) is not None:
            return []
        self._waiting[record.case_id] = record.promise_id
        return self.book.make(record, known_at)

    def answer(self, case_id: str, answered_at: float, known_at: float) -> list[Change]:
        """A response on ``case_id`` occurred at ``answered_at``, known at ``known_at``."""
        record = self.waiting_on(case_id)
        if record is None or record.made_at is None or answered_at < record.made_at:
            return []
        changes = self.book.deliver(record.promise_id, case_id, answered_at, known_at)
        if record.delivered_at is not None:
            del self._waiting[case_id]
        return changes

    def expire(self, now: float) -> list[Change]:
        return self.book.expire(now)

    def _forgotten(self, record: PromiseRecord) -> None:
        # An inquiry unanswered for the whole retention period: the wait is let go.
        if self._waiting.get(record.case_id) == record.promise_id:
            del self._waiting[record.case_id]

    @classmethod
    def restore(
        cls, records: Iterable[PromiseRecord], archive: OutcomeTotals | None = None, **settings: float
    ) -> "AwaitingAnswers":
        book = PromiseBook.restore(records, archive, **settings)
        awaiting = cls(book=book)
        for record in book.records():
            if record.is_made and record.delivered_at is None and record.ended_as != CANCELLED:
                awaiting._waiting[record.case_id] = record.promise_id
        return awaiting
