"""The event model: what the journal records, as typed, immutable values.

An event has an envelope (where it sits in the ledger and when it happened) and a payload (what
happened). Payloads are frozen dataclasses, one per event type; each knows its ``EventType`` and
turns to and from a plain JSON object. The journal stores that object as compact, key-sorted
JSON text, and the hash chain covers those exact bytes (see ``gateway.journal.chain``).

Times are integer milliseconds since the Unix epoch, never floats: the feeder's MicroPython has
single-precision floats, and order comes from ``seq``, never from time.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Self

from gateway.errors import PayloadError

# Re-exported: decoders import the field helpers from here, beside the types they build.
from gateway.fields import non_negative_int as non_negative_int  # noqa: PLC0414 - re-export
from gateway.fields import optional as optional  # noqa: PLC0414 - re-export
from gateway.fields import parse_enum as parse_enum  # noqa: PLC0414 - re-export
from gateway.fields import require as require  # noqa: PLC0414 - re-export


class EventType(StrEnum):
    FEED_REQUESTED = "FeedRequested"
    FEED_REJECTED = "FeedRejected"
    FEED_DISPENSED = "FeedDispensed"
    FEED_UNCONFIRMED = "FeedUnconfirmed"
    FOOD_LEVEL_CHANGED = "FoodLevelChanged"
    FEEDER_ONLINE = "FeederOnline"
    FEEDER_OFFLINE = "FeederOffline"
    GATEWAY_STARTED = "GatewayStarted"
    GATEWAY_STOPPED = "GatewayStopped"
    EVENT_DEAD_LETTERED = "EventDeadLettered"
    INPUTS_SUPPRESSED = "InputsSuppressed"

    @property
    def detail_type(self) -> str:
        """EventBridge detail-type: the same words, spaced ("Feed Requested")."""
        words: list[str] = []
        for ch in self.value:
            if ch.isupper() and words:
                words.append(" ")
            words.append(ch)
        return "".join(words)


class Origin(StrEnum):
    """Where an input came from."""

    BUTTON = "button"
    CLI = "cli"
    CLOUD = "cloud"
    SCHEDULE = "schedule"
    FEEDER = "feeder"
    GATEWAY = "gateway"


REQUEST_ORIGINS = frozenset({Origin.BUTTON, Origin.CLI, Origin.CLOUD, Origin.SCHEDULE})


class Bowl(StrEnum):
    LEFT = "left"
    RIGHT = "right"


class ClickType(StrEnum):
    SINGLE = "SINGLE"
    DOUBLE = "DOUBLE"
    LONG = "LONG"


class RejectReason(StrEnum):
    """Reasons the gateway gives; a feeder may give others (kept as free text)."""

    CAP = "cap"
    TOO_SOON = "too-soon"
    EXPIRED = "expired"
    ECHO = "echo"
    DUPLICATE = "duplicate"


class RefusedBy(StrEnum):
    GATEWAY = "gateway"
    FEEDER = "feeder"


# --- validation of JSON objects (journal rows, wire payloads) -------------------------------


def parse_bowls(value: Any, key: str = "bowls") -> tuple[Bowl, ...]:
    """A non-empty list of distinct bowls, returned in canonical order (left before right)."""
    if not isinstance(value, list | tuple) or not value:
        raise PayloadError(key, "expected a non-empty list of bowls")
    bowls = {parse_enum(Bowl, key, v) for v in value}
    if len(bowls) != len(value):
        raise PayloadError(key, "a bowl is named twice")
    return canonical_bowls(bowls)


def canonical_bowls(bowls: Iterable[Bowl]) -> tuple[Bowl, ...]:
    return tuple(b for b in Bowl if b in set(bowls))


# --- payloads ------------------------------------------------------------------------------


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

    def _request_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "request_id": self.request_id,
            "bowls": [b.value for b in self.bowls],
            "portion_ms": self.portion_ms,
            "expires_at_ms": self.expires_at_ms,
            "origin": self.origin.value,
        }
        if self.button is not None:
            out["button"] = self.button
        if self.click_type is not None:
            out["click_type"] = self.click_type.value
        return out

    @staticmethod
    def _request_fields(data: Mapping[str, Any]) -> dict[str, Any]:
        click = optional(data, "click_type", str)
        return {
            "request_id": require(data, "request_id", str),
            "bowls": parse_bowls(require(data, "bowls", list)),
            "portion_ms": non_negative_int(data, "portion_ms"),
            "expires_at_ms": non_negative_int(data, "expires_at_ms"),
            "origin": parse_enum(Origin, "origin", require(data, "origin", str)),
            "button": optional(data, "button", str),
            "click_type": None if click is None else parse_enum(ClickType, "click_type", click),
        }


@dataclass(frozen=True, slots=True)
class FeedRequested(_RequestData):
    TYPE: ClassVar[EventType] = EventType.FEED_REQUESTED

    def to_dict(self) -> dict[str, Any]:
        return self._request_dict()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls(**cls._request_fields(data))


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
            **cls._request_fields(data),
            reason=require(data, "reason", str),
            refused_by=parse_enum(RefusedBy, "refused_by", require(data, "refused_by", str)),
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


MAX_SUPPRESSED_KEYS = 64


@dataclass(frozen=True, slots=True)
class InputsSuppressed:
    """A flood summarised: inputs counted rather than journaled one by one over ``window_ms``.

    ``counts`` maps what was suppressed to how many: ``button:<name>:<reason>`` for presses the
    policy would only have refused again, ``feeder:<topic>`` for feeder reports coalesced into
    the one change journaled. (Older journals never hold it; readers that predate it see an
    unknown type, as for any new event.)
    """

    TYPE: ClassVar[EventType] = EventType.INPUTS_SUPPRESSED
    counts: Mapping[str, int]
    window_ms: int

    def to_dict(self) -> dict[str, Any]:
        return {"counts": dict(sorted(self.counts.items())), "window_ms": self.window_ms}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        raw: dict[str, Any] = require(data, "counts", dict)
        if len(raw) > MAX_SUPPRESSED_KEYS:
            raise PayloadError("counts", f"more than {MAX_SUPPRESSED_KEYS} keys")
        counts = {str(k): non_negative_int(raw, k) for k in raw}
        return cls(counts, non_negative_int(data, "window_ms"))


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
        InputsSuppressed,
    )
}


def payload_from_dict(event_type: str, data: Mapping[str, Any]) -> Payload:
    cls = PAYLOAD_TYPES[parse_enum(EventType, "type", event_type)]
    return cls.from_dict(data)


# Built once: json.dumps with these options builds a new encoder per call, which was half the
# cost of encoding a payload on every append. An encoder keeps no state between calls.
_CANONICAL = json.JSONEncoder(separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def canonical_json(data: Mapping[str, Any]) -> str:
    """The one JSON text a payload is stored as: compact, keys sorted, UTF-8 (no newlines)."""
    return _CANONICAL.encode(data)


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

    @property
    def type(self) -> EventType:
        return self.payload.TYPE

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
