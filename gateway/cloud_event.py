"""What a journal event looks like in the cloud: the detail every cloud sink sends. Pure.

The detail is the event's payload plus the envelope under the contract's names: ``event-id``,
``gateway-id``, ``seq`` and ``chain-hash`` (so the cloud copy anchors the local ledger and a
receiver can drop duplicates and see gaps), and ``click-type`` on button-originated requests
(the published Lambda reads ``detail["click-type"]``). A replayed event says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gateway.events import ClickType, Event, FeedRejected, FeedRequested, Origin


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
    payload = event.payload
    detail: dict[str, Any] = payload.to_dict()  # a new dict each call: ours to extend
    # A request's own "origin" (button, cli, cloud) stays: it says who asked, also on a
    # FeedRejected the feeder recorded. Other events get where they came from. (Enum members
    # as they are: StrEnums, written by JSON as their values.)
    detail.setdefault("origin", event.origin)
    # The envelope's keys are hyphenated; payload keys are snake_case, so none collide.
    detail.update(
        {
            "type": payload.TYPE,
            "event-id": event.event_id,
            "gateway-id": gateway_id,
            "seq": event.seq,
            "chain-hash": event.hash,
            "occurred-at-ms": event.occurred_at_ms,
            "clock-synced": event.clock_synced,
        }
    )
    if event.recovered:
        detail["recovered"] = True
    click = click_type_of(event)
    if click is not None:
        detail["click-type"] = click
    if replay is not None:
        detail["replay"] = {
            "name": replay.name,
            "original-seq": event.seq,
            "original-time-ms": event.occurred_at_ms,
        }
    return detail


# One encoder, built once (json.dumps builds one per call with these options).
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def detail_json(event: Event, gateway_id: str, replay: ReplayMark | None = None) -> str:
    """The detail as one line of compact JSON (UTF-8 text, not ASCII-escaped): what
    EventBridge, IoT Core, the JSONL sink and replays send, so every copy reads the same."""
    return _COMPACT.encode(cloud_detail(event, gateway_id, replay))
