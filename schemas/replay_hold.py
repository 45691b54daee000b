"""The record header by which a backfill keeps a partition's time from jumping to now.

A worker moves a caught-up partition's time on with the wall clock, so an idle partition
still flags misses. A backfill writes records stamped with their events' own, older times;
if the worker catches up *between* two of them (the backfill is paced, or just slower than
the worker), the wall clock would run the partition hours past the history, and every
promise whose delivery is still to come would be declared missed.

So each backfilled record may carry ``servicewatch-replay-hold-until``: the wall time, in
epoch milliseconds as ASCII digits, until which the backfill may still write to the same
partition. Until then, fetches that find the partition caught up do not move its time; the
records' own timestamps still do. A record without the header (live traffic, or the last
backfilled record of the partition) ends the hold. ``servicewatch replay`` sets it; a
backfill written in another language can set it the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Union

REPLAY_HOLD_HEADER = "servicewatch-replay-hold-until"
# Epoch milliseconds have 13 digits until the year 2286; longer values are not a time.
_MAX_DIGITS = 13

Headers = Union[Mapping[str, bytes], Iterable[tuple[str, bytes]], None]


def hold_header(until: float) -> tuple[str, bytes]:
    """The header holding a partition until ``until`` (epoch seconds)."""
    return REPLAY_HOLD_HEADER, str(int(until * 1000)).encode()


def replay_hold_until(headers: Headers) -> float | None:
    """The hold a record's headers ask for, in epoch seconds; ``None`` when there is none
    or its value is not a time (a malformed header holds nothing)."""
    if not headers:
        return None
    items = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in items:
        if name == REPLAY_HOLD_HEADER:
            if value is None or not 0 < len(value) <= _MAX_DIGITS or not value.isdigit():
                return None
            return int(value) / 1000.0
    return None
