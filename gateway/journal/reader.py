"""Reading the journal: events, queries, the chain's rows, cursors and backlog.

:class:`JournalReader` answers from what is committed on disk, and only that. The CLI opens
one read-only on a journal the daemon is writing (WAL readers never block the writer) or on a
copied file; the daemon's :class:`~gateway.journal.appender.Journal` holds one for its own
queries. Everything outside this package that reads events reads them here.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from gateway.errors import JournalError, JournalVersionError
from gateway.events import Event, EventType
from gateway.journal import cursors as _cursors
from gateway.journal.chain import GENESIS_HASH, ChainRow
from gateway.journal.cursors import CursorInfo, DeadLetter, Pending
from gateway.journal.files import connect_read_only, inspect_file
from gateway.journal.filter import EventFilter
from gateway.journal.rows import COLUMNS, to_chain, to_event
from gateway.journal.schema import SCHEMA_VERSION
from gateway.journal.verify import verify_chain
from gateway.stored_event import StoredEvent

# The oldest schema this reader reads as it is (v4 only changed a trigger).
READABLE_FROM = 3

# What a projection reads of each row (the payload still as stored JSON text).
ALL = EventFilter()  # every event

FoldRow = tuple[int, str, int, int, str, str]  # seq, type, occurred_at_ms, clock_synced, origin


class JournalReader:
    """Read access to a journal's committed rows: events, cursors and backlog."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn

    @classmethod
    def open(cls, path: Path | str) -> JournalReader:
        """Open read-only; never creates, migrates or changes the file."""
        path = Path(path)
        if not path.exists():
            raise JournalError(f"{path}: no such journal")
        version = inspect_file(path)
        if version < READABLE_FROM:
            raise JournalVersionError(
                f"{path} has journal schema {version}; the daemon migrates it to "
                f"{SCHEMA_VERSION} when it next starts"
            )
        return cls(path, connect_read_only(path))

    def close(self) -> None:
        self._conn.close()

    def reconnect(self, conn: sqlite3.Connection) -> None:
        """Read through ``conn`` from now on (the appender's, once a degraded open recovers)."""
        old, self._conn = self._conn, conn
        old.close()

    def __enter__(self) -> JournalReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- meta and tail ---------------------------------------------------------------------

    def meta(self) -> dict[str, str]:
        return {k: v for k, v in self._conn.execute("SELECT key, value FROM meta")}

    def base_seq(self) -> int:
        """The seq before this journal's first row: 0, or (a successor of a set-aside journal)
        the highest seq its predecessor showed, so that no seq is ever used twice."""
        return int(self.meta().get("base_seq", "0") or 0)

    def genesis_hash(self) -> str:
        return self.meta().get("genesis_hash", GENESIS_HASH)

    def last_seq(self) -> int:
        row = self._conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()
        return int(row[0])

    def tail(self) -> ChainRow | None:
        """The last row, as stored."""
        row = self._conn.execute(
            f"SELECT {COLUMNS} FROM events ORDER BY seq DESC LIMIT 1"  # noqa: S608 - constant
        ).fetchone()
        return None if row is None else to_chain(row)

    def position_at(self, seq: int) -> tuple[str, int] | None:
        """(chain hash, recorded time) of the row at ``seq``: where a fold that ends there
        stands, and which journal it was folded from."""
        row = self._conn.execute(
            "SELECT hash, occurred_at_ms FROM events WHERE seq = ?", (seq,)
        ).fetchone()
        return None if row is None else (str(row[0]), int(row[1]))

    # --- events ----------------------------------------------------------------------------

    def get(self, seq: int) -> Event | None:
        row = self._conn.execute(
            f"SELECT {COLUMNS} FROM events WHERE seq = ?",  # noqa: S608 - constant columns
            (seq,),
        ).fetchone()
        return None if row is None else to_event(row)

    def seq_of(self, event_id: str) -> int | None:
        """The seq of the event with this id (event_id is unique, so indexed)."""
        row = self._conn.execute(
            "SELECT seq FROM events WHERE event_id = ?", (event_id,)
        ).fetchone()
        return None if row is None else int(row[0])

    def read_after(
        self, after_seq: int, limit: int = 500, *, upto: int | None = None
    ) -> list[Event]:
        """Committed events with seq > after_seq (and <= upto), in seq order."""
        return [to_event(r) for r in self._rows_after(after_seq, limit, upto)]

    def read_stored_after(
        self, after_seq: int, limit: int = 500, *, upto: int | None = None
    ) -> list[StoredEvent]:
        """:meth:`read_after`, undecoded: the rows as stored."""
        return [StoredEvent._make(r) for r in self._rows_after(after_seq, limit, upto)]

    def _rows_after(self, after_seq: int, limit: int, upto: int | None) -> sqlite3.Cursor:
        if upto is None:
            return self._conn.execute(
                f"SELECT {COLUMNS} FROM events WHERE seq > ? ORDER BY seq LIMIT ?",  # noqa: S608
                (after_seq, limit),
            )
        return self._conn.execute(
            f"SELECT {COLUMNS} FROM events WHERE seq > ? AND seq <= ? "  # noqa: S608
            "ORDER BY seq LIMIT ?",
            (after_seq, upto, limit),
        )

    def query(
        self,
        where: EventFilter = ALL,
        *,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> Iterator[Event]:
        """Events matching ``where``, in seq order (or newest first), at most ``limit``."""
        clause, args = where.where()
        sql = f"SELECT {COLUMNS} FROM events{clause}"  # noqa: S608 - placeholders only
        sql += " ORDER BY seq DESC" if newest_first else " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        for row in self._conn.execute(sql, args):
            yield to_event(row)

    def count(self, where: EventFilter = ALL) -> int:
        """How many events :meth:`query` would yield for ``where`` (no limit)."""
        clause, args = where.where()
        (n,) = self._conn.execute(f"SELECT count(*) FROM events{clause}", args).fetchone()  # noqa: S608
        return int(n)

    def last_of_types(self, types: Sequence[EventType]) -> Event | None:
        """The newest event of any of ``types`` (indexed: O(log n))."""
        best: Event | None = None
        for t in types:
            row = self._conn.execute(
                f"SELECT {COLUMNS} FROM events WHERE type = ? "  # noqa: S608 - constant columns
                "ORDER BY seq DESC LIMIT 1",
                (t.value,),
            ).fetchone()
            if row is not None and (best is None or row[0] > best.seq):
                best = to_event(row)
        return best

    def recent(self, since_ms: int, max_rows: int = 100_000) -> list[Event]:
        """Events from the tail back to the first one older than ``since_ms``, in seq order.

        Scans backwards by seq, so start-up folds only the recent window, not the whole
        ledger; ``max_rows`` bounds it when a wrong clock makes every time look recent.
        """
        out: list[Event] = []
        cur = self._conn.execute(
            f"SELECT {COLUMNS} FROM events ORDER BY seq DESC LIMIT ?",  # noqa: S608 - constant
            (max_rows,),
        )
        for row in cur:
            if row[3] < since_ms:
                break
            out.append(to_event(row))
        out.reverse()
        return out

    def first_seq_at_or_after(self, at_ms: int) -> int | None:
        """The lowest seq recorded at or after ``at_ms`` (None if none is)."""
        (seq,) = self._conn.execute(
            "SELECT MIN(seq) FROM events WHERE occurred_at_ms >= ?", (at_ms,)
        ).fetchone()
        return None if seq is None else int(seq)

    def fold_rows(
        self, after_seq: int, upto: int, types: frozenset[str] | None = None
    ) -> list[FoldRow]:
        """Rows (after_seq, upto] of ``types`` (None: all) as (seq, type, occurred_at_ms,
        clock_synced, origin, payload JSON text), undecoded: for folds over many rows, where
        building an Event per row would be most of the cost."""
        sql = (
            "SELECT seq, type, occurred_at_ms, clock_synced, origin, payload FROM events "
            "WHERE seq > ? AND seq <= ?"
        )
        args: list[Any] = [after_seq, upto]
        if types is not None:
            ordered = sorted(types)
            # "+type": scan by seq, not through the type index (then sort).
            sql += f" AND +type IN ({','.join('?' * len(ordered))})"
            args.extend(ordered)
        return self._conn.execute(sql + " ORDER BY seq", args).fetchall()

    def chain_rows(self, after_seq: int = 0) -> Iterator[ChainRow]:
        for row in self._conn.execute(
            f"SELECT {COLUMNS} FROM events WHERE seq > ? ORDER BY seq",  # noqa: S608 - constant
            (after_seq,),
        ):
            yield to_chain(row)

    # --- cursors ---------------------------------------------------------------------------

    def cursors(self) -> list[CursorInfo]:
        return _cursors.read_cursors(self._conn)

    def cursor(self, sink: str) -> int | None:
        """``sink``'s cursor as committed (the daemon may hold a newer one, not yet written)."""
        return _cursors.read_cursor(self._conn, sink)

    def dead_letters(self, sink: str | None = None) -> list[DeadLetter]:
        """(sink, seq, error, at_ms) for each event a sink gave up on, in seq order."""
        return _cursors.read_dead_letters(self._conn, sink)

    def pending(self) -> list[Pending]:
        return _cursors.read_pending(self._conn, self.last_seq())

    # --- verification ----------------------------------------------------------------------

    def verify(
        self, progress: Callable[[int], None] | None = None, every: int = 100_000
    ) -> tuple[int, str | None]:
        """Check every row's seq, link and hash. Returns (rows checked, first problem or None).

        ``progress(rows_checked)`` is called every ``every`` rows.
        """
        try:
            meta = self.meta()
        except sqlite3.Error as e:
            # The rows may still be readable: check them from the first row's own link, and
            # say the meta table (the genesis hash, the base seq) could not be read.
            checked, problem = verify_chain(self._conn, None, progress, every)
            found = f"; {problem}" if problem else f"; {checked} rows link and hash correctly"
            return checked, f"the journal's meta table is unreadable ({e}){found}"
        base = int(meta.get("base_seq", "0") or 0)
        genesis = meta.get("genesis_hash", GENESIS_HASH)
        return verify_chain(self._conn, genesis, progress, every, base_seq=base)
