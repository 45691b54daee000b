"""HTTP ingest: ``POST /events`` on the worker's web server writes events to the events topic.

For systems that can speak HTTP but not Kafka. The body is one JSON event, a JSON array of
events, or NDJSON (one event per line: ``Content-Type: application/x-ndjson``, or recognised
when the first line is a complete JSON value followed by more lines). Each item is judged
exactly as the worker judges a Kafka message; valid items are written to the events topic
(key = case id, value = the event's compact JSON, as :mod:`schemas.emitter` sends it) and the
answer reports, per item, what was refused and why:

* 202 — every item accepted (written to Kafka, acknowledged by all in-sync replicas);
* 207 — some accepted, some rejected; 400 — nothing accepted (or the body is not JSON at all);
  the body is always ``{"accepted": n, "rejected": [{"index": i, "field": ..., "error": ...}]}``
  (NDJSON rejections also carry the 1-based ``line``);
* 413 — body over the size limit (default 1 MiB, ``SERVICEWATCH_INGEST_MAX_BYTES``) or more
  than 10,000 items; checked from Content-Length first, and the body is read with a cap;
* 401 / 403 — no or a wrong ``Authorization: Bearer <token>`` when a token is configured
  (``SERVICEWATCH_INGEST_TOKEN``);
* 503 — Kafka did not acknowledge the accepted items. Retrying the same request is safe:
  events already written are dropped by the worker as repeats of their ``event_id``.

No input produces a 500. The request handling is a pure function (:func:`handle_request`:
bytes + headers -> status, body, records to produce) so it can be fuzzed without HTTP; the
Faust view around it only reads the body (capped), produces, and answers.

``GET /openapi.yaml`` and ``GET /openapi.json`` describe the endpoint (OpenAPI 3.1, with the
event schemas generated from the models). ``python -m streams.ingest openapi/ingest.yaml``
writes the committed copy.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from schemas.emitter import event_record
from schemas.errors import MAX_EVENT_BYTES, FieldError, InvalidEventError, validate_json_event
from schemas.events import EVENT_ADAPTER

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 1024 * 1024
MAX_ITEMS = 10_000
PRODUCE_TIMEOUT_SECONDS = 15.0
NDJSON_TYPES = frozenset({
    "application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonl",
    "application/jsonlines", "application/x-jsonlines", "application/json-lines",
})
# Every status this endpoint answers with; a bounded metrics label.
STATUSES = (202, 207, 400, 401, 403, 413, 503)
# Bodies larger than this are judged on a thread: a full 1 MiB batch takes ~0.1 s of CPU.
_INLINE_BYTES = 64 * 1024

_WHITESPACE = " \t\n\r"  # JSON's whitespace, nothing more
_BOM = "\ufeff"
def _ignore(_: Any) -> None:
    return None


# Only the extent of each value matters here (the worker's validator reads the item itself), so
# the scanner builds nothing: no huge ints to convert, no dicts to allocate.
_DECODER = json.JSONDecoder(parse_int=_ignore, parse_float=_ignore, parse_constant=_ignore,
                            object_pairs_hook=_ignore)
_DIGITS = re.compile(r"[0-9]{1,18}")


@dataclass(frozen=True)
class IngestConfig:
    token: str | None = None  # None or "": no authentication
    max_bytes: int = DEFAULT_MAX_BYTES
    max_items: int = MAX_ITEMS
    max_event_bytes: int = MAX_EVENT_BYTES  # the worker's limit for one message
    produce_timeout: float = PRODUCE_TIMEOUT_SECONDS


@dataclass
class IngestResult:
    """What to answer, and the records (key, value) to produce before answering."""

    status: int
    body: dict[str, Any]
    records: list[tuple[bytes, bytes]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)


# -- the pure part ----------------------------------------------------------------------------------
def handle_request(body: bytes, headers: Mapping[str, str], config: IngestConfig) -> IngestResult:
    """Judge one ``POST /events`` request: everything but the I/O."""
    early = check_request(headers, config)
    if early is not None:
        return early
    if len(body) > config.max_bytes:
        return too_large(config)
    return handle_body(body, headers, config)


def check_request(headers: Mapping[str, str], config: IngestConfig) -> IngestResult | None:
    """What can be refused before reading the body: credentials and a declared size."""
    if config.token:
        authorization = _header(headers, "authorization")
        if authorization is None or not authorization.strip():
            return _unauthorized("this endpoint needs a token: send 'Authorization: Bearer <token>'")
        scheme, _, credentials = authorization.strip().partition(" ")
        credentials = credentials.strip(" \t")
        if scheme.lower() != "bearer" or not credentials:
            return _unauthorized("expected 'Authorization: Bearer <token>'")
        given = credentials.encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(given, config.token.encode("utf-8", "surrogateescape")):
            return _error(403, "the bearer token is not valid for this endpoint")
    declared = _header(headers, "content-length")
    if declared is not None:
        declared = declared.strip()
        if (_DIGITS.fullmatch(declared) and int(declared) > config.max_bytes) or (
                len(declared) > 18 and declared.isascii() and declared.isdigit()):
            return too_large(config)
    return None


def too_large(config: IngestConfig) -> IngestResult:
    return _error(413, f"the body is larger than {config.max_bytes} bytes; send fewer events per "
                       "request (the limit is SERVICEWATCH_INGEST_MAX_BYTES on the worker)")


def handle_body(body: bytes, headers: Mapping[str, str], config: IngestConfig) -> IngestResult:
    """Split the body into items, judge each, and build the answer."""
    try:
        items = _split(body, _is_ndjson(headers), config)
    except _BodyError as problem:
        return _error(problem.status, problem.message)
    records: list[tuple[bytes, bytes]] = []
    rejected: list[dict[str, Any]] = []
    for item in items:
        problems = item.problems
        if problems is None:
            try:
                model = validate_json_event(item.raw, config.max_event_bytes)
                records.append(event_record(model))
                continue
            except InvalidEventError as invalid:
                problems = invalid.errors
        rejected.append(item.rejection(problems))
    status = 202 if not rejected else 207 if records else 400
    return IngestResult(status, {"accepted": len(records), "rejected": rejected}, records)


@dataclass
class _Item:
    index: int
    raw: bytes
    line: int | None = None  # NDJSON only, 1-based
    problems: list[FieldError] | None = None  # known before validation (e.g. not JSON)

    def rejection(self, problems: list[FieldError]) -> dict[str, Any]:
        first = problems[0]
        entry: dict[str, Any] = {"index": self.index}
        if self.line is not None:
            entry["line"] = self.line
        entry.update(field=first.field, error=first.error)
        if len(problems) > 1:
            entry["errors"] = [problem.as_dict() for problem in problems[:20]]
        return entry


class _BodyError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _split(body: bytes, ndjson: bool, config: IngestConfig) -> list[_Item]:
    if ndjson:
        return _ndjson_items(body, config)
    # surrogateescape keeps bad bytes as markers: each item's span re-encodes to its exact
    # bytes, so one item with invalid UTF-8 is rejected on its own, as the worker would.
    text = body.decode("utf-8", "surrogateescape")
    if text.startswith(_BOM):
        text = text[1:]
    start = _skip(text, 0)
    if start == len(text):
        raise _BodyError(400, "the body is empty; send one JSON event, a JSON array of events, "
                              "or NDJSON (one event per line)")
    if text[start] == "[":
        return _array_items(text, start, config)
    if text[start] != "{":
        raise _BodyError(400, "expected a JSON object (one event), a JSON array of events, or "
                              "NDJSON (one event per line)")
    end = _parse_value(text, start)
    rest = _skip(text, end)
    if rest == len(text):
        return [_Item(0, _encode(text[start:end]))]
    if "\n" in text[end:rest] and "\n" not in text[start:end]:
        return _ndjson_items(body, config)  # one object per line, without the Content-Type
    line, column = _position(text, rest)
    raise _BodyError(400, f"unexpected data after the JSON object at line {line} column {column}; "
                          "send several events as a JSON array, or as NDJSON with one event per line")


def _array_items(text: str, start: int, config: IngestConfig) -> list[_Item]:
    items: list[_Item] = []
    position = _skip(text, start + 1)
    if position < len(text) and text[position] == "]":
        position += 1
    else:
        while True:
            if len(items) >= config.max_items:
                raise _BodyError(413, f"more than {config.max_items} events in one request; "
                                      "split the batch")
            end = _parse_value(text, position)
            items.append(_Item(len(items), _encode(text[position:end])))
            position = _skip(text, end)
            if position < len(text) and text[position] == ",":
                position = _skip(text, position + 1)
                continue
            if position < len(text) and text[position] == "]":
                position += 1
                break
            line, column = _position(text, position)
            raise _BodyError(400, f"not valid JSON: expected ',' or ']' at line {line} column {column}")
    if _skip(text, position) != len(text):
        line, column = _position(text, _skip(text, position))
        raise _BodyError(400, f"unexpected data after the JSON array at line {line} column {column}")
    return items


def _ndjson_items(body: bytes, config: IngestConfig) -> list[_Item]:
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    items: list[_Item] = []
    for number, line in enumerate(body.split(b"\n"), start=1):
        line = line.strip(b" \t\r")
        if not line:
            continue
        if len(items) >= config.max_items:
            raise _BodyError(413, f"more than {config.max_items} events in one request; split the batch")
        items.append(_Item(len(items), line, line=number))
    if not items:
        raise _BodyError(400, "the body is empty; send one event per line")
    return items


def _parse_value(text: str, position: int) -> int:
    """End of the JSON value starting at ``position``; raise _BodyError if there is none."""
    try:
        _, end = _DECODER.raw_decode(text, position)
    except json.JSONDecodeError as exc:
        raise _BodyError(400, f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except (RecursionError, ValueError):
        line, column = _position(text, position)
        raise _BodyError(400, f"not valid JSON: nested too deeply or too large (value at "
                              f"line {line} column {column})") from None
    return end


def _skip(text: str, position: int) -> int:
    length = len(text)
    while position < length and text[position] in _WHITESPACE:
        position += 1
    return position


def _position(text: str, position: int) -> tuple[int, int]:
    line = text.count("\n", 0, position) + 1
    return line, position - (text.rfind("\n", 0, position) + 1) + 1


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _is_ndjson(headers: Mapping[str, str]) -> bool:
    content_type = _header(headers, "content-type") or ""
    return content_type.split(";", 1)[0].strip().lower() in NDJSON_TYPES


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = None
    try:
        value = headers.get(name)  # multidicts (aiohttp) are case-insensitive already
    except Exception:  # a hostile mapping; fall through to the scan below
        value = None
    if value is None:
        for key, candidate in headers.items():
            if isinstance(key, str) and key.lower() == name:
                value = candidate
                break
    return value if isinstance(value, str) else None


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> IngestResult:
    return IngestResult(status, {"error": message, "accepted": 0, "rejected": []}, [], headers or {})


def _unauthorized(message: str) -> IngestResult:
    return _error(401, message, {"WWW-Authenticate": 'Bearer realm="servicewatch"'})


# -- the Faust view ---------------------------------------------------------------------------------
class IngestMetrics:
    """Requests by status and items by result, on the worker's /metrics."""

    def __init__(self, registry: Any) -> None:
        from prometheus_client import Counter

        self.requests = Counter(
            "servicewatch_ingest_requests", "POST /events requests answered, by HTTP status",
            ["status"], registry=registry)
        self.items = Counter(
            "servicewatch_ingest_events", "Events received on POST /events: accepted (written to "
            "Kafka) or rejected (reported back to the caller)", ["result"], registry=registry)
        for status in STATUSES:
            self.requests.labels(str(status))
        for result in ("accepted", "rejected"):
            self.items.labels(result)

    def count(self, status: int, accepted: int, rejected: int) -> None:
        if status in STATUSES:
            self.requests.labels(str(status)).inc()
        if accepted:
            self.items.labels("accepted").inc(accepted)
        if rejected:
            self.items.labels("rejected").inc(rejected)


