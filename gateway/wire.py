"""What travels on the local MQTT broker: pure decoders and encoders, no I/O.

Everything that arrives from the network is untrusted bytes. Each decoder here returns a value
or raises :class:`~gateway.errors.PayloadError` naming the offending field ("" for the payload
as a whole) — never another exception — so the MQTT input can count and log a misbehaving
device with one ``except`` and carry on. Payloads over :data:`MAX_PAYLOAD_BYTES` are refused
before any parsing, and JSON is parsed strictly (UTF-8 only, no ``NaN``/``Infinity``, nesting
and integer size bounded), because a device must not be able to make the gateway burn memory
or stack.

Topics (defaults, see docs/architecture.md, "Local MQTT topics"):

- ``cat-feeder/action`` (gateway → feeder): :func:`encode_action`, with
  :func:`message_expiry_s` for the MQTT 5 Message Expiry Interval.
- ``cat-feeder/dispensed`` (feeder → gateway): :func:`decode_dispensed`.
- ``cat-feeder/states`` (feeder → gateway): :func:`decode_states`.
- ``cat-feeder/availability`` (feeder → gateway, retained last will):
  :func:`decode_availability`.
- MQTT buttons: :func:`decode_button`.

Times on the wire are integers (ms since the epoch) or RFC 3339 strings, never floats: the
feeder's MicroPython has single-precision floats, so a float timestamp would lose whole minutes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, NoReturn

from gateway.errors import PayloadError
from gateway.events import (
    Bowl,
    ClickType,
    FeedRequested,
    canonical_bowls,
    optional,
    parse_bowls,
    parse_enum,
    require,
)
from gateway.reports import DispensedReport, DispenseStatus, StatesReport

__all__ = [
    "DEFAULT_CLICK_BOWLS",
    "MAX_PAYLOAD_BYTES",
    "MAX_RAN_MS",
    "MAX_REASON_CHARS",
    "MAX_REQUEST_ID_CHARS",
    "DispenseStatus",
    "DispensedReport",
    "StatesReport",
    "click_for_bowls",
    "decode_availability",
    "decode_button",
    "decode_dispensed",
    "decode_states",
    "encode_action",
    "message_expiry_s",
    "rfc3339_ms",
]

MAX_PAYLOAD_BYTES = 16 * 1024
"""Largest payload any decoder looks at; the feeder's and buttons' messages are a few dozen
bytes, so anything bigger is a misbehaving device and is refused before parsing."""

MAX_REQUEST_ID_CHARS = 128
MAX_REASON_CHARS = 256
MAX_RAN_MS = 2**31 - 1
"""Motors never run for 24 days; the bound keeps the value inside MicroPython's small ints and
SQLite's INTEGER, so a bogus report cannot break the journal write downstream."""

MAX_MESSAGE_EXPIRY_S = 2**32 - 1
"""MQTT 5 Message Expiry Interval is a four-byte unsigned integer."""

