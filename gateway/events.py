"""The event model: what the journal records, as typed, immutable values.

An event has an envelope (where it sits in the ledger and when it happened) and a payload (what
happened). Payloads are frozen dataclasses, one per event type; each knows its ``EventType`` and
turns to and from a plain JSON object. The journal stores that object as compact, key-sorted
JSON text, and the hash chain covers those exact bytes (see ``gateway.journal.chain``).

Times are integer milliseconds since the Unix epoch, never floats: the feeder's MicroPython has
single-precision floats, and order comes from ``seq``, never from time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Self

from gateway.canonical import canonical_json
from gateway.event_kinds import (
    REQUEST_ORIGINS,
    AlertKind,
    Bowl,
    ClickType,
    EventType,
    Origin,
    RefusedBy,
    RejectReason,
)
from gateway.home_events import AlertCleared, AlertRaised, MealSkipped, SchedulePaused
from gateway.input_events import InputsSuppressed
from gateway.payload_fields import (
    canonical_bowls,
    non_negative_int,
    optional,
    parse_bowls,
    parse_enum,
    require,
)

# The vocabularies and the field validators live in their own modules (so the payload modules
# can share them without importing each other); this is the one place to import them from.
__all__ = [
    "PAYLOAD_KEYS",
    "PAYLOAD_TYPES",
    "REQUEST_ORIGINS",
    "AlertCleared",
    "AlertKind",
    "AlertRaised",
    "Bowl",
    "ClickType",
    "Event",
    "EventDeadLettered",
    "EventType",
    "FeedDispensed",
    "FeedRejected",
    "FeedRequested",
    "FeedUnconfirmed",
    "FeederOffline",
    "FeederOnline",
    "FoodLevelChanged",
    "GatewayStarted",
    "GatewayStopped",
    "InputsSuppressed",
    "MealSkipped",
    "NewEvent",
    "Origin",
    "Payload",
    "RefusedBy",
    "RejectReason",
    "SchedulePaused",
    "canonical_bowls",
    "canonical_json",
    "non_negative_int",
    "optional",
    "parse_bowls",
    "parse_enum",
    "payload_from_dict",
    "require",
]


# --- payloads ------------------------------------------------------------------------------


# _RequestData's fields, in order.
_RequestFields = tuple[
    str, tuple[Bowl, ...], int, int, Origin, str | None, ClickType | None, str | None, int | None
]


@dataclass(frozen=True, slots=True)
class _RequestData:
    """What a feed request carries; shared by FeedRequested and FeedRejected."""

    request_id: str
    bowls: tuple[Bowl, ...]
    portion_ms: int
    expires_at_ms: int
    origin: Origin
    button: str | None = None
    click_type: ClickType | None = None
    # A scheduled meal's identity: its schedule and the instant it was due (origin schedule).
    # Absent from older events and other origins, and then not stored (the hash is unchanged).
    schedule: str | None = None
    meal_at_ms: int | None = None

    def _request_dict(self) -> dict[str, Any]:
        # The enums are StrEnums: each member is its own value as a str, and JSON writes it so.
        # Used as they are: reading ``.value`` costs an enum descriptor call per field, and
        # this runs for every request read back and sent on.
        out: dict[str, Any] = {
            "request_id": self.request_id,
            "bowls": list(self.bowls),
            "portion_ms": self.portion_ms,
            "expires_at_ms": self.expires_at_ms,
            "origin": self.origin,
        }
        if self.button is not None:
            out["button"] = self.button
        if self.click_type is not None:
            out["click_type"] = self.click_type
        if self.schedule is not None:
            out["schedule"] = self.schedule
        if self.meal_at_ms is not None:
            out["meal_at_ms"] = self.meal_at_ms
        return out

    @staticmethod
    def _request_fields(data: Mapping[str, Any]) -> _RequestFields:
        """The fields in declaration order (passed positionally: every request read back
        from the journal comes through here, and keywords cost more)."""
        click = optional(data, "click_type", str)
        meal_at = None if data.get("meal_at_ms") is None else non_negative_int(data, "meal_at_ms")
        return (
            require(data, "request_id", str),
            parse_bowls(require(data, "bowls", list)),
            non_negative_int(data, "portion_ms"),
            non_negative_int(data, "expires_at_ms"),
            parse_enum(Origin, "origin", require(data, "origin", str)),
            optional(data, "button", str),
            None if click is None else parse_enum(ClickType, "click_type", click),
            optional(data, "schedule", str),
            meal_at,
        )


@dataclass(frozen=True, slots=True)
class FeedRequested(_RequestData):
    TYPE: ClassVar[EventType] = EventType.FEED_REQUESTED

    def to_dict(self) -> dict[str, Any]:
        return self._request_dict()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls(*cls._request_fields(data))


@dataclass(frozen=True, slots=True)
class FeedRejected(_RequestData):
    TYPE: ClassVar[EventType] = EventType.FEED_REJECTED
    reason: str = ""
    refused_by: RefusedBy = RefusedBy.GATEWAY

    @classmethod
    def of(cls, request: _RequestData, reason: str, refused_by: RefusedBy) -> FeedRejected:
        return cls(
            request_id=request.request_id,
            bowls=request.bowls,
            portion_ms=request.portion_ms,
            expires_at_ms=request.expires_at_ms,
            origin=request.origin,
            button=request.button,
            click_type=request.click_type,
            schedule=request.schedule,
            meal_at_ms=request.meal_at_ms,
            reason=reason,
            refused_by=refused_by,
        )

    def to_dict(self) -> dict[str, Any]:
        out = self._request_dict()
        out["reason"] = self.reason
        out["refused_by"] = self.refused_by.value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            *cls._request_fields(data),
            require(data, "reason", str),
            parse_enum(RefusedBy, "refused_by", require(data, "refused_by", str)),
        )


@dataclass(frozen=True, slots=True)
class FeedDispensed:
    TYPE: ClassVar[EventType] = EventType.FEED_DISPENSED
    request_id: str
    bowls: tuple[Bowl, ...]
    ran_ms: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "bowls": [b.value for b in self.bowls],
            "ran_ms": self.ran_ms,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            request_id=require(data, "request_id", str),
            bowls=parse_bowls(require(data, "bowls", list)),
            ran_ms=non_negative_int(data, "ran_ms"),
        )


@dataclass(frozen=True, slots=True)
class FeedUnconfirmed:
    TYPE: ClassVar[EventType] = EventType.FEED_UNCONFIRMED
    request_id: str
    bowls: tuple[Bowl, ...]
    waited_ms: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "bowls": [b.value for b in self.bowls],
            "waited_ms": self.waited_ms,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            request_id=require(data, "request_id", str),
            bowls=parse_bowls(require(data, "bowls", list)),
            waited_ms=non_negative_int(data, "waited_ms"),
        )


@dataclass(frozen=True, slots=True)
class FoodLevelChanged:
    TYPE: ClassVar[EventType] = EventType.FOOD_LEVEL_CHANGED
    level: int
    previous: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"level": self.level, "previous": self.previous}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls(level=require(data, "level", int), previous=optional(data, "previous", int))


@dataclass(frozen=True, slots=True)
class FeederOnline:
    TYPE: ClassVar[EventType] = EventType.FEEDER_ONLINE

    def to_dict(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls()


@dataclass(frozen=True, slots=True)
class FeederOffline:
    TYPE: ClassVar[EventType] = EventType.FEEDER_OFFLINE

    def to_dict(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls()


@dataclass(frozen=True, slots=True)
class GatewayStarted:
    TYPE: ClassVar[EventType] = EventType.GATEWAY_STARTED
    version: str
    clock_synced: bool
    gateway_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "clock_synced": self.clock_synced,
            "gateway_id": self.gateway_id,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            version=require(data, "version", str),
            clock_synced=require(data, "clock_synced", bool),
            gateway_id=optional(data, "gateway_id", str) or "",
        )


@dataclass(frozen=True, slots=True)
class GatewayStopped:
    TYPE: ClassVar[EventType] = EventType.GATEWAY_STOPPED
    version: str
    clock_synced: bool
    reason: str = "signal"

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "clock_synced": self.clock_synced, "reason": self.reason}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            version=require(data, "version", str),
            clock_synced=require(data, "clock_synced", bool),
            reason=optional(data, "reason", str) or "",
        )


@dataclass(frozen=True, slots=True)
class EventDeadLettered:
    """A sink gave up on an event it can never deliver (too large, refused as invalid): the
    event stays in the ledger, the sink moves past it, and this says so."""

    TYPE: ClassVar[EventType] = EventType.EVENT_DEAD_LETTERED
    sink: str
    # "dead_": the cloud detail adds this notice's own "seq" and "event-id" beside them.
    dead_seq: int
    dead_event_id: str
    error: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "sink": self.sink,
            "dead_seq": self.dead_seq,
            "dead_event_id": self.dead_event_id,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            sink=require(data, "sink", str),
            dead_seq=non_negative_int(data, "dead_seq"),
            dead_event_id=require(data, "dead_event_id", str),
            error=require(data, "error", str),
        )


Payload = (
    FeedRequested
    | FeedRejected
    | FeedDispensed
    | FeedUnconfirmed
    | FoodLevelChanged
    | FeederOnline
    | FeederOffline
    | GatewayStarted
    | GatewayStopped
    | EventDeadLettered
    | MealSkipped
    | SchedulePaused
    | AlertRaised
    | AlertCleared
    | InputsSuppressed
)

PAYLOAD_TYPES: dict[EventType, type[Payload]] = {
    cls.TYPE: cls
    for cls in (
        FeedRequested,
        FeedRejected,
        FeedDispensed,
        FeedUnconfirmed,
        FoodLevelChanged,
        FeederOnline,
        FeederOffline,
        GatewayStarted,
        GatewayStopped,
        EventDeadLettered,
        MealSkipped,
        SchedulePaused,
        AlertRaised,
        AlertCleared,
        InputsSuppressed,
    )
}


def payload_from_dict(event_type: str, data: Mapping[str, Any]) -> Payload:
    # A StrEnum member hashes and compares as its value: the text looks its class up directly
    # (anything but a str goes to parse_enum, which names what is wrong).
    cls: type[Payload] | None = (
        PAYLOAD_TYPES.get(event_type)  # type: ignore[call-overload]
        if type(event_type) is str
        else None
    )
    if cls is None:
        cls = PAYLOAD_TYPES[parse_enum(EventType, "type", event_type)]
    return cls.from_dict(data)


# Each payload type's field names: what its dict may hold (to_dict writes no other key).
PAYLOAD_KEYS: dict[type[Payload], frozenset[str]] = {
    cls: frozenset(f.name for f in fields(cls)) for cls in PAYLOAD_TYPES.values()
}


# --- envelopes -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event about to be appended: the journal gives it a seq and its chain hash."""

    event_id: str
    occurred_at_ms: int
    clock_synced: bool
    origin: Origin
    payload: Payload

    @property
    def type(self) -> EventType:
        return self.payload.TYPE


