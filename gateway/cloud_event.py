"""What a journal event looks like in the cloud: the detail every cloud sink sends. Pure.

The detail is the event's payload plus the envelope under the contract's names: ``event-id``,
``gateway-id``, ``seq`` and ``chain-hash`` (so the cloud copy anchors the local ledger and a
receiver can drop duplicates and see gaps), and ``click-type`` on button-originated requests
(the published Lambda reads ``detail["click-type"]``). A replayed event says so.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from json.encoder import encode_basestring as _quote
from typing import Any, Final

from gateway.events import (
    PAYLOAD_KEYS,
    ClickType,
    Event,
    FeedRejected,
    FeedRequested,
    Origin,
    Payload,
    canonical_json,
    parse_enum,
    payload_from_dict,
)
from gateway.stored_event import StoredEvent


@dataclass(frozen=True, slots=True)
class ReplayMark:
    """Carried by an event sent again by ``fmfb replay``: never a command, never fed."""

    name: str


def click_of(payload: Payload) -> ClickType | None:
    """The click type the published Lambda would echo back, if this payload carries one: a
    request (or its rejection) from a button."""
    if isinstance(payload, FeedRequested | FeedRejected) and payload.origin is Origin.BUTTON:
        return payload.click_type
    return None


def click_type_of(event: Event) -> ClickType | None:
    return click_of(event.payload)


# The types whose payload carries an "origin" (the requests) and may carry a click type.
_REQUEST_TYPES: Final = frozenset(
    cls.TYPE.value for cls, keys in PAYLOAD_KEYS.items() if "origin" in keys
)


def stored_click_type(event_type: str, data: Mapping[str, Any]) -> ClickType | None:
    """:func:`click_of`'s rule, read from a payload's stored object (a test holds the two
    equal for every payload)."""
    if event_type not in _REQUEST_TYPES or data.get("origin") != Origin.BUTTON:
        return None
    click = data.get("click_type")
    return None if click is None else parse_enum(ClickType, "click_type", click)


def cloud_detail(event: Event, gateway_id: str, replay: ReplayMark | None = None) -> dict[str, Any]:
    """The detail as a dict: exactly what :func:`detail_json` sends, read back."""
    detail: dict[str, Any] = json.loads(detail_json(event, gateway_id, replay))
    return detail


# For the replay mark (rare): the compact encoder, built once.
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def envelope_members(
    event: Event | StoredEvent,
    gateway_id: str,
    click: ClickType | None,
    replay: ReplayMark | None = None,
) -> str:
    """The detail's keys beyond the payload's own, as JSON object members without the braces
    (``"type":"FeedRequested","event-id":…``). Its keys are hyphenated and payload keys are
    snake_case, so none collide.

    Written out member by member rather than by encoding a dict: this runs for every event a
    cloud sink sends, and it costs a third as much. Each value is a JSON literal by
    construction: strings through the json module's own quoting (as the compact encoder
    writes them, not ASCII-escaped), integers and booleans as JSON writes them. A test holds
    it equal to encoding the contract's dict.
    """
    members = []
    # A request's own "origin" (button, cli, cloud) stays: it says who asked, also on a
    # FeedRejected the feeder recorded. Other events get where they came from.
    if event.type not in _REQUEST_TYPES:
        members.append(f'"origin":{_quote(event.origin)},')
    members.append(
        f'"type":{_quote(event.type)},"event-id":{_quote(event.event_id)},'
        f'"gateway-id":{_quote(gateway_id)},"seq":{event.seq:d},'
        f'"chain-hash":{_quote(event.hash)},"occurred-at-ms":{event.occurred_at_ms:d},'
        f'"clock-synced":{"true" if event.clock_synced else "false"}'
    )
    if event.recovered:
        members.append(',"recovered":true')
    if click is not None:
        members.append(f',"click-type":{_quote(click)}')
    if replay is not None:
        mark = {
            "name": replay.name,
            "original-seq": event.seq,
            "original-time-ms": event.occurred_at_ms,
        }
        members.append(f',"replay":{_COMPACT.encode(mark)}')
    return "".join(members)


def _joined(payload: str, members: str) -> str:
    """The payload's stored object with the envelope's members after its own."""
    if payload == "{}":
        return f"{{{members}}}"
    return f"{payload[:-1]},{members}}}"


def detail_json(event: Event, gateway_id: str, replay: ReplayMark | None = None) -> str:
    """The detail as one line of compact JSON (UTF-8 text, not ASCII-escaped): what
    EventBridge, IoT Core, the JSONL sink and replays send, so every copy reads the same.

    The payload's keys come first, as the journal stores them (sorted), then the envelope's.
    The stored text is joined to the envelope rather than encoded again: this runs for every
    event a cloud sink sends, and the payload is most of the detail.
    """
    members = envelope_members(event, gateway_id, click_type_of(event), replay)
    return _joined(event.payload_text(), members)


# Each payload type's field names, by the type's stored name.
_KEYS_BY_TYPE: Final = {cls.TYPE.value: keys for cls, keys in PAYLOAD_KEYS.items()}


def stored_detail(
    stored: StoredEvent, gateway_id: str, replay: ReplayMark | None = None
) -> tuple[str, ClickType | None]:
    """:func:`detail_json` of the event ``stored`` decodes to, and its click type, without
    building the typed event: the stored payload text is sent as it is, read only for the
    click type and for keys its type does not know.

    A payload that holds such a key (a newer version's, or a hand-edited row's), or that is
    not an object, is decoded and written afresh, as :func:`detail_json` would: the detail
    says what the typed payload says, never more. Values are not checked again here (the
    appender checked them, and the chain hash covers the text): the cloud copy is the ledger
    as stored.
    """
    data = json.loads(stored.payload)
    keys = _KEYS_BY_TYPE.get(stored.type)  # None: a type this version does not know
    if keys is not None and type(data) is dict and data.keys() <= keys:
        text = stored.payload
        click = stored_click_type(stored.type, data)
    else:
        payload = payload_from_dict(stored.type, data)
        text = canonical_json(payload.to_dict())
        click = click_of(payload)
    return _joined(text, envelope_members(stored, gateway_id, click, replay)), click
