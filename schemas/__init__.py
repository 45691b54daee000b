"""Event models for servicewatch, their decoder, and the JSON Schemas generated from them."""

from schemas.decode import REJECT_REASONS, InvalidEvent, decode_event
from schemas.events import (
    EVENT_ADAPTER,
    EVENT_MODELS,
    EVENT_TYPES,
    Audience,
    Channel,
    Delivery,
    Envelope,
    Event,
    Greeting,
    Priority,
    Promise,
    PromiseKind,
    Response,
)

__all__ = [
    "EVENT_ADAPTER",
    "EVENT_MODELS",
    "EVENT_TYPES",
    "REJECT_REASONS",
    "Audience",
    "Channel",
    "Delivery",
    "Envelope",
    "Event",
    "Greeting",
    "InvalidEvent",
    "Priority",
    "Promise",
    "PromiseKind",
    "Response",
    "decode_event",
]
