"""What servicewatch tells other systems: a promise at risk or missed, a response overdue.

A finding is a JSON message on the findings topic (``<events topic>.findings`` unless
configured), keyed by the promise id (for ``response_overdue``: the case id), so that one
promise's findings stay in order on one partition. Each finding is produced once per promise
and due time, when the partition's time makes it certain; a worker that crashes between
producing a finding and persisting the state it changed may produce it again after the
restart, with the same ``finding_id``, so consumers drop the repeat by that id.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone

from streams.core.promises import PromiseRecord

PROMISE_AT_RISK = "promise_at_risk"
PROMISE_MISSED = "promise_missed"
RESPONSE_OVERDUE = "response_overdue"
FINDING_TYPES = (PROMISE_AT_RISK, PROMISE_MISSED, RESPONSE_OVERDUE)
SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class Finding:
    key: bytes
    value: bytes
    finding_type: str


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat(timespec="milliseconds")


def promise_finding(finding_type: str, record: PromiseRecord, declared_at: float) -> Finding:
    """A ``promise_at_risk`` or ``promise_missed`` finding about ``record``."""
    body = _common(finding_type, record.promise_id, record, declared_at)
    body.update(promise_id=record.promise_id, kind=record.kind, revisions=record.revisions)
    return Finding(record.promise_id.encode(), json.dumps(body).encode(), finding_type)


def response_overdue_finding(record: PromiseRecord, declared_at: float) -> Finding:
    """A ``response_overdue`` finding about an inquiry (a record of the inquiries book)."""
    body = _common(RESPONSE_OVERDUE, record.promise_id, record, declared_at)
    body.update(inquiry_event_id=record.promise_id, asked_at=_iso(record.made_at))
    return Finding(record.case_id.encode(), json.dumps(body).encode(), RESPONSE_OVERDUE)


def _common(finding_type: str, subject: str, record: PromiseRecord, declared_at: float) -> dict:
    due_ms = round(record.due_at * 1000)
    return {
        "finding_id": f"{finding_type}:{subject}:{due_ms}",
        "type": finding_type,
        "case_id": record.case_id,
        "team": record.team,
        "channel": record.channel,
        "audience": record.audience,
        "due_at": _iso(record.due_at),
        # The partition's time when the finding became certain (log time, not wall clock).
        "declared_at": _iso(declared_at),
        "overdue_seconds": round(max(declared_at - record.due_at, 0.0), 3),
        "schema_version": SCHEMA_VERSION,
    }