DEFAULT_CLICK_BOWLS: Mapping[ClickType, tuple[Bowl, ...]] = MappingProxyType(
    {
        ClickType.SINGLE: (Bowl.LEFT,),
        ClickType.DOUBLE: (Bowl.RIGHT,),
        ClickType.LONG: (Bowl.LEFT, Bowl.RIGHT),
    }
)
"""The published firmware's gestures: single → left bowl, double → right, long → both."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Button vocabulary (lower-cased). zigbee2mqtt publishes {"action": "single"|"double"|"hold"|
# ...}, and on its legacy "<device>/action" topic the same word bare; IoT 1-Click style buttons
# publish SINGLE/DOUBLE/LONG. "release" (end of a hold) and "" / null (z2m clearing the action
# after publishing it) are known and carry no press.
_BARE_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")

_BUTTON_ACTIONS: Mapping[str, ClickType | None] = MappingProxyType(
    {
        "single": ClickType.SINGLE,
        "double": ClickType.DOUBLE,
        "long": ClickType.LONG,
        "hold": ClickType.LONG,
        "release": None,
        "": None,
    }
)


# --- decoding --------------------------------------------------------------------------------


def decode_button(payload: bytes) -> ClickType | None:
    """A press from an MQTT button, or None for a message that is known and carries no press.

    Bare words (case-insensitive, surrounding whitespace ignored): ``SINGLE``, ``DOUBLE``,
    ``LONG``, and zigbee2mqtt's ``hold`` / ``release``. JSON objects: ``{"action": ...}`` with
    the same words; an object without ``"action"`` (z2m's battery / linkquality updates) is
    None. Anything else is a PayloadError naming ``"action"`` or ``""``.
    """
    text = _text(payload).strip()
    word = text.lower()
    if word in _BUTTON_ACTIONS and word:
        return _BUTTON_ACTIONS[word]
    if not text:
        raise PayloadError("", "empty payload")
    if _BARE_WORD.fullmatch(text) and word not in ("null", "true", "false"):
        # A bare word we do not know (``triple``): say so, rather than "not JSON".
        raise PayloadError(
            "action", f"unknown action {_show(text)} (known: SINGLE, DOUBLE, LONG, hold, release)"
        )
    data = _object(_parse_json(text))
    if "action" not in data:
        if not data:
            raise PayloadError("action", "missing")
        return None  # a state update (battery, linkquality, ...), not a press
    action = data["action"]
    if action is None:
        return None
    if not isinstance(action, str):
        raise PayloadError("action", f"expected a string, got {_json_kind(action)}")
    key = action.strip().lower()
    if key not in _BUTTON_ACTIONS:
        raise PayloadError("action", f"unknown action {_show(action)}")
    return _BUTTON_ACTIONS[key]


def decode_dispensed(payload: bytes) -> DispensedReport:
    """``{"id", "status", "reason"?, "bowls"?, "ran_ms"?}`` from the feeder."""
    data = _object(_parse_json(_text(payload)))
    request_id: str = require(data, "id", str)
    if not request_id:
        raise PayloadError("id", "must not be empty")
    if len(request_id) > MAX_REQUEST_ID_CHARS:
        raise PayloadError("id", f"longer than {MAX_REQUEST_ID_CHARS} characters")
    if not request_id.isprintable():
        raise PayloadError("id", "contains control or unencodable characters")
    status = parse_enum(DispenseStatus, "status", require(data, "status", str))
    reason: str | None = optional(data, "reason", str)
    if reason is not None:
        if len(reason) > MAX_REASON_CHARS:
            raise PayloadError("reason", f"longer than {MAX_REASON_CHARS} characters")
        if not _utf8_encodable(reason):
            raise PayloadError("reason", "contains unencodable characters")
    bowls_raw = optional(data, "bowls", list)
    bowls = None if bowls_raw is None else parse_bowls(bowls_raw)
    ran_ms: int | None = optional(data, "ran_ms", int)
    if ran_ms is not None and not 0 <= ran_ms <= MAX_RAN_MS:
        raise PayloadError("ran_ms", f"must be within 0..{MAX_RAN_MS}")
    return DispensedReport(
        request_id=request_id, status=status, reason=reason, bowls=bowls, ran_ms=ran_ms
    )


def decode_states(payload: bytes) -> StatesReport:
    """``{"food_capacity": 0..100, ...}``; an object without it is ``StatesReport(None)``."""
    data = _object(_parse_json(_text(payload)))
    level: int | None = optional(data, "food_capacity", int)
    if level is not None and not 0 <= level <= 100:
        raise PayloadError("food_capacity", f"must be within 0..100, got {_show(level)}")
    return StatesReport(food_capacity=level)


def decode_availability(payload: bytes) -> bool:
    """The feeder's retained last will: ``online`` → True, ``offline`` → False."""
    word = _text(payload).strip().lower()
    if word == "online":
        return True
    if word == "offline":
        return False
    raise PayloadError("", f"expected 'online' or 'offline', got {_show(word)}")


# --- encoding --------------------------------------------------------------------------------


def click_for_bowls(
    bowls: tuple[Bowl, ...], mapping: Mapping[ClickType, tuple[Bowl, ...]]
) -> ClickType:
    """The click type that makes a feeder feed ``bowls``.

    A feeder running the published firmware reads only ``"event"``, so every action carries
    one: the first click type (SINGLE, DOUBLE, LONG) whose mapped bowls equal these bowls, order
    aside; if the mapping has none, the published firmware's gestures
    (:data:`DEFAULT_CLICK_BOWLS`). ValueError if ``bowls`` is empty (no request has no bowls).
    """
    wanted = canonical_bowls(bowls)
    if not wanted:
        raise ValueError("a feed request names at least one bowl")
    for source in (mapping, DEFAULT_CLICK_BOWLS):
        for click in ClickType:
            mapped = source.get(click)
            if mapped is not None and canonical_bowls(mapped) == wanted:
                return click
    raise ValueError(f"no click type feeds {wanted!r}")  # pragma: no cover - defaults are total


def encode_action(request: FeedRequested, *, event: ClickType, reported_time_ms: int) -> bytes:
    """The ``cat-feeder/action`` message for ``request``: compact ASCII JSON."""
    message = {
        "event": ClickType(event).value,
        "reportedTime": rfc3339_ms(reported_time_ms),
        "id": request.request_id,
        "bowls": [b.value for b in request.bowls],
        "portion_ms": request.portion_ms,
        "expires_at_ms": request.expires_at_ms,
    }
    return json.dumps(message, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def rfc3339_ms(t_ms: int) -> str:
    """Integer ms since the epoch → ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (UTC), in integer arithmetic.

    ValueError if the time falls outside years 1..9999.
    """
    seconds, millis = divmod(t_ms, 1000)  # floor division: millis is 0..999 before 1970 too
    try:
        t = _EPOCH + timedelta(seconds=seconds)
    except OverflowError as e:
        raise ValueError(f"{t_ms} ms is outside years 1..9999") from e
    return (
        f"{t.year:04d}-{t.month:02d}-{t.day:02d}T"
        f"{t.hour:02d}:{t.minute:02d}:{t.second:02d}.{millis:03d}Z"
    )


def message_expiry_s(expires_at_ms: int, now_ms: int) -> int:
    """MQTT 5 Message Expiry Interval: whole seconds left, rounded up, within 1..2**32-1.

    Rounding up keeps the message alive until its expiry (the feeder checks ``expires_at_ms``
    itself, so a second of slack feeds nothing stale). At least 1, because Mosquitto reads 0 as
    "no expiry"; callers have already refused a request that has expired.
    """
    left_ms = expires_at_ms - now_ms
    seconds = -(-left_ms // 1000)  # ceiling, in integers
    return max(1, min(seconds, MAX_MESSAGE_EXPIRY_S))


# --- helpers ---------------------------------------------------------------------------------


def _text(payload: bytes) -> str:
    """The payload as text: bounded in size and strictly UTF-8."""
    if isinstance(payload, bytearray | memoryview):
        payload = bytes(payload)
    if not isinstance(payload, bytes):
        raise PayloadError("", f"expected bytes, got {type(payload).__name__}")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadError("", f"{len(payload)} bytes is over the {MAX_PAYLOAD_BYTES} limit")
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as e:
        raise PayloadError("", f"not UTF-8 (byte {e.start})") from None


def _reject_constant(name: str) -> NoReturn:
    raise PayloadError("", f"{name} is not a JSON number")


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except PayloadError:
        raise
    except RecursionError:
        raise PayloadError("", "JSON nested too deeply") from None
    except ValueError as e:  # JSONDecodeError, and int() refusing a number of 4300+ digits
        raise PayloadError("", f"not JSON: {_show(str(e))}") from None


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PayloadError("", f"expected a JSON object, got {_json_kind(value)}")
    return value


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    kinds = {int: "a number", float: "a number", str: "a string", list: "a list", dict: "an object"}
    return kinds.get(type(value), type(value).__name__)


def _utf8_encodable(text: str) -> bool:
    """False for lone surrogates (JSON ``"\\ud800"``), which no UTF-8 store can hold."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _show(value: object, limit: int = 60) -> str:
    """A bounded repr for messages: a device's garbage must not flood the log."""
    shown = repr(value)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


# --- remote commands (cloud → gateway, on IoT Core's cat-feeder/action) ----------------------


@dataclass(frozen=True, slots=True)
class RemoteCommand:
    """A feed command from the cloud: the contract's action message, or the published
    Lambda's id-less ``{"event": ..., "reportedTime": ...}``."""

    click: ClickType
    reported_ms: int | None
    request_id: str | None
    bowls: tuple[Bowl, ...] | None
    portion_ms: int | None
    expires_at_ms: int | None


def parse_rfc3339_ms(text: str, field: str = "reportedTime") -> int:
    """An RFC 3339 time (``Z`` or an offset; fractional seconds optional) → integer ms."""
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        raise PayloadError(field, f"not an RFC 3339 time: {_show(text)}") from None
    if dt.tzinfo is None:
        raise PayloadError(field, "an RFC 3339 time needs a zone (Z or an offset)")
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def decode_remote_command(payload: bytes) -> RemoteCommand:
    data = _object(_parse_json(_text(payload)))
    click = parse_enum(ClickType, "event", _upper(require(data, "event", str)))
    reported = optional(data, "reportedTime", str)
    request_id = optional(data, "id", str)
    if request_id is not None and not 0 < len(request_id) <= MAX_REQUEST_ID_CHARS:
        raise PayloadError("id", f"must be 1..{MAX_REQUEST_ID_CHARS} characters")
    bowls = data.get("bowls")
    portion: int | None = optional(data, "portion_ms", int)
    if portion is not None and not 0 < portion <= 120_000:
        raise PayloadError("portion_ms", "must be between 1 and 120000")
    expires: int | None = optional(data, "expires_at_ms", int)
    if expires is not None and expires < 0:
        raise PayloadError("expires_at_ms", "must not be negative")
    return RemoteCommand(
        click=click,
        reported_ms=None if reported is None else parse_rfc3339_ms(reported),
        request_id=request_id,
        bowls=None if bowls is None else parse_bowls(bowls),
        portion_ms=portion,
        expires_at_ms=expires,
    )


def _upper(text: str) -> str:
    return text.strip().upper()
