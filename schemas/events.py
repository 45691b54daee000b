"""The interaction events servicewatch consumes: one envelope, nine event types.

Every event shares the envelope fields; `type` selects the model (a discriminated union), so a
decoder dispatches on one key instead of trying each model in turn. The models are immutable
values, usable by emitters as well: build one and send `model_dump_json()`.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    StringConstraints,
    TypeAdapter,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError, CoreSchema, core_schema

NAIVE_TIMESTAMP_MESSAGE = "timestamp has no time zone; add an offset such as +00:00 or Z"


def _require_offset(value: datetime) -> datetime:
    # Event time drives every deadline; a naive time would be read in whatever zone the worker
    # runs in, so it is refused rather than guessed.
    if value.utcoffset() is None:
        raise PydanticCustomError("timezone_aware", NAIVE_TIMESTAMP_MESSAGE)
    return value


class _OffsetTimestamp:
    """Marks a datetime that must carry a UTC offset.

    From JSON only an ISO 8601 string is accepted (pydantic's lax mode would also take epoch
    numbers, which the published JSON Schema does not allow and whose unit would be a guess);
    from Python a datetime or an ISO 8601 string.
    """

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_after_validator_function(
            _require_offset,
            core_schema.json_or_python_schema(
                json_schema=core_schema.datetime_schema(strict=True),
                python_schema=core_schema.datetime_schema(),
            ),
        )


Timestamp = Annotated[datetime, _OffsetTimestamp]
Identifier = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
OptionalText = Annotated[str, StringConstraints(max_length=128)] | None
# The team becomes a Prometheus label: a short name from a small alphabet keeps series bounded
# and the label readable in PromQL without quoting surprises.
TeamName = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
]


class Channel(StrEnum):
    """How the customer and the team are in contact."""

    PHONE = "phone"
    EMAIL = "email"
    CHAT = "chat"
    SOCIAL = "social"
    IN_PERSON = "in_person"
    SMS = "sms"
    WEB = "web"
    VIDEO = "video"
    OTHER = "other"


class Audience(StrEnum):
    """Who the customer is: someone outside the company, or a co-worker in another team."""

    EXTERNAL = "external"
    INTERNAL = "internal"


class Priority(StrEnum):
    """Urgency of a request, where the emitter knows it; response targets may differ by it."""

    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class PromiseKind(StrEnum):
    """What was promised."""

    CALLBACK = "callback"
    DELIVERY = "delivery"
    RESOLUTION = "resolution"
    REFUND = "refund"
    VISIT = "visit"
    OTHER = "other"


def _require_type_in_schema(schema: dict[str, Any]) -> None:
    # `type` has a default so Python emitters need not repeat the class name, but on the wire it
    # is what selects the model: emitters in other languages must always send it.
    schema["required"] = ["type", *(name for name in schema.get("required", []) if name != "type")]


class Envelope(BaseModel):
    """Fields common to every event. Not an event on its own: see the event models below."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, json_schema_extra=_require_type_in_schema
    )

    event_id: Identifier = Field(
        description="Unique id of this event; a repeated event_id is dropped as a duplicate. "
        "Surrounding whitespace is removed."
    )
    # Declared here only to keep `type` second on the wire; each event narrows it to a literal.
    type: str = Field(description="Event type; selects which fields follow.")
    occurred_at: Timestamp = Field(
        description="When the event happened (event time), ISO 8601 with a UTC offset or Z, "
        "e.g. 2024-05-01T09:30:00+02:00. Times without an offset are rejected."
    )
    case_id: Identifier = Field(
        description="The customer case this event belongs to; also the Kafka message key, so all "
        "events of one case are read in order by one worker."
    )
    team: TeamName = Field(
        description="Team accountable for the case. Used as a metrics label: letters, digits, "
        "'_', '.', '-', starting with a letter or digit, at most 64 characters."
    )
    channel: Channel = Field(description="Contact channel.")
    agent_id: OptionalText = Field(default=None, description="The person acting, if known.")
    customer_id: OptionalText = Field(default=None, description="The customer, if known.")
    source: OptionalText = Field(default=None, description="The system that emitted the event.")
    schema_version: int = Field(default=1, ge=1, description="Version of this event schema.")
    audience: Audience = Field(
        default=Audience.EXTERNAL,
        description="external for customers outside the company; internal when the customer is "
        "a co-worker in another team (kept by the same rules, shown apart).",
    )


def _not_after_occurred_at(value: datetime, info: ValidationInfo) -> datetime:
    # Shared by greeting.contact_at and response.requested_at: a reply cannot precede the ask,
    # and a negative duration would corrupt the latency histograms.
    occurred_at = info.data.get("occurred_at")  # absent when occurred_at itself was invalid
    if occurred_at is not None and value > occurred_at:
        raise PydanticCustomError(
            "after_occurred_at", "must not be after occurred_at (the time of this event)"
        )
    return value


