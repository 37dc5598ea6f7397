"""The journal: an append-only, hash-chained, fsynced ledger of events in SQLite (WAL).

One job per module:

- ``chain``     the bytes each row's SHA-256 covers (the one layout), and row checks
- ``schema``    the tables, the schema version, migrations
- ``files``     is this file a journal; the one-appender lock; connections; set-aside
- ``rows``      the stored columns, and an Event or ChainRow from a row
- ``ids``       new event ids (UUIDv7) and NewEvents made with them
- ``reader``    :class:`JournalReader`: committed events, queries, cursors, backlog
- ``cursors``   sinks' cursors and dead letters: reads, the writer's book, a replay's own row
- ``verify``    every row rechecked through ``chain.layout``
- ``opening``   what opening checks (the recent window), disk trouble vs damage, salvage
- ``sidecar``   the high-water mark and the spill: what outlives the journal's tail
- ``writer``    the writer thread: group commit, retries, spilling, a failed COMMIT that
                reached disk
- ``appender``  :class:`Journal`, the daemon's appender: seq, futures, held events, waits

No module outside this package runs SQL against the journal's tables (a test checks it):
projections and replays read through :class:`JournalReader`, a replay writes its cursor
through :class:`OwnCursor`.

The appender's names load on first use, so that a command that only reads (``fmfb journal
list``) does not import asyncio, the writer thread or uuid6.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gateway.journal.chain import GENESIS_HASH, ChainRow
from gateway.journal.cursors import CursorInfo, OwnCursor, Pending
from gateway.journal.files import inspect_file
from gateway.journal.filter import EventFilter
from gateway.journal.reader import FoldRow, JournalReader

if TYPE_CHECKING:
    from gateway.journal.appender import Journal, WriterHealth
    from gateway.journal.ids import new_event_id, open_new_event

_LAZY = {
    "Journal": "gateway.journal.appender",
    "WriterHealth": "gateway.journal.appender",
    "new_event_id": "gateway.journal.ids",
    "open_new_event": "gateway.journal.ids",
}

__all__ = [
    "GENESIS_HASH",
    "ChainRow",
    "CursorInfo",
    "EventFilter",
    "FoldRow",
    "Journal",
    "JournalReader",
    "OwnCursor",
    "Pending",
    "WriterHealth",
    "inspect_file",
    "new_event_id",
    "open_new_event",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once: later lookups do not come here
    return value
