"""Exposes the promise state of the partitions this worker holds now.

Outcome totals and open/overdue counts are kept per partition (and persisted with
it), so when a partition moves to another worker its numbers move too, and the
sum over all workers stays right. prometheus_client's custom-collector protocol
(``describe`` + ``collect``) reads them at scrape time.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable, Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from streams.core.promises import OUTCOMES, PromiseBook
from streams.metrics import AUDIENCES, KINDS, Instruments


PartitionBooks = Callable[[], Iterable[tuple[PromiseBook, float | None]]]


class PromiseStateCollector:
    """``books`` yields each held partition's book with its partition time (or None)."""

    def __init__(self, books: PartitionBooks, instruments: Instruments, at_risk_seconds: float) -> None:
        self._books = books
        self._instruments = instruments
        self._at_risk_seconds = at_risk_seconds

    def describe(self):
        return list(self._families(Counter(), Counter(), Counter(), Counter(), Counter()))

    def collect(self):
        outcomes, late, open_, overdue, at_risk = Counter(), Counter(), Counter(), Counter(), Counter()
        label = self._instruments.team_label
        for book, now in self._books():
            if now is not None:
                for (team, kind, audience), n in book.due_by(now + self._at_risk_seconds).items():
                    at_risk[(label(team), kind, audience)] += n
            for (team, kind, audience, outcome), n in book.totals.outcomes.items():
                outcomes[(label(team), kind, audience, outcome)] += n
            for (team, kind, audience), n in book.totals.late_deliveries.items():
                late[(label(team), kind, audience)] += n
            for (team, kind, audience), n in book.open_count.items():
                open_[(label(team), kind, audience)] += n
            for (team, kind, audience), n in book.overdue_count.items():
                overdue[(label(team), kind, audience)] += n
        return list(self._families(outcomes, late, open_, overdue, at_risk))

    def _families(self, outcomes, late, open_, overdue, at_risk):
        names = ["team", "kind", "audience"]
        outcome_family = CounterMetricFamily(
            "servicewatch_promise_outcomes",
            "Promises ended, by outcome: on_time (delivered by the due time) or missed.",
            labels=[*names, "outcome"],
        )
        late_family = CounterMetricFamily(
            "servicewatch_late_deliveries",
            "Deliveries of promises that had already been missed.",
            labels=names,
        )
        open_family = GaugeMetricFamily(
            "servicewatch_promises_open", "Promises made and not yet ended.", labels=names
        )
        overdue_family = GaugeMetricFamily(
            "servicewatch_promises_overdue",
            "Promises missed and still not delivered: customers still waiting.",
            labels=names,
        )
        at_risk_family = GaugeMetricFamily(
            "servicewatch_promises_at_risk",
            f"Open promises due within {self._at_risk_seconds:g} s of the partition's time "
            "(or already past due and not yet declared missed).",
            labels=names,
        )
        # Every known team shows every series, at zero until something happens.
        for team in list(self._instruments.teams.known):
            for kind in KINDS:
                for audience in AUDIENCES:
                    key = (team, kind, audience)
                    for outcome in OUTCOMES:
                        outcome_family.add_metric([*key, outcome], outcomes[(*key, outcome)])
                    late_family.add_metric(list(key), late[key])
                    open_family.add_metric(list(key), open_[key])
                    overdue_family.add_metric(list(key), overdue[key])
                    at_risk_family.add_metric(list(key), at_risk[key])
        return outcome_family, late_family, open_family, overdue_family, at_risk_family