async def read_capped(stream: Any, limit: int) -> bytes | None:
    """The whole body, or None as soon as it exceeds ``limit`` bytes (never reads much more)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await stream.readany()
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)


def install_ingest(app: Any, topic: Any, *, token: str | None, max_bytes: int,
                   registry: Any = None, produce_timeout: float = PRODUCE_TIMEOUT_SECONDS) -> None:
    """Add ``POST /events``, ``GET /openapi.yaml`` and ``GET /openapi.json`` to a Faust app.

    ``topic`` is the Faust topic of the events (raw bytes key and value)."""
    from faust.web import View

    # A token read from a file or an env var often ends with a newline; it is not part of it.
    config = IngestConfig(token=(token or "").strip() or None, max_bytes=max_bytes,
                          produce_timeout=produce_timeout)
    metrics = IngestMetrics(registry) if registry is not None else None

    async def produce(records: list[tuple[bytes, bytes]]) -> None:
        pending = [await topic.send(key=key, value=value, force=True) for key, value in records]
        await asyncio.gather(*pending)

    class EventsView(View):
        async def post(self, request: Any, **kwargs: Any) -> Any:
            result = await self._handle(request)
            if metrics is not None:
                metrics.count(result.status, len(result.records) if result.status in (202, 207) else 0,
                              len(result.body.get("rejected", ())))
            return self.json(result.body, status=result.status, headers=result.headers or None)

        async def _handle(self, request: Any) -> IngestResult:
            try:
                early = check_request(request.headers, config)
                if early is not None:
                    return early
                body = await read_capped(request.content, config.max_bytes)
                if body is None:
                    return too_large(config)
                if len(body) > _INLINE_BYTES:  # keep the worker's event loop responsive
                    result = await asyncio.get_running_loop().run_in_executor(
                        None, handle_body, body, request.headers, config)
                else:
                    result = handle_body(body, request.headers, config)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # bad input must never become a 500
                log.exception("POST /events: could not read the request")
                return _error(400, f"could not read this request ({type(exc).__name__})")
            if not result.records:
                return result
            try:
                await asyncio.wait_for(produce(result.records), config.produce_timeout)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                reason = "timed out" if isinstance(exc, asyncio.TimeoutError) else f"{type(exc).__name__}: {exc}"
                log.warning("POST /events: Kafka did not take %d event(s): %s", len(result.records), reason)
                failed = _error(
                    503, f"Kafka did not acknowledge the events ({reason}); nothing was rejected "
                    "because of them. Retry the same request: events already written are "
                    "dropped as repeats of their event_id.", {"Retry-After": "5"})
                failed.body["rejected"] = result.body["rejected"]
                return failed
            return result

    yaml_text = openapi_yaml().encode("utf-8")
    json_text = (json.dumps(openapi_document(), indent=2) + "\n").encode("utf-8")

    class OpenApiYamlView(View):
        async def get(self, request: Any, **kwargs: Any) -> Any:
            return self.bytes(yaml_text, content_type="application/yaml")

    class OpenApiJsonView(View):
        async def get(self, request: Any, **kwargs: Any) -> Any:
            return self.bytes(json_text, content_type="application/json")

    app.page("/events", name="servicewatch-ingest")(EventsView)
    app.page("/openapi.yaml", name="servicewatch-openapi-yaml")(OpenApiYamlView)
    app.page("/openapi.json", name="servicewatch-openapi-json")(OpenApiJsonView)


# -- OpenAPI ----------------------------------------------------------------------------------------
def openapi_document() -> dict[str, Any]:
    """OpenAPI 3.1 description of the ingest endpoint; event schemas come from the models."""
    event = EVENT_ADAPTER.json_schema(ref_template="#/components/schemas/{model}")
    schemas: dict[str, Any] = dict(sorted(event.pop("$defs").items()))
    event["description"] = ("One servicewatch event. `type` selects the fields; JSON Schema "
                            "files for each type are in schemas/json/ of the repository.")
    schemas["Event"] = event
    schemas["Rejection"] = {
        "type": "object",
        "required": ["index", "field", "error"],
        "properties": {
            "index": {"type": "integer", "minimum": 0,
                      "description": "Position of the item in the request (0-based; blank NDJSON "
                                     "lines are not counted)."},
            "line": {"type": "integer", "minimum": 1,
                     "description": "NDJSON only: the 1-based line of the item."},
            "field": {"type": ["string", "null"],
                      "description": "The field at fault, e.g. due_at; null when the item as a "
                                     "whole is wrong (not JSON, not an object)."},
            "error": {"type": "string", "description": "What is wrong with that field."},
            "errors": {"type": "array", "description": "Every problem, when there are several.",
                       "items": {"type": "object", "properties": {
                           "field": {"type": ["string", "null"]}, "error": {"type": "string"}}}},
        },
    }
    schemas["IngestResult"] = {
        "type": "object",
        "required": ["accepted", "rejected"],
        "properties": {
            "accepted": {"type": "integer", "minimum": 0,
                         "description": "Events written to the events topic."},
            "rejected": {"type": "array", "items": {"$ref": "#/components/schemas/Rejection"}},
            "error": {"type": "string",
                      "description": "Present when the request as a whole was refused."},
        },
    }
    result = {"$ref": "#/components/schemas/IngestResult"}
    example_event = {
        "event_id": "e-1", "type": "promise", "occurred_at": "2026-11-28T14:00:00Z",
        "case_id": "case-42", "team": "billing", "channel": "phone",
        "promise_id": "case-42-callback", "due_at": "2026-11-28T15:00:00+00:00", "kind": "callback",
    }

    def answer(description: str, example: dict[str, Any] | None = None) -> dict[str, Any]:
        content: dict[str, Any] = {"schema": result}
        if example is not None:
            content["example"] = example
        return {"description": description, "content": {"application/json": content}}

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "servicewatch HTTP ingest",
            "version": "1",
            "description": (
                "Send interaction events to servicewatch over HTTP. Each worker serves this "
                "endpoint on its web port (default 6066). Accepted events are written to the "
                "events topic with the case id as the key, exactly as a Kafka emitter would. "
                "Repeats of an event_id are dropped by the workers, so retrying a request is safe."),
        },
        "servers": [{"url": "http://127.0.0.1:6066"}],
        "paths": {
            "/events": {
                "post": {
                    "summary": "Send one event, an array of events, or NDJSON",
                    "operationId": "postEvents",
                    "security": [{}, {"bearerToken": []}],
                    "requestBody": {
                        "required": True,
                        "description": (
                            "At most SERVICEWATCH_INGEST_MAX_BYTES (default 1 MiB) and 10,000 "
                            "events. NDJSON is one event per line; declare it with "
                            "Content-Type: application/x-ndjson (it is also recognised when the "
                            "first line is a complete JSON value)."),
                        "content": {
                            "application/json": {
                                "schema": {"oneOf": [
                                    {"$ref": "#/components/schemas/Event"},
                                    {"type": "array", "items": {"$ref": "#/components/schemas/Event"}},
                                ]},
                                "example": example_event,
                            },
                            "application/x-ndjson": {
                                "schema": {"type": "string",
                                           "description": "One Event as JSON per line."},
                            },
                        },
                    },
                    "responses": {
                        "202": answer("Every event was accepted and written to Kafka.",
                                      {"accepted": 2, "rejected": []}),
                        "207": answer(
                            "Some events were accepted (and written), others rejected; see "
                            "`rejected`. Fix those and send only them again.",
                            {"accepted": 1, "rejected": [{"index": 1, "field": "due_at", "error":
                             "timestamp has no time zone; add an offset such as +00:00 or Z"}]}),
                        "400": answer("Nothing was accepted: the body is not JSON/NDJSON, or "
                                      "every event was rejected (see `rejected`)."),
                        "401": answer("A token is configured and the request has no "
                                      "'Authorization: Bearer <token>'."),
                        "403": answer("The bearer token is wrong."),
                        "413": answer("The body is over the size limit or holds more than "
                                      "10,000 events; nothing was accepted."),
                        "503": answer("Kafka did not acknowledge the accepted events; retry the "
                                      "same request (repeats are dropped by event_id)."),
                    },
                },
            },
            "/openapi.yaml": {"get": {"summary": "This description, as YAML",
                                      "responses": {"200": {"description": "OpenAPI document"}}}},
            "/openapi.json": {"get": {"summary": "This description, as JSON",
                                      "responses": {"200": {"description": "OpenAPI document"}}}},
        },
        "components": {
            "securitySchemes": {"bearerToken": {
                "type": "http", "scheme": "bearer",
                "description": "Required when the worker runs with SERVICEWATCH_INGEST_TOKEN "
                               "(or --ingest-token)."}},
            "schemas": schemas,
        },
    }


def openapi_yaml() -> str:
    header = ("# servicewatch HTTP ingest (OpenAPI 3.1). Generated by `python -m streams.ingest "
              "openapi/ingest.yaml`;\n# served by every worker at /openapi.yaml. Do not edit.\n")
    return header + to_yaml(openapi_document())


_PLAIN_KEY = re.compile(r"[A-Za-z_$][A-Za-z0-9_$.\-]*")
_YAML_WORDS = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"})


def to_yaml(value: Any) -> str:
    """Block-style YAML for JSON-like data (dicts, lists, str, int, bool, None).

    Strings are written as JSON strings, which YAML reads as double-quoted scalars, so no
    value is ever re-typed by a YAML parser."""
    return "\n".join(_yaml_lines(value, 0)) + "\n"


def _yaml_lines(value: Any, indent: int) -> list[str]:
    pad = "  " * indent
    if isinstance(value, dict):
        lines = []
        for key, item in value.items():
            name = key if _PLAIN_KEY.fullmatch(key) and key.lower() not in _YAML_WORDS else _yaml_string(key)
            if _is_block(item):
                lines.append(f"{pad}{name}:")
                lines.extend(_yaml_lines(item, indent + 1))
            else:
                lines.append(f"{pad}{name}: {_yaml_scalar(item)}")
        return lines
    if isinstance(value, list):
        lines = []
        for item in value:
            if _is_block(item):
                nested = _yaml_lines(item, indent + 1)
                lines.append(f"{pad}- {nested[0][len(pad) + 2:]}")
                lines.extend(nested[1:])
            else:
                lines.append(f"{pad}- {_yaml_scalar(item)}")
        return lines
    return [pad + _yaml_scalar(value)]


def _is_block(value: Any) -> bool:
    return isinstance(value, (dict, list)) and bool(value)


# Characters YAML does not allow unescaped (outside its printable set), and the BOM;
# YAML also reads NEL, LS and PS as line breaks: escape them too.
_YAML_UNPRINTABLE = re.compile("[^\t\n\r\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]")


def _yaml_string(text: str) -> str:
    quoted = json.dumps(text, ensure_ascii=False)  # JSON escapes are YAML double-quoted escapes
    return _YAML_UNPRINTABLE.sub(lambda match: f"\\u{ord(match.group()):04x}", quoted)


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    if isinstance(value, str):
        return _yaml_string(value)
    return json.dumps(value)


def main(argv: Iterable[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    text = openapi_yaml()
    if not args:
        sys.stdout.write(text)
        return 0
    from pathlib import Path

    path = Path(args[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
