"""Exposes the promise and inquiry state of the partitions this worker holds now.

Outcome totals and open/overdue counts are kept per partition (and persisted with
it), so when a partition moves to another worker its numbers move too, and the
sum over all workers stays right. prometheus_client's custom-collector protocol
(``describe`` + ``collect``) reads them at scrape time.
"""

from __future__ import annotations

import heapq
from collections import Counter
from typing import Callable, Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from streams.core.promises import OUTCOMES, PromiseBook
from streams.metrics import AUDIENCES, CHANNELS, KINDS, Instruments

PartitionBooks = Callable[[], Iterable[tuple[PromiseBook, float | None]]]

# The oldest overdue promises get a series each, by rank: bounded, whatever the backlog.
OLDEST_OVERDUE_RANKS = 10

# (family type, name, help, what to sum) of the per-label promise series
PROMISE_SERIES = (
    (CounterMetricFamily, "servicewatch_late_deliveries",
     "Deliveries of promises that had already been missed.",
     lambda book: book.totals.late_deliveries),
    (CounterMetricFamily, "servicewatch_promise_revisions",
     "Renegotiations: due times moved by a promise_revised event before they passed.",
     lambda book: book.totals.revisions),
    (CounterMetricFamily, "servicewatch_promises_cancelled",
     "Promises cancelled before their due time (not in the outcome count).",
     lambda book: book.totals.cancelled),
    (GaugeMetricFamily, "servicewatch_promises_open",
     "Promises made and not yet ended.", lambda book: book.open_count),
    (GaugeMetricFamily, "servicewatch_promises_overdue",
     "Promises missed and still not delivered: customers still waiting.",
     lambda book: book.overdue_count),
    (GaugeMetricFamily, "servicewatch_promises_at_risk",
     "Open promises within their team's at-risk threshold of the due time (policy), "
     "as of the partition's time.", lambda book: book.at_risk_count),
)

# (name, help, what to sum) of the per-label inquiry gauges
INQUIRY_SERIES = (
    ("servicewatch_inquiries_waiting",
     "Customers waiting for an answer within the response target.",
     lambda book: book.open_count),
    ("servicewatch_responses_overdue",
     "Customers waiting for an answer past the response target.",
     lambda book: book.overdue_count),
)


class PromiseStateCollector:
    """``books`` (and ``inquiry_books``) yield each held partition's book with its
    partition time (or None)."""

    def __init__(
        self,
        books: PartitionBooks,
        instruments: Instruments,
        inquiry_books: PartitionBooks | None = None,
    ) -> None:
        self._books = books
        self._inquiry_books = inquiry_books or (lambda: ())
        self._instruments = instruments

    def describe(self):
        return self._families([], [])

    def collect(self):
        return self._families(list(self._books()), list(self._inquiry_books()))

    def _families(self, books, inquiry_books):
        label = self._instruments.team_label
        # Summing maps every team of the books to its label, and so registers the teams of
        # books restored after a restart: only then is the list of known teams complete.
        outcomes = _summed(books, lambda book: book.totals.outcomes, label)
        inquiry_outcomes = _summed(inquiry_books, lambda book: book.totals.outcomes, label)
        promise_counts = [(family_type, name, help_text, _summed(books, counts, label))
                          for family_type, name, help_text, counts in PROMISE_SERIES]
        inquiry_counts = [(name, help_text, _summed(inquiry_books, counts, label))
                          for name, help_text, counts in INQUIRY_SERIES]
        teams = list(self._instruments.teams.known)
        families = []
        promise_names = ["team", "kind", "audience"]
        outcome_family = CounterMetricFamily(
            "servicewatch_promise_outcomes",
            "Promises ended, by outcome: on_time (delivered by the due time) or missed.",
            labels=[*promise_names, "outcome"],
        )
        _add_by_label(outcome_family, outcomes, teams, KINDS, OUTCOMES)
        families.append(outcome_family)
        for family_type, name, help_text, counts in promise_counts:
            family = family_type(name, help_text, labels=promise_names)
            _add_by_label(family, counts, teams, KINDS)
            families.append(family)

        inquiry_names = ["team", "channel", "audience"]
        answered = CounterMetricFamily(
            "servicewatch_inquiry_outcomes",
            "Inquiries answered, by outcome: on_time (within the response target) or missed "
            "(the response was overdue).",
            labels=[*inquiry_names, "outcome"],
        )
        _add_by_label(answered, inquiry_outcomes, teams, CHANNELS, OUTCOMES)
        families.append(answered)
        for name, help_text, counts in inquiry_counts:
            family = GaugeMetricFamily(name, help_text, labels=inquiry_names)
            _add_by_label(family, counts, teams, CHANNELS)
            families.append(family)
        families.append(self._oldest_overdue(books))
        return families

    def _oldest_overdue(self, books) -> GaugeMetricFamily:
        family = GaugeMetricFamily(
            "servicewatch_promise_overdue_oldest_seconds",
            f"How long the {OLDEST_OVERDUE_RANKS} oldest overdue promises of this worker are "
            "past due, by rank (1 = oldest); details at GET /promises/overdue.",
            labels=["rank", "team", "kind", "audience"],
        )
        label = self._instruments.team_label
        candidates = (
            (now - record.due_at, record)
            for book, now in books if now is not None
            for record in map(book.get, book.overdue_ids) if record is not None
        )
        oldest = heapq.nlargest(OLDEST_OVERDUE_RANKS, candidates, key=lambda item: item[0])
        for rank, (overdue_by, record) in enumerate(oldest, start=1):
            team, kind, audience = record.labels
            family.add_metric([str(rank), label(team), kind, audience], max(overdue_by, 0.0))
        return family


def _summed(books, counts: Callable[[PromiseBook], Counter], label) -> Counter:
    """Sum one counter of every book, with team names mapped to their labels."""
    total: Counter = Counter()
    for book, _now in books:
        for (team, *rest), n in counts(book).items():
            total[(label(team), *rest)] += n
    return total


def _add_by_label(family, counts: Counter, teams, second_labels, outcomes=None) -> None:
    # Every known team shows every series, at zero until something happens.
    for team in teams:
        for second in second_labels:
            for audience in AUDIENCES:
                for key in ([(team, second, audience)] if outcomes is None
                            else [(team, second, audience, o) for o in outcomes]):
                    family.add_metric(list(key), counts[key])


class ObjectivesCollector:
    """The policy's objectives for every team seen, so rules and dashboards can read them."""

    def __init__(self, policy, instruments: Instruments) -> None:
        self._policy = policy
        self._instruments = instruments

    def describe(self):
        return [self._family()]

    def collect(self):
        family = self._family()
        for team in list(self._instruments.teams.known):
            objectives = self._policy.objectives(team)
            for name in ("promise_on_time", "response_within_target", "greeting_within_target"):
                family.add_metric([team, name], getattr(objectives, name))
        return [family]

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "servicewatch_objective_ratio",
            "The service policy's objective for each team: the share of promises on time, "
            "of responses and of greetings within target that the team aims for.",
            labels=["team", "objective"],
        )
