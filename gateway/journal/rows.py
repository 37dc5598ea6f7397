"""The stored row: its columns, and what a reader makes of one (an Event or a ChainRow)."""

from __future__ import annotations

import json
import sqlite3
from typing import Any, Final

from gateway.events import PAYLOAD_KEYS, Event, Origin, parse_enum, payload_from_dict
from gateway.journal.chain import ChainRow

# In the order of the events table, which is also the order every query here selects.
COLUMNS: Final = (
    "seq, event_id, type, occurred_at_ms, clock_synced, origin, recovered, payload, prev_hash, hash"
)

Stored = sqlite3.Row | tuple[Any, ...]


def to_chain(row: Stored) -> ChainRow:
    return ChainRow(
        seq=row[0],
        event_id=row[1],
        type=row[2],
        occurred_at_ms=row[3],
        clock_synced=bool(row[4]),
        origin=row[5],
        recovered=bool(row[6]),
        payload=row[7],
        prev_hash=row[8],
        hash=row[9],
    )


def to_event(row: Stored) -> Event:
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
