"""The promises to act on now: at risk (due soon) and overdue (missed, still not delivered).

Each worker answers for the partitions it holds; a front end asks every worker and merges
(the answer says which partitions it covers). Times are judged by each partition's time,
the same clock that declares misses, so a lagging worker never shows a false overdue.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Iterable

from streams.core.promises import PromiseBook, PromiseRecord

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class WorklistQueryError(ValueError):
    """A bad query parameter; the message says what is accepted."""


def parse_query(query: dict[str, str]) -> tuple[str | None, int]:
    """``team`` (optional) and ``limit`` (1..MAX_LIMIT, default DEFAULT_LIMIT)."""
    team = query.get("team") or None
    raw_limit = query.get("limit", str(DEFAULT_LIMIT))
    try:
        limit = int(raw_limit)
    except ValueError:
        raise WorklistQueryError(f"limit must be a whole number from 1 to {MAX_LIMIT}, got {raw_limit[:20]!r}") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise WorklistQueryError(f"limit must be from 1 to {MAX_LIMIT}, got {limit}")
    return team, limit


def worklist(
    books: Iterable[tuple[int, PromiseBook, float | None]],
    which: str,
    team: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> dict:
    """``which`` is ``at_risk`` or ``overdue``; ``books`` yields (partition, book, its time).

    Items come most urgent first: at risk by due time, overdue by how long overdue.
    """
    items: list[tuple[float, dict]] = []
    partitions: list[int] = []
    for partition, book, now in books:
        partitions.append(partition)
        if now is None:
            continue  # nothing read yet on this partition
        ids = book.at_risk_ids if which == "at_risk" else book.overdue_ids
        for record in map(book.get, ids):
            if record is None or (team is not None and record.team != team):
                continue
            items.append((record.due_at, _item(record, partition, now, which)))
    items.sort(key=lambda pair: pair[0])
    return {
        "worklist": which,
        "partitions": sorted(partitions),
        "total": len(items),
        "items": [item for _, item in items[:limit]],
    }


def _item(record: PromiseRecord, partition: int, now: float, which: str) -> dict:
    item = {
        "case_id": record.case_id,
        "promise_id": record.promise_id,
        "team": record.team,
        "kind": record.kind,
        "audience": record.audience,
        "channel": record.channel,
        "due_at": _iso(record.due_at),
        "revisions": record.revisions,
        "partition": partition,
    }
    if which == "at_risk":
        item["due_in_seconds"] = round(record.due_at - now, 3)
    else:
        # (A backfill's hold can set a partition's time back to its history's.)
        item["overdue_by_seconds"] = max(round(now - record.due_at, 3), 0.0)
    return item


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat(timespec="seconds")
