"""Cursors and dead letters: how far each sink has delivered, and what it gave up on.

Both live in the journal's own database so that a cursor is never ahead of the events it
points at: the daemon's writer puts them in the same transactions as events
(:class:`CursorBook` holds what is waiting to go), and a replay, which runs in another
process, writes only its own row (:class:`OwnCursor`). The reads (:func:`read_cursors` and
friends) serve ``fmfb journal pending`` and the tests.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.errors import JournalError
from gateway.journal.files import connect_read_write

if TYPE_CHECKING:
    from gateway.clock import Clock  # a reader needs no clock (nor ctypes, which it loads)

DeadLetter = tuple[str, int, str, int]  # (sink, seq, error, at_ms)

_UPSERT_CURSOR = (
    "INSERT INTO cursors (sink, seq, updated_at_ms) VALUES (?, ?, ?) "
    "ON CONFLICT (sink) DO UPDATE SET seq = excluded.seq, updated_at_ms = excluded.updated_at_ms"
)
_INSERT_DEAD_LETTER = (
    "INSERT OR REPLACE INTO dead_letters (sink, seq, error, at_ms) VALUES (?, ?, ?, ?)"
)


@dataclass(frozen=True, slots=True)
class CursorInfo:
    sink: str
    seq: int
    updated_at_ms: int


@dataclass(frozen=True, slots=True)
class Pending:
    """How far behind a sink is: what ``fmfb journal pending`` prints per sink."""

    sink: str
    cursor: int
    backlog: int
    oldest_unfinished_ms: int | None
    updated_at_ms: int


# --- reading -------------------------------------------------------------------------------


def read_cursors(conn: sqlite3.Connection) -> list[CursorInfo]:
    return [
        CursorInfo(sink, seq, updated)
        for sink, seq, updated in conn.execute(
            "SELECT sink, seq, updated_at_ms FROM cursors ORDER BY sink"
        )
    ]


def read_cursor(conn: sqlite3.Connection, sink: str) -> int | None:
    row = conn.execute("SELECT seq FROM cursors WHERE sink = ?", (sink,)).fetchone()
    return None if row is None else int(row[0])


def read_dead_letters(conn: sqlite3.Connection, sink: str | None = None) -> list[DeadLetter]:
    sql = "SELECT sink, seq, error, at_ms FROM dead_letters"
    args: tuple[str, ...] = ()
    if sink is not None:
        sql += " WHERE sink = ?"
        args = (sink,)
    return [(r[0], r[1], r[2], r[3]) for r in conn.execute(sql + " ORDER BY seq, sink", args)]


def read_pending(conn: sqlite3.Connection, last_seq: int) -> list[Pending]:
    out: list[Pending] = []
    for c in read_cursors(conn):
        oldest = conn.execute(
            "SELECT occurred_at_ms FROM events WHERE seq = ?", (c.seq + 1,)
        ).fetchone()
        out.append(
            Pending(
                sink=c.sink,
                cursor=c.seq,
                backlog=max(0, last_seq - c.seq),
                oldest_unfinished_ms=None if oldest is None else int(oldest[0]),
                updated_at_ms=c.updated_at_ms,
            )
        )
    return out


# --- writing, inside the caller's transaction ------------------------------------------------


def write_cursors(conn: sqlite3.Connection, cursors: dict[str, int], now_ms: int) -> None:
    conn.executemany(_UPSERT_CURSOR, [(sink, seq, now_ms) for sink, seq in cursors.items()])


def write_dead_letters(conn: sqlite3.Connection, letters: list[DeadLetter]) -> None:
    conn.executemany(_INSERT_DEAD_LETTER, letters)


# --- the daemon's side ---------------------------------------------------------------------


class CursorBook:
    """Every sink's cursor as the sinks last saved it, and what the writer has yet to write.

    The event loop saves; the writer thread takes a snapshot for a commit and, once it is
    committed, forgets what it wrote (unless the sink moved again meanwhile). The lock guards
    only the hand-over between those two threads.
    """

    def __init__(self, committed: list[CursorInfo], clock: Clock) -> None:
        self._clock = clock
        self._saved: dict[str, int] = {c.sink: c.seq for c in committed}  # loop thread only
        self._dirty: dict[str, int] = {}
        self._letters: list[DeadLetter] = []
        self._lock = threading.Lock()

    def register(self, sink: str, start_at: int) -> tuple[int, bool]:
        """The sink's cursor, and whether it was created here (at ``start_at``)."""
        if sink in self._saved:
            return self._saved[sink], False
        self._saved[sink] = start_at
        with self._lock:
            self._dirty[sink] = start_at
        return start_at, True

    def save(self, sink: str, seq: int) -> None:
        if seq < self._saved.get(sink, 0):
            raise JournalError(f"cursor {sink!r} cannot move back ({self._saved[sink]} → {seq})")
        self._saved[sink] = seq
        with self._lock:
            self._dirty[sink] = seq

    def saved(self, sink: str) -> int | None:
        return self._saved.get(sink)

    def add_dead_letter(self, sink: str, seq: int, error: str) -> None:
        with self._lock:
            self._letters.append((sink, seq, error, self._clock.now_ms()))

    # writer thread

    def snapshot(self) -> tuple[dict[str, int], list[DeadLetter]]:
        """What is waiting to be written: (cursors, dead letters). Both empty most commits."""
        if not self._dirty and not self._letters:  # a racy peek is fine: the next commit sees it
            return {}, []
        with self._lock:
            return dict(self._dirty), list(self._letters)

    def written(self, cursors: dict[str, int], letters: list[DeadLetter]) -> None:
        """``cursors`` and ``letters`` from :meth:`snapshot` are committed."""
        if not cursors and not letters:
            return
        with self._lock:
            for sink, seq in cursors.items():
                if self._dirty.get(sink) == seq:
                    del self._dirty[sink]
            del self._letters[: len(letters)]


class OwnCursor:
    """One cursor row written by a process that is not the daemon (``fmfb replay``).

    Its own connection and short transactions: the daemon, the only appender of events, keeps
    writing meanwhile and never touches this row. NORMAL sync: a lost last move only means
    sending a batch again.
    """

    def __init__(self, path: Path, sink: str, clock: Clock) -> None:
        self.sink = sink
        self._clock = clock
        self._conn = connect_read_write(path, synchronous="NORMAL")
        self._conn.execute("PRAGMA busy_timeout = 30000")  # the daemon may be mid-commit

    def get(self) -> int | None:
        return read_cursor(self._conn, self.sink)

    def save(self, seq: int) -> None:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            write_cursors(self._conn, {self.sink: seq}, self._clock.now_ms())
            self._conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._conn.close()
