"""The journal: an append-only, hash-chained, fsynced ledger of events in SQLite (WAL).

One job per module:

- ``chain``     the bytes each row's SHA-256 covers (the one layout), and row checks
- ``schema``    the tables, the schema version, migrations
- ``files``     is this file a journal; the one-appender lock; connections; set-aside
- ``rows``      the stored columns, and an Event or ChainRow from a row; new event ids
- ``reader``    :class:`JournalReader`: committed events, queries, cursors, backlog
- ``cursors``   sinks' cursors and dead letters: reads, the writer's book, a replay's own row
- ``verify``    every row rechecked through ``chain.layout``
- ``writer``    the writer thread: group commit, retries, a failed COMMIT that reached disk
- ``appender``  :class:`Journal`, the daemon's appender: seq, futures, held events, waits

No module outside this package runs SQL against the journal's tables (a test checks it):
projections and replays read through :class:`JournalReader`, a replay writes its cursor
through :class:`OwnCursor`.
"""

from gateway.journal.appender import Journal, WriterHealth
from gateway.journal.chain import GENESIS_HASH, ChainRow
from gateway.journal.cursors import CursorInfo, OwnCursor, Pending
from gateway.journal.files import inspect_file
from gateway.journal.reader import FoldRow, JournalReader
from gateway.journal.rows import new_event_id, open_new_event

__all__ = [
    "GENESIS_HASH",
    "ChainRow",
    "CursorInfo",
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
