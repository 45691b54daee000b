"""Validation that says which field is wrong: shared by the Python emitter, HTTP ingest and the CLI.

The worker judges every Kafka message with ``EVENT_ADAPTER.validate_json`` (see
:mod:`schemas.decode`). :func:`validate_json_event` makes exactly that judgement, so a line
``servicewatch validate`` passes, an item ``POST /events`` accepts and a message the worker
accepts are the same thing; it only explains a failure as a list of ``(field, error)`` pairs
instead of one reason string.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from schemas.events import EVENT_ADAPTER, EVENT_TYPES, Envelope

__all__ = [
    "MAX_EVENT_BYTES",
    "FieldError",
    "InvalidEventError",
    "explain",
    "validate_json_event",
    "validate_python_event",
]

# The worker's limit for one message value (schemas.decode.decode_event's default).
MAX_EVENT_BYTES = 65536

_MAX_FIELD_CHARS = 128  # a hostile key name is echoed back; keep it short
_MAX_ERROR_CHARS = 300
_MAX_TAG_CHARS = 40
_KNOWN_TYPES_TEXT = ", ".join(EVENT_TYPES)
# pydantic's wording for these is terse; say what to do instead.
_FRIENDLIER = {
    "missing": "required field is missing",
    "extra_forbidden": "unknown field; events allow only the fields of their schema "
    "(see schemas/json/)",
}


@dataclass(frozen=True)
class FieldError:
    """One problem with an event: ``field`` is its name (``None`` when the problem is the whole
    document, e.g. not JSON), ``error`` says what is wrong."""

    field: str | None
    error: str

    def __str__(self) -> str:
        return f"{self.field}: {self.error}" if self.field else self.error

    def as_dict(self) -> dict[str, str | None]:
        return {"field": self.field, "error": self.error}


class InvalidEventError(ValueError):
    """An event servicewatch would reject. The message names the wrong field(s);
    ``errors`` lists every problem found, ``field`` is the first one's field."""

    def __init__(self, errors: list[FieldError], event_type: str | None = None) -> None:
        if not errors:
            errors = [FieldError(None, "invalid event")]
        self.errors = list(errors)
        self.event_type = event_type
        what = f"invalid {event_type} event" if event_type in EVENT_TYPES else "invalid event"
        shown = "; ".join(str(error) for error in self.errors[:3])
        if len(self.errors) > 3:
            shown += f" (and {len(self.errors) - 3} more)"
        super().__init__(f"{what}: {shown}")

    @property
    def field(self) -> str | None:
        return self.errors[0].field


def explain(exc: ValidationError) -> list[FieldError]:
    """The problems in a validation error of an event, one per field."""
    return [_describe(error) for error in exc.errors(include_url=False, include_input=False)]


def validate_json_event(raw: bytes | str, max_bytes: int = MAX_EVENT_BYTES) -> Envelope:
    """Validate one JSON document exactly as the worker does; raise InvalidEventError."""
    size = len(raw.encode("utf-8", "surrogatepass")) if isinstance(raw, str) else len(raw)
    if size > max_bytes:
        raise InvalidEventError([FieldError(None, f"event is {size} bytes; the limit is {max_bytes}")])
    try:
        return EVENT_ADAPTER.validate_json(raw)
    except ValidationError as exc:
        raise _invalid(exc) from None


def validate_python_event(data: Mapping[str, Any] | Envelope) -> Envelope:
    """Validate a dict (datetimes allowed) or re-check a model; raise InvalidEventError.

    Python input may carry datetime objects; otherwise the rules are the wire's.
    """
    if isinstance(data, Envelope):
        return data
    if not isinstance(data, Mapping):
        raise InvalidEventError(
            [FieldError(None, f"expected an event model or a dict, not {type(data).__name__}")])
    try:
        return EVENT_ADAPTER.validate_python(dict(data))
    except ValidationError as exc:
        raise _invalid(exc) from None


def _invalid(exc: ValidationError) -> InvalidEventError:
    details = exc.errors(include_url=False, include_input=False)
    # The discriminated union names the event type first in each location.
    first_loc = details[0]["loc"] if details else ()
    event_type = first_loc[0] if first_loc and first_loc[0] in EVENT_TYPES else None
    return InvalidEventError([_describe(error) for error in details], event_type)


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(error: ErrorDetails) -> FieldError:
    kind = error["type"]
    if kind == "union_tag_not_found":
        return FieldError("type", f"missing; expected one of: {_KNOWN_TYPES_TEXT}")
    if kind == "union_tag_invalid":
        tag = _short(str(error.get("ctx", {}).get("tag", "")), _MAX_TAG_CHARS)
        return FieldError("type", f"{tag!r} is not one of: {_KNOWN_TYPES_TEXT}")
    loc = error["loc"]
    if not loc:
        # No field to point at: bad syntax, bad UTF-8, or a JSON value that is not an object.
        if kind == "json_invalid":
            problem = error.get("ctx", {}).get("error", error["msg"])
            return FieldError(None, _short(f"not valid JSON: {problem}", _MAX_ERROR_CHARS))
        return FieldError(None, _short(f"expected a JSON object: {error['msg']}", _MAX_ERROR_CHARS))
    # The discriminated union puts the event type first ("promise", "due_at"): drop it.
    path = ".".join(str(part) for part in loc[1:]) if len(loc) > 1 else str(loc[0])
    message = _FRIENDLIER.get(kind, error["msg"])
    if kind == "string_pattern_mismatch" and path == "team":
        message = ("must be letters, digits, '_', '.' or '-', starting with a letter or digit "
                   "(it becomes a metrics label)")
    return FieldError(_short(path, _MAX_FIELD_CHARS), _short(message, _MAX_ERROR_CHARS))
