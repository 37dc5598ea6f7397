"""New events: a fresh time-ordered id, and a NewEvent made with one.

Apart from the rows module because only appenders need it: a reader never imports uuid6.
"""

from __future__ import annotations

from typing import Any

import uuid6

from gateway.events import NewEvent, Origin


def new_event_id() -> str:
    """A UUIDv7: time-ordered, unique. Order still comes from seq, never from the id."""
    return str(uuid6.uuid7())


def open_new_event(
    payload: Any, *, origin: Origin, now_ms: int, clock_synced: bool, event_id: str | None = None
) -> NewEvent:
    """A NewEvent with a fresh UUIDv7 (or the given id)."""
    return NewEvent(
        event_id=event_id or new_event_id(),
        occurred_at_ms=now_ms,
        clock_synced=clock_synced,
        origin=origin,
        payload=payload,
    )
