"""The stored row: its columns, and what a reader makes of one (an Event or a ChainRow)."""

from __future__ import annotations

import sqlite3
from typing import Any, Final

from gateway.journal.chain import ChainRow
from gateway.stored_event import decode

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


# An Event from a row (the decoding lives with the stored form, which sinks use too).
to_event: Final = decode
