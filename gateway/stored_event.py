"""An event as the journal stores it, undecoded. Pure.

A sink that copies the ledger out (the EventBridge sink) needs an event's columns and its
payload's stored text, not a typed payload: building one per event was most of what such a
sink cost of its own (docs/architecture.md, "Cloud"). A :class:`StoredEvent` is the row as
the reader selects it (``gateway.journal.rows.COLUMNS``), and :func:`decode` makes the typed
:class:`~gateway.events.Event` of one when it is needed (the journal's reader decodes every
row it returns with it).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, NamedTuple

from gateway.events import PAYLOAD_KEYS, Event, Origin, parse_enum, payload_from_dict


class StoredEvent(NamedTuple):
    seq: int
    event_id: str
    type: str  # an EventType's value
    occurred_at_ms: int
    clock_synced: int  # 0 or 1, as stored
    origin: str  # an Origin's value
    recovered: int  # 0 or 1, as stored
    payload: str  # the payload's canonical JSON, as stored (and as the chain hash covers it)
    prev_hash: str
    hash: str

    @property
    def held(self) -> bool:
        """Never: only an event on disk has a stored form (and its chain hash)."""
        return False


def stored_of(event: Event) -> StoredEvent:
    """An event as the journal stores (or would store) it."""
    return StoredEvent(
        event.seq,
        event.event_id,
        event.type,
        event.occurred_at_ms,
        int(event.clock_synced),
        event.origin,
        int(event.recovered),
        event.payload_text(),
        event.prev_hash,
        event.hash,
    )


def decode(row: Sequence[Any]) -> Event:
    """The typed event of a stored row (a :class:`StoredEvent` or the reader's tuple of the
    same columns); a PayloadError names what is wrong with it."""
    text = row[7]
    data = json.loads(text)
    payload = payload_from_dict(row[2], data)
    # The stored text goes along only if it says no more than the typed payload (no key the
    # payload does not know, from a newer version or a hand-edited file): the cloud detail is
    # built from it.
    stored = text if type(data) is dict and data.keys() <= PAYLOAD_KEYS[type(payload)] else ""
    # Positional: this runs for every row read back, and keywords cost more.
    return Event(
        row[0],
        row[1],
        row[3],
        bool(row[4]),
        parse_enum(Origin, "origin", row[5]),
        payload,
        bool(row[6]),
        row[8],
        row[9],
        False,
        stored,
    )