class Greeting(Envelope):
    """A customer contact is opened and acknowledged; measures time to greet
    (occurred_at - contact_at)."""

    type: Literal["greeting"] = Field(default="greeting", description="Always \"greeting\".")
    contact_at: Timestamp = Field(
        description="When the customer reached out; not after occurred_at. ISO 8601 with offset."
    )
    priority: Priority | None = Field(default=None, description="Urgency of the contact, if known.")

    _check_contact_at = field_validator("contact_at")(_not_after_occurred_at)


class Response(Envelope):
    """A reply to a customer; measures response time (occurred_at - requested_at), judged
    against a target per channel (and per team or priority where configured)."""

    type: Literal["response"] = Field(default="response", description="Always \"response\".")
    requested_at: Timestamp = Field(
        description="When the customer asked; not after occurred_at. ISO 8601 with offset."
    )
    priority: Priority | None = Field(default=None, description="Urgency of the request, if known.")

    _check_requested_at = field_validator("requested_at")(_not_after_occurred_at)


class Promise(Envelope):
    """A commitment made to the customer, to be kept by due_at and fulfilled by a delivery
    event with the same promise_id."""

    type: Literal["promise"] = Field(default="promise", description="Always \"promise\".")
    promise_id: Identifier = Field(description="Id of the promise; the delivery refers to it.")
    due_at: Timestamp = Field(description="When the promise falls due. ISO 8601 with offset.")
    kind: PromiseKind = Field(description="What kind of commitment this is.")


class Delivery(Envelope):
    """Fulfils a promise: on time if occurred_at <= the promise's due_at, else late."""

    type: Literal["delivery"] = Field(default="delivery", description="Always \"delivery\".")
    promise_id: Identifier = Field(description="Id of the promise this delivery fulfils.")


class Inquiry(Envelope):
    """A customer message awaiting an answer (occurred_at = when the customer asked).

    Starts the case's response clock: the next response on the case answers it, and if none
    comes within the response target the worker reports the response overdue while the
    customer is still waiting. Further inquiries before that answer do not restart the clock.
    """

    type: Literal["inquiry"] = Field(default="inquiry", description="Always \"inquiry\".")
    priority: Priority | None = Field(default=None, description="Urgency of the request, if known.")


class PromiseRevised(Envelope):
    """A promise renegotiated with the customer: a new due time, agreed before the old one
    passed. Counted as a renegotiation; the outcome is judged on the latest agreed time."""

    type: Literal["promise_revised"] = Field(
        default="promise_revised", description="Always \"promise_revised\"."
    )
    promise_id: Identifier = Field(description="Id of the promise being revised.")
    due_at: Timestamp = Field(description="The new due time. ISO 8601 with offset.")


class PromiseCancelled(Envelope):
    """A promise withdrawn before its due time (e.g. the customer no longer needs it); it
    leaves the on-time/missed count. A cancellation after the due time changes nothing."""

    type: Literal["promise_cancelled"] = Field(
        default="promise_cancelled", description="Always \"promise_cancelled\"."
    )
    promise_id: Identifier = Field(description="Id of the promise being cancelled.")
    reason: OptionalText = Field(default=None, description="Why, in a few words, if known.")


class Feedback(Envelope):
    """A customer's satisfaction score for the case (1 = very dissatisfied, 5 = very satisfied)."""

    type: Literal["feedback"] = Field(default="feedback", description="Always \"feedback\".")
    score: int = Field(ge=1, le=5, strict=True, description="Satisfaction score, 1 to 5.")


class Complaint(Envelope):
    """A customer complaint about the service on this case."""

    type: Literal["complaint"] = Field(default="complaint", description="Always \"complaint\".")
    category: OptionalText = Field(
        default=None, description="What the complaint is about, if the emitter knows (free text)."
    )


EVENT_MODELS: tuple[type[Envelope], ...] = (
    Greeting, Response, Promise, Delivery,
    Inquiry, PromiseRevised, PromiseCancelled, Feedback, Complaint,
)
EVENT_TYPES: tuple[str, ...] = tuple(model.model_fields["type"].default for model in EVENT_MODELS)

Event = Annotated[
    Union[
        Greeting, Response, Promise, Delivery,
        Inquiry, PromiseRevised, PromiseCancelled, Feedback, Complaint,
    ],
    Field(discriminator="type"),
]
"""Any event; the `type` field selects the model."""

# Built once at import: building the validator is the expensive part, validating is cheap.
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)
