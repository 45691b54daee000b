"""Turning one Kafka message value into an Event, or into a rejection with a bounded reason.

This runs once per consumed message, so the success path is a single
`EVENT_ADAPTER.validate_json` call; all the work of explaining a rejection happens only
after validation has failed.
"""

from __future__ import annotations

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from schemas.events import EVENT_ADAPTER, EVENT_TYPES, Event

__all__ = ["EVENT_TYPES", "REJECT_REASONS", "InvalidEvent", "decode_event"]

# A rejection's reason becomes a metrics label, so the set is closed; the detail carries the rest.
REJECT_REASONS: tuple[str, ...] = ("invalid_json", "unknown_type", "schema_violation", "too_large")

_MAX_REPORTED_ERRORS = 3
_MAX_REPORTED_TAG = 40  # the offending `type` value is echoed back; keep log lines short
_UNKNOWN_TYPE = frozenset({"union_tag_not_found", "union_tag_invalid"})
_KNOWN_TYPES_TEXT = ", ".join(EVENT_TYPES)


class InvalidEvent(Exception):
    """A message that is not a valid event.

    `reason` is one of REJECT_REASONS (safe as a metrics label); `detail` says what is wrong and
    where, for logs and for the team that emitted the message.
    """

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in REJECT_REASONS:
            raise ValueError(f"unknown reject reason {reason!r}; expected one of {REJECT_REASONS}")
        # Both go into args so the exception pickles and compares like a plain value.
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


def decode_event(raw: bytes | str, max_bytes: int = 65536) -> Event:
    """Parse and validate one message value; raise InvalidEvent if it is not a valid event."""
    size = len(raw.encode("utf-8", "surrogatepass")) if isinstance(raw, str) else len(raw)
    if size > max_bytes:
        raise InvalidEvent("too_large", f"message is {size} bytes; the limit is {max_bytes}")
    try:
        return EVENT_ADAPTER.validate_json(raw)
    except ValidationError as exc:
        raise _explain(exc.errors(include_url=False, include_input=False)) from None


def _explain(errors: list[ErrorDetails]) -> InvalidEvent:
    first = errors[0]
    if first["type"] in _UNKNOWN_TYPE:
        return InvalidEvent("unknown_type", _unknown_type_detail(first))
    # An error located at the top of the document, not at a field, means there was no JSON
    # object to look into: bad syntax, bad UTF-8, or an array, number, string or null.
    if not first["loc"]:
        if first["type"] == "json_invalid":
            problem = first.get("ctx", {}).get("error", first["msg"])
            return InvalidEvent("invalid_json", f"not valid JSON: {problem}")
        return InvalidEvent("invalid_json", f"expected a JSON object: {first['msg']}")
    details = "; ".join(_describe(error) for error in errors[:_MAX_REPORTED_ERRORS])
    if len(errors) > _MAX_REPORTED_ERRORS:
        details += f" (and {len(errors) - _MAX_REPORTED_ERRORS} more)"
    return InvalidEvent("schema_violation", details)


def _unknown_type_detail(error: ErrorDetails) -> str:
    if error["type"] == "union_tag_not_found":
        return f"no 'type' field; expected one of: {_KNOWN_TYPES_TEXT}"
    tag = str(error.get("ctx", {}).get("tag", ""))
    if len(tag) > _MAX_REPORTED_TAG:
        tag = tag[:_MAX_REPORTED_TAG] + "..."
    return f"type {tag!r} is not one of: {_KNOWN_TYPES_TEXT}"


def _describe(error: ErrorDetails) -> str:
    # The discriminated union puts the event type first in every location ("promise", "due_at");
    # the reader knows the type already and wants the field.
    path = ".".join(str(part) for part in error["loc"][1:])
    return f"{path}: {error['msg']}" if path else error["msg"]