@dataclass(frozen=True, slots=True)
class Event:
    """An event as the journal holds it."""

    seq: int
    event_id: str
    occurred_at_ms: int
    clock_synced: bool
    origin: Origin
    payload: Payload
    recovered: bool = False
    prev_hash: str = ""
    hash: str = ""
    # Not stored: true while the event is held in memory because the disk refused it.
    held: bool = field(default=False, compare=False)
    # The payload's stored JSON text (canonical_json of its dict) when the journal knows it,
    # else "". Kept so that the cloud detail, built for every event sent, need not encode
    # the payload again (Event.payload_text, gateway.cloud_event).
    stored_payload: str = field(default="", compare=False, repr=False)

    @property
    def type(self) -> EventType:
        return self.payload.TYPE

    def payload_text(self) -> str:
        """The payload as the journal stores it (canonical JSON): the text it was read with,
        or encoded afresh for an event that never was."""
        return self.stored_payload or canonical_json(self.payload.to_dict())

    def to_dict(self) -> dict[str, Any]:
        """The JSON object ``fmfb journal list --json`` prints, one per line."""
        return {
            "seq": self.seq,
            "event_id": self.event_id,
            "type": self.type.value,
            "occurred_at_ms": self.occurred_at_ms,
            "clock_synced": self.clock_synced,
            "origin": self.origin.value,
            "recovered": self.recovered,
            "payload": self.payload.to_dict(),
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }
