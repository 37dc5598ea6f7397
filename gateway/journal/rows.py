"""The stored row: its columns, and what a reader makes of one (an Event or a ChainRow)."""

from __future__ import annotations

import json
import sqlite3
from typing import Any, Final

from gateway.events import Event, Origin, parse_enum, payload_from_dict
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
    return Event(
        seq=row[0],
        event_id=row[1],
        occurred_at_ms=row[3],
        clock_synced=bool(row[4]),
        origin=parse_enum(Origin, "origin", row[5]),
        payload=payload_from_dict(row[2], json.loads(row[7])),
        recovered=bool(row[6]),
        prev_hash=row[8],
        hash=row[9],
    )
