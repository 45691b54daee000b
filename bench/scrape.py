"""Cheap reads of a worker's /metrics while it is being measured.

A full Prometheus parse of the page costs the harness milliseconds per poll; these read only
the lines they need. (streams/scrape.py's summarize() does the full parse for people.)
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request

PROCESSED = ("servicewatch_events_total{", "servicewatch_events_rejected_total{",
             "servicewatch_events_duplicate_total ")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def page(url: str, timeout: float = 5.0) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read().decode("utf-8") if response.status == 200 else None
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return None


def sum_of(text: str, prefixes: tuple[str, ...]) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(prefixes):
            total += float(line.rsplit(" ", 1)[1])
    return total


def processed(text: str) -> float:
    """Records the worker has finished with: valid events + rejected (dead-lettered) + duplicates."""
    return sum_of(text, PROCESSED)


def labelled(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample ``name{...} value`` with its labels."""
    start = name + "{"
    found = []
    for line in text.splitlines():
        if line.startswith(start):
            labels_text, _, value = line[len(start):].rpartition("} ")
            found.append((dict(_LABEL.findall(labels_text)), float(value)))
    return found


def partitions_held(text: str) -> set[int]:
    """Partitions the worker reports a partition time for: held and polled."""
    return {int(labels["partition"]) for labels, _ in labelled(text, "servicewatch_partition_time_seconds")}
