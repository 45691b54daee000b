"""What a dead letter says: why the event was refused, where it came from, and the event itself."""

from __future__ import annotations

import base64
from typing import Any

from streams.processor import Rejection


def dead_letter(message: Any, rejection: Rejection) -> dict:
    """A JSON-ready dead letter for the consumed ``message``; the original bytes are kept."""
    letter = {
        "reason": rejection.reason,
        "error": rejection.detail,
        "source": {
            "topic": message.topic,
            "partition": message.partition,
            "offset": message.offset,
            "timestamp": message.timestamp,
        },
        "key": _text(message.key),
    }
    letter.update(_payload(message.value))
    return letter


def _text(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    return raw.decode("utf-8", errors="replace")


def _payload(raw: bytes | None) -> dict:
    if raw is None:
        return {"payload": None}
    try:
        return {"payload": raw.decode("utf-8")}
    except UnicodeDecodeError:
        return {"payload_base64": base64.b64encode(raw).decode("ascii")}
