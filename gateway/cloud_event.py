"""What a journal event looks like in the cloud: the detail every cloud sink sends. Pure.

The detail is the event's payload plus the envelope under the contract's names: ``event-id``,
``gateway-id``, ``seq`` and ``chain-hash`` (so the cloud copy anchors the local ledger and a
receiver can drop duplicates and see gaps), and ``click-type`` on button-originated requests
(the published Lambda reads ``detail["click-type"]``). A replayed event says so.
"""

from __future__ import annotations

import json
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
    canonical_json,
)


@dataclass(frozen=True, slots=True)
class ReplayMark:
    """Carried by an event sent again by ``fmfb replay``: never a command, never fed."""

    name: str


def click_type_of(event: Event) -> ClickType | None:
    """The click type the published Lambda would echo back, if this event carries one."""
    payload = event.payload
    if isinstance(payload, FeedRequested | FeedRejected) and payload.origin is Origin.BUTTON:
        return payload.click_type
    return None


def cloud_detail(event: Event, gateway_id: str, replay: ReplayMark | None = None) -> dict[str, Any]:
    """The detail as a dict: exactly what :func:`detail_json` sends, read back."""
    detail: dict[str, Any] = json.loads(detail_json(event, gateway_id, replay))
    return detail


def payload_json(event: Event) -> str:
    """The payload as the journal stores it (canonical JSON: compact, keys sorted): the text
    it was read with, or encoded afresh for an event that never was."""
    return event.stored_payload or canonical_json(event.payload.to_dict())


# The payload types that carry an "origin" of their own (the requests).
_OWN_ORIGIN: Final = frozenset(cls for cls, keys in PAYLOAD_KEYS.items() if "origin" in keys)

# For the replay mark (rare): the compact encoder, built once.
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def envelope_members(event: Event, gateway_id: str, replay: ReplayMark | None = None) -> str:
    """The detail's keys beyond the payload's own, as JSON object members without the braces
    (``"type":"FeedRequested","event-id":…``). Its keys are hyphenated and payload keys are
    snake_case, so none collide.

    Written out member by member rather than by encoding a dict: this runs for every event a
    cloud sink sends, and it costs a third as much. Each value is a JSON literal by
    construction: strings through the json module's own quoting (as the compact encoder
    writes them, not ASCII-escaped), integers and booleans as JSON writes them. A test holds
    it equal to encoding the dict.
    """
    payload = event.payload
    members = []
    # A request's own "origin" (button, cli, cloud) stays: it says who asked, also on a
    # FeedRejected the feeder recorded. Other events get where they came from.
    if type(payload) not in _OWN_ORIGIN:
        members.append(f'"origin":{_quote(event.origin)},')
    members.append(
        f'"type":{_quote(payload.TYPE)},"event-id":{_quote(event.event_id)},'
        f'"gateway-id":{_quote(gateway_id)},"seq":{event.seq:d},'
        f'"chain-hash":{_quote(event.hash)},"occurred-at-ms":{event.occurred_at_ms:d},'
        f'"clock-synced":{"true" if event.clock_synced else "false"}'
    )
    if event.recovered:
        members.append(',"recovered":true')
    click = click_type_of(event)
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


def detail_json(event: Event, gateway_id: str, replay: ReplayMark | None = None) -> str:
    """The detail as one line of compact JSON (UTF-8 text, not ASCII-escaped): what
    EventBridge, IoT Core, the JSONL sink and replays send, so every copy reads the same.

    The payload's keys come first, as the journal stores them (sorted), then the envelope's.
    The stored text is joined to the envelope rather than encoded again: this runs for every
    event a cloud sink sends, and the payload is most of the detail.
    """
    payload = payload_json(event)
    members = envelope_members(event, gateway_id, replay)
    if payload == "{}":
        return f"{{{members}}}"
    return f"{payload[:-1]},{members}}}"
