"""Reads a worker's /metrics into the few numbers a person wants to see at a glance."""

from __future__ import annotations

import urllib.request
from collections import defaultdict
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Summary:
    events: int
    on_time: int
    missed: int
    late_deliveries: int
    open: int
    overdue: int
    responses_overdue: int
    rejected: int
    duplicates: int

    def line(self) -> str:
        judged = self.on_time + self.missed
        rate = f"{100 * self.on_time / judged:.0f}% on time" if judged else "no promise ended yet"
        return (
            f"events {self.events:,} | promises: {self.on_time:,} on time, {self.missed:,} missed "
            f"({rate}), {self.open:,} open, {self.overdue:,} overdue, "
            f"{self.late_deliveries:,} late deliveries | "
            f"{self.responses_overdue:,} customers waiting past target | rejected {self.rejected:,}, "
            f"duplicates {self.duplicates:,}"
        )


def summarize(url: str, timeout: float = 2.0) -> Summary:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        text = response.read().decode("utf-8")
    sums: dict[str, float] = defaultdict(float)
    outcomes: dict[str, float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            sums[sample.name] += sample.value
            if sample.name == "servicewatch_promise_outcomes_total":
                outcomes[sample.labels["outcome"]] += sample.value
    return Summary(
        events=int(sums["servicewatch_events_total"]),
        on_time=int(outcomes["on_time"]),
        missed=int(outcomes["missed"]),
        late_deliveries=int(sums["servicewatch_late_deliveries_total"]),
        open=int(sums["servicewatch_promises_open"]),
        overdue=int(sums["servicewatch_promises_overdue"]),
        responses_overdue=int(sums["servicewatch_responses_overdue"]),
        rejected=int(sums["servicewatch_events_rejected_total"]),
        duplicates=int(sums["servicewatch_events_duplicate_total"]),
    )
