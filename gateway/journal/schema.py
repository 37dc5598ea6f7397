"""The journal's SQLite schema, its version, and how older versions move forward.

``PRAGMA application_id`` marks a file as a gateway journal; ``PRAGMA user_version`` is the schema
version. A migration only ever adds (tables, columns, indexes, triggers): events are never
rewritten, so every hash stays valid across upgrades.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

APPLICATION_ID = 0x464D4642  # "FMFB"
SCHEMA_VERSION = 4

_V1 = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE events (
    seq            INTEGER PRIMARY KEY,
    event_id       TEXT    NOT NULL UNIQUE,
    type           TEXT    NOT NULL,
    occurred_at_ms INTEGER NOT NULL,
    clock_synced   INTEGER NOT NULL CHECK (clock_synced IN (0, 1)),
    origin         TEXT    NOT NULL,
    recovered      INTEGER NOT NULL CHECK (recovered IN (0, 1)),
    payload        TEXT    NOT NULL,
    prev_hash      TEXT    NOT NULL,
    hash           TEXT    NOT NULL
);
CREATE INDEX events_by_type ON events (type, seq);
-- The ledger is append-only: the schema itself refuses edits, whoever connects.
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'journal events are append-only: UPDATE refused');
END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'journal events are append-only: DELETE refused');
END;
-- seq is gapless: the next row is always the last one plus one.
CREATE TRIGGER events_gapless BEFORE INSERT ON events
WHEN NEW.seq != (SELECT COALESCE(MAX(seq), 0) + 1 FROM events)
BEGIN
    SELECT RAISE(ABORT, 'journal seq must be gapless');
END;
CREATE TABLE cursors (
    sink TEXT PRIMARY KEY,
    seq  INTEGER NOT NULL CHECK (seq >= 0)
);
"""

# v2: cursors remember when they last moved, so `fmfb journal pending` can tell a stalled
# sink from an idle one.
_V2 = """
ALTER TABLE cursors ADD COLUMN updated_at_ms INTEGER NOT NULL DEFAULT 0;
"""


# v3: what a sink could never deliver, and why (the event itself stays in the ledger).
_V3 = """
CREATE TABLE dead_letters (
    sink  TEXT    NOT NULL,
    seq   INTEGER NOT NULL,
    error TEXT    NOT NULL,
    at_ms INTEGER NOT NULL,
    PRIMARY KEY (sink, seq)
);
"""


# v4: a journal started after one was set aside continues its predecessor's seq numbers (a
# sink may already have sent them), so its first seq is meta "base_seq" + 1, not always 1. Only
# the gapless trigger changes; no event is touched.
_V4 = """
DROP TRIGGER events_gapless;
CREATE TRIGGER events_gapless BEFORE INSERT ON events
WHEN NEW.seq != COALESCE(
    (SELECT MAX(seq) FROM events),
    (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'base_seq'),
    0
) + 1
BEGIN
    SELECT RAISE(ABORT, 'journal seq must be gapless');
END;
"""


def _script(sql: str) -> Callable[[sqlite3.Connection], None]:
    def run(conn: sqlite3.Connection) -> None:
        # executescript would COMMIT first; run statement by statement inside our transaction.
        for statement in _split(sql):
            conn.execute(statement)

    return run


def _split(sql: str) -> list[str]:
    """Split on ';' at the ends of statements, keeping trigger bodies (BEGIN ... END;) whole."""
    statements: list[str] = []
    current: list[str] = []
    for line in sql.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("--"):
            continue
        current.append(line)
        text = "\n".join(current)
        if stripped.endswith(";") and sqlite3.complete_statement(text):
            statements.append(text)
            current = []
    return statements


# MIGRATIONS[i] takes a journal from version i to version i + 1.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _script(_V1),
    _script(_V2),
    _script(_V3),
    _script(_V4),
]
assert len(MIGRATIONS) == SCHEMA_VERSION


def migrate(conn: sqlite3.Connection, *, to_version: int = SCHEMA_VERSION) -> int:
    """Bring ``conn``'s schema up to ``to_version`` in one transaction; returns the old version.

    The caller has already checked that the file is a journal and not newer than this code.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        (current,) = conn.execute("PRAGMA user_version").fetchone()
        for version in range(current, to_version):
            MIGRATIONS[version](conn)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {int(to_version)}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return int(current)
