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


class PromiseStateCollector:
    def __init__(self, books: Callable[[], Iterable[PromiseBook]], instruments: Instruments) -> None:
        self._books = books
        self._instruments = instruments

    def describe(self):
        return list(self._families(Counter(), Counter(), Counter(), Counter()))

    def collect(self):
        outcomes, late, open_, overdue = Counter(), Counter(), Counter(), Counter()
        label = self._instruments.team_label
        for book in self._books():
            for (team, kind, audience, outcome), n in book.totals.outcomes.items():
                outcomes[(label(team), kind, audience, outcome)] += n
            for (team, kind, audience), n in book.totals.late_deliveries.items():
                late[(label(team), kind, audience)] += n
            for (team, kind, audience), n in book.open_count.items():
                open_[(label(team), kind, audience)] += n
            for (team, kind, audience), n in book.overdue_count.items():
                overdue[(label(team), kind, audience)] += n
        return list(self._families(outcomes, late, open_, overdue))

    def _families(self, outcomes, late, open_, overdue):
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
        return outcome_family, late_family, open_family, overdue_family
