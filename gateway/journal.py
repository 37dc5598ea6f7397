"""The journal: an append-only, hash-chained, fsynced ledger of events in SQLite (WAL).

Two faces:

- :class:`JournalReader` reads. The CLI opens one read-only on a journal the daemon is writing
  (WAL readers never block the writer) or on a copied file.
- :class:`Journal` is the daemon's: the one appender. A dedicated writer thread owns the write
  connection; appends are queued in order and committed in groups, and each caller's future
  resolves only when its own event is committed and fsynced (``synchronous=FULL``).

Invariants, and where they are kept:

- ``seq`` is assigned on the event loop, in call order, when an append is queued; the writer
  commits in queue order, so seq order is commit order and there are no gaps (the schema's
  trigger refuses a gap from anyone else).
- Feeding never waits on the disk. When a commit fails (disk full, I/O error) every queued
  event is *held*: its caller is answered at once with ``held=True`` so the feed goes ahead,
  readers see it, and the writer keeps retrying. Once the disk takes it, the event is written
  with ``recovered=1`` — the ledger says it was acted on before it was durable.
- Cursors live in the same database and are written by the same thread in the same
  transactions, after the events they point at.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import itertools
import logging
import os
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import uuid6

from gateway.chain import GENESIS_HASH, ChainRow, chain_hash, check_row, row_hash
from gateway.errors import (
    JournalCorruptError,
    JournalError,
    JournalVersionError,
    NotAJournalError,
)
from gateway.events import (
    Event,
    EventType,
    NewEvent,
    Origin,
    canonical_json,
    payload_from_dict,
)
from gateway.schema import APPLICATION_ID, SCHEMA_VERSION, migrate

log = logging.getLogger(__name__)

_COLUMNS: Final = (
    "seq, event_id, type, occurred_at_ms, clock_synced, origin, recovered, payload, prev_hash, hash"
)


def new_event_id() -> str:
    """A UUIDv7: time-ordered, unique. Order still comes from seq, never from the id."""
    return str(uuid6.uuid7())


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


def _row_to_chain(row: sqlite3.Row | tuple[Any, ...]) -> ChainRow:
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


def _row_to_event(row: sqlite3.Row | tuple[Any, ...]) -> Event:
    import json  # noqa: PLC0415 - keep the hot module import list short

    return Event(
        seq=row[0],
        event_id=row[1],
        occurred_at_ms=row[3],
        clock_synced=bool(row[4]),
        origin=Origin(row[5]),
        payload=payload_from_dict(row[2], json.loads(row[7])),
        recovered=bool(row[6]),
        prev_hash=row[8],
        hash=row[9],
    )


def inspect_file(path: Path) -> int:
    """Check, without changing a byte, that ``path`` is a journal this code can open.

    Returns its schema version (0 for an empty or missing file). Raises NotAJournalError for a
    database of another application, JournalCorruptError for a file SQLite cannot read, and
    JournalVersionError for a journal newer than this code.
    """
    if not path.exists() or path.stat().st_size == 0:
        return 0
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as e:
        raise JournalCorruptError(f"{path}: cannot be opened: {e}") from e
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    except sqlite3.DatabaseError as e:
        raise JournalCorruptError(f"{path}: not readable as a journal: {e}") from e
    finally:
        conn.close()
    if app_id != APPLICATION_ID and (app_id != 0 or tables):
        raise NotAJournalError(
            f"{path} is an SQLite database of another application "
            f"(application_id {app_id:#x}); it was not modified"
        )
    if version > SCHEMA_VERSION:
        raise JournalVersionError(
            f"{path} has journal schema {version}, newer than this gateway knows "
            f"({SCHEMA_VERSION}); upgrade the gateway. The file was not modified"
        )
    return int(version)


def _lock_writer(path: Path) -> int:
    """Take the one-appender lock (``<journal>.lock``), or say who holds it.

    Two appenders would each believe they own the chain's tail; the schema's gapless trigger
    would stop the second one's commits, but only after it had answered feeds. Refusing to
    open is the clear failure.
    """
    lock_path = Path(f"{path}.lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise JournalError(
            f"{path} is already open for writing by pid {holder}: one gateway per journal"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


class JournalReader:
    """Read access to a journal: events, cursors and backlog."""

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
        if version != SCHEMA_VERSION:
            raise JournalVersionError(
                f"{path} has journal schema {version}; the daemon migrates it to "
                f"{SCHEMA_VERSION} when it next starts"
            )
        conn = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False
        )
        conn.execute("PRAGMA busy_timeout = 5000")
        return cls(path, conn)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> JournalReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- meta and tail ---------------------------------------------------------------------

    def meta(self) -> dict[str, str]:
        return {k: v for k, v in self._conn.execute("SELECT key, value FROM meta")}

    def last_seq(self) -> int:
        row = self._conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()
        return int(row[0])

    def _tail_row(self) -> ChainRow | None:
        row = self._conn.execute(
            f"SELECT {_COLUMNS} FROM events ORDER BY seq DESC LIMIT 1"  # noqa: S608 - constant
        ).fetchone()
        return None if row is None else _row_to_chain(row)

    # --- events ----------------------------------------------------------------------------

    def get(self, seq: int) -> Event | None:
        row = self._conn.execute(
            f"SELECT {_COLUMNS} FROM events WHERE seq = ?",  # noqa: S608 - constant columns
            (seq,),
        ).fetchone()
        return None if row is None else _row_to_event(row)

    def seq_of(self, event_id: str) -> int | None:
        """The seq of the event with this id (event_id is unique, so indexed)."""
        row = self._conn.execute(
            "SELECT seq FROM events WHERE event_id = ?", (event_id,)
        ).fetchone()
        return None if row is None else int(row[0])

    def read_after(
        self, after_seq: int, limit: int = 500, *, upto: int | None = None
    ) -> list[Event]:
        """Events with seq > after_seq (and <= upto), in seq order."""
        if upto is None:
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM events WHERE seq > ? ORDER BY seq LIMIT ?",  # noqa: S608
                (after_seq, limit),
            )
        else:
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM events WHERE seq > ? AND seq <= ? "  # noqa: S608
                "ORDER BY seq LIMIT ?",
                (after_seq, upto, limit),
            )
        return [_row_to_event(r) for r in rows]

    def query(
        self,
        *,
        types: Sequence[str] = (),
        since_ms: int | None = None,
        until_ms: int | None = None,
        from_seq: int | None = None,
        to_seq: int | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> Iterator[Event]:
        """Events matching every given filter, in seq order (or newest first).

        Time filters use each event's recorded time, which may be wrong when the clock was not
        synchronised; seq is the order.
        """
        where: list[str] = []
        args: list[Any] = []
        if types:
            where.append(f"type IN ({','.join('?' * len(types))})")
            args.extend(types)
        if since_ms is not None:
            where.append("occurred_at_ms >= ?")
            args.append(since_ms)
        if until_ms is not None:
            where.append("occurred_at_ms < ?")
            args.append(until_ms)
        if from_seq is not None:
            where.append("seq >= ?")
            args.append(from_seq)
        if to_seq is not None:
            where.append("seq <= ?")
            args.append(to_seq)
        sql = f"SELECT {_COLUMNS} FROM events"  # noqa: S608 - placeholders only
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq DESC" if newest_first else " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        for row in self._conn.execute(sql, args):
            yield _row_to_event(row)

    def last_of_types(self, types: Sequence[EventType]) -> Event | None:
        """The newest event of any of ``types`` (indexed: O(log n))."""
        best: Event | None = None
        for t in types:
            row = self._conn.execute(
                f"SELECT {_COLUMNS} FROM events WHERE type = ? "  # noqa: S608 - constant columns
                "ORDER BY seq DESC LIMIT 1",
                (t.value,),
            ).fetchone()
            if row is not None and (best is None or row[0] > best.seq):
                best = _row_to_event(row)
        return best

    def recent(self, since_ms: int, max_rows: int = 100_000) -> list[Event]:
        """Events from the tail back to the first one older than ``since_ms``, in seq order.

        Scans backwards by seq, so start-up folds only the recent window, not the whole
        ledger; ``max_rows`` bounds it when a wrong clock makes every time look recent.
        """
        out: list[Event] = []
        cur = self._conn.execute(
            f"SELECT {_COLUMNS} FROM events ORDER BY seq DESC LIMIT ?",  # noqa: S608 - constant
            (max_rows,),
        )
        for row in cur:
            if row[3] < since_ms:
                break
            out.append(_row_to_event(row))
        out.reverse()
        return out

    def chain_rows(self, after_seq: int = 0) -> Iterator[ChainRow]:
        for row in self._conn.execute(
            f"SELECT {_COLUMNS} FROM events WHERE seq > ? ORDER BY seq",  # noqa: S608 - constant
            (after_seq,),
        ):
            yield _row_to_chain(row)

    # --- cursors ---------------------------------------------------------------------------

    def cursors(self) -> list[CursorInfo]:
        return [
            CursorInfo(sink, seq, updated)
            for sink, seq, updated in self._conn.execute(
                "SELECT sink, seq, updated_at_ms FROM cursors ORDER BY sink"
            )
        ]

    def cursor(self, sink: str) -> int | None:
        row = self._conn.execute("SELECT seq FROM cursors WHERE sink = ?", (sink,)).fetchone()
        return None if row is None else int(row[0])

    def dead_letters(self, sink: str | None = None) -> list[tuple[str, int, str, int]]:
        """(sink, seq, error, at_ms) for each event a sink gave up on, in seq order."""
        sql = "SELECT sink, seq, error, at_ms FROM dead_letters"
        args: tuple[str, ...] = ()
        if sink is not None:
            sql += " WHERE sink = ?"
            args = (sink,)
        return [tuple(r) for r in self._conn.execute(sql + " ORDER BY seq, sink", args)]

    def pending(self) -> list[Pending]:
        last = self.last_seq()
        out: list[Pending] = []
        for c in self.cursors():
            oldest = self._conn.execute(
                "SELECT occurred_at_ms FROM events WHERE seq = ?", (c.seq + 1,)
            ).fetchone()
            out.append(
                Pending(
                    sink=c.sink,
                    cursor=c.seq,
                    backlog=max(0, last - c.seq),
                    oldest_unfinished_ms=None if oldest is None else int(oldest[0]),
                    updated_at_ms=c.updated_at_ms,
                )
            )
        return out

    # --- verification ----------------------------------------------------------------------

    def genesis_hash(self) -> str:
        return self.meta().get("genesis_hash", GENESIS_HASH)

    def verify(
        self, progress: Callable[[int], None] | None = None, every: int = 100_000
    ) -> tuple[int, str | None]:
        """Check every row's seq, link and hash. Returns (rows checked, first problem or None).

        ``progress(rows_checked)`` is called every ``every`` rows. The loop hashes the stored
        columns directly (the layout of gateway.chain, inlined: this loop is the whole cost of
        verifying a million rows); a row that fails is then explained by ``check_row``.
        """
        expected_prev = self.genesis_hash()
        expected_seq = 1
        sha256 = hashlib.sha256
        for row in self._conn.execute(
            f"SELECT {_COLUMNS} FROM events ORDER BY seq"  # noqa: S608 - constant columns
        ):
            seq, event_id, type_, at_ms, synced, origin, recovered, payload, prev, stored = row
            data = "\n".join(
                (
                    prev,
                    str(seq),
                    event_id,
                    type_,
                    str(at_ms),
                    str(synced),
                    origin,
                    str(recovered),
                    payload,
                )
            ).encode()
            if seq != expected_seq or prev != expected_prev or sha256(data).hexdigest() != stored:
                problem = check_row(
                    _row_to_chain(row), expected_seq=expected_seq, expected_prev_hash=expected_prev
                )
                return expected_seq - 1, f"seq {seq}: {problem or 'fields not in stored form'}"
            expected_seq = seq + 1
            expected_prev = stored
            if progress is not None and seq % every == 0:
                progress(seq)
        return expected_seq - 1, None


# --- the writer ----------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Item:
    """One queued append. ``recovered`` is guarded by Journal._lock."""

    new: NewEvent
    seq: int
    payload_json: str
    future: asyncio.Future[Event]
    recovered: bool = False


_STOP: Final = object()
_WAKE: Final = object()


@dataclass(slots=True)
class WriterHealth:
    """What the status line says about the disk."""

    failing: bool = False
    last_error: str | None = None
    held: int = 0
    recovered_total: int = 0
    commits: int = 0
    events_written: int = 0
    lost_at_stop: int = 0
    since_ms: int | None = field(default=None)


class Journal(JournalReader):
    """The daemon's journal: the single appender. Use :meth:`open`, then :meth:`start`."""

    # Back-off between commit attempts while the disk refuses them.
    RETRY_FIRST_S = 0.05
    RETRY_MAX_S = 5.0
    # At shutdown, how long to keep trying to write held events before giving up loudly.
    STOP_GRACE_S = 3.0
    # A cursor that moved with no event to commit waits this long to be written, so that a
    # delivery does not cost a second fsync; a crash meanwhile only means sending again.
    CURSOR_FLUSH_S = 0.5
    RECENT_EVENTS = 1024

    def __init__(self, path: Path, conn: sqlite3.Connection, writer: sqlite3.Connection) -> None:
        super().__init__(path, conn)
        self._writer_conn = writer
        meta = self.meta()
        tail = self._tail_row()
        self._tail_hash = tail.hash if tail else meta.get("genesis_hash", GENESIS_HASH)
        self._next_seq = (tail.seq if tail else 0) + 1
        self.durable_seq = tail.seq if tail else 0
        self.visible_seq = self.durable_seq
        self.journal_id = meta.get("journal_id", "")
        self._cursors: dict[str, int] = {c.sink: c.seq for c in self.cursors()}
        self._dirty_cursors: dict[str, int] = {}
        self._dead_letters: list[tuple[str, int, str, int]] = []  # guarded by _lock
        self._held: dict[int, Event] = {}
        # The last events committed by this process, contiguous in seq, for read_after.
        self._recent: deque[Event] = deque(maxlen=self.RECENT_EVENTS)
        self._lock = threading.Lock()
        self._failing = False
        self._commit_failed = False  # writer thread only
        self._queue: queue.SimpleQueue[_Item | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Event | None = None
        self.health = WriterHealth()
        self._lock_fd: int | None = None
        # Metrics hook (issue 10): called on the writer thread with each successful commit's
        # duration in seconds. Must be quick and thread-safe; None: not measured.
        self.on_commit: Callable[[float], None] | None = None

    # --- opening ---------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: Path | str,
        *,
        genesis_hash: str = GENESIS_HASH,
        predecessor: str | None = None,
    ) -> Journal:
        """Open (creating or migrating as needed) and check the chain's tail: O(1) in length.

        ``genesis_hash`` and ``predecessor`` apply only when the file is created: they link a
        new journal to one that was set aside.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        version = inspect_file(path)  # raises, touching nothing, if not ours or too new
        lock = _lock_writer(path)
        try:
            writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            writer.execute("PRAGMA journal_mode = WAL")
            # FULL: each commit fsyncs the WAL. That fsync is what "durable" means here.
            writer.execute("PRAGMA synchronous = FULL")
            writer.execute("PRAGMA busy_timeout = 5000")
            if version < SCHEMA_VERSION:
                old = migrate(writer)
                if old == 0:
                    cls._init_meta(writer, genesis_hash, predecessor)
                else:
                    log.info("journal %s migrated from schema %d to %d", path, old, SCHEMA_VERSION)
            reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            reader.execute("PRAGMA busy_timeout = 5000")
        except sqlite3.DatabaseError as e:
            os.close(lock)
            raise JournalCorruptError(f"{path}: cannot be opened as a journal: {e}") from e
        journal = cls(path, reader, writer)
        journal._lock_fd = lock
        try:
            journal._check_tail()
        except JournalError:
            journal._writer_conn.close()
            journal.close()
            raise
        return journal

    @staticmethod
    def _init_meta(conn: sqlite3.Connection, genesis_hash: str, predecessor: str | None) -> None:
        rows = {
            "journal_id": new_event_id(),
            "created_at_ms": str(time.time_ns() // 1_000_000),
            "genesis_hash": genesis_hash,
        }
        if predecessor:
            rows["predecessor"] = predecessor
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", rows.items())
        conn.execute("COMMIT")

    def _check_tail(self) -> None:
        """The last row must hash to itself and link to the one before: O(1), not a verify."""
        try:
            tail = self._tail_row()
            if tail is None:
                return
            if row_hash(tail) != tail.hash:
                raise JournalCorruptError(
                    f"{self.path}: the last row (seq {tail.seq}) does not match its hash"
                )
            if tail.seq > 1:
                before = self._conn.execute(
                    "SELECT hash FROM events WHERE seq = ?", (tail.seq - 1,)
                ).fetchone()
                if before is None or before[0] != tail.prev_hash:
                    raise JournalCorruptError(
                        f"{self.path}: the last row (seq {tail.seq}) does not link to seq "
                        f"{tail.seq - 1}"
                    )
        except sqlite3.DatabaseError as e:
            raise JournalCorruptError(f"{self.path}: tail unreadable: {e}") from e

    @property
    def tail_hash(self) -> str:
        return self._tail_hash

    # --- running ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer thread; call from the running event loop."""
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        self._thread = threading.Thread(
            target=self._writer_main, name="journal-writer", daemon=True
        )
        self._thread.start()

    async def aclose(self) -> None:
        """Commit everything queued, then stop the writer and close the connections."""
        if self._thread is not None:
            self._queue.put(_STOP)
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        self._writer_conn.close()
        self.close()

    def close(self) -> None:
        super().close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the writer lock
            self._lock_fd = None

    def append_nowait(self, new: NewEvent) -> asyncio.Future[Event]:
        """Queue ``new``; it gets the next seq now. The future resolves once it is durable
        (``held=False``) or held in memory because the disk refused it (``held=True``)."""
        assert self._loop is not None, "Journal.start() first"
        seq = self._next_seq
        self._next_seq += 1
        item = _Item(new, seq, canonical_json(new.payload.to_dict()), self._loop.create_future())
        with self._lock:
            failing = self._failing
            if failing:
                item.recovered = True
        if failing:
            # The disk is refusing writes: answer now so that feeding does not wait on it.
            self._resolve_held([item])
        self._queue.put(item)
        return item.future

    async def append(self, new: NewEvent) -> Event:
        return await self.append_nowait(new)

    def save_cursor(self, sink: str, seq: int) -> None:
        """Move ``sink``'s cursor; written with the next commit, or within ``CURSOR_FLUSH_S``
        (at least once delivery means a cursor a little behind after a crash only repeats
        work)."""
        if seq < self._cursors.get(sink, 0):
            raise JournalError(f"cursor {sink!r} cannot move back ({self._cursors[sink]} → {seq})")
        self._cursors[sink] = seq
        with self._lock:
            self._dirty_cursors[sink] = seq
        self._queue.put(_WAKE)  # the writer waits up to CURSOR_FLUSH_S for an event to join

    def add_dead_letter(self, sink: str, seq: int, error: str) -> None:
        """Record that ``sink`` gave up on event ``seq``; written with the next commit, before
        or with the cursor that moves past it."""
        with self._lock:
            self._dead_letters.append((sink, seq, error, time.time_ns() // 1_000_000))
        self._queue.put(_WAKE)

    def register_cursor(self, sink: str, *, start_at: int) -> int:
        """The sink's cursor, creating it at ``start_at`` the first time the sink is seen."""
        if sink not in self._cursors:
            self._cursors[sink] = start_at
            with self._lock:
                self._dirty_cursors[sink] = start_at
            self._queue.put(_WAKE)
        return self._cursors[sink]

    def cursor(self, sink: str) -> int | None:
        return self._cursors.get(sink)

    def read_after(
        self, after_seq: int, limit: int = 500, *, upto: int | None = None
    ) -> list[Event]:
        """Durable events after ``after_seq``, then any held in memory, in seq order."""
        bound = self.durable_seq if upto is None else min(upto, self.durable_seq)
        recent = self._recent
        if after_seq >= bound:
            events: list[Event] = []
        elif recent and recent[0].seq <= after_seq + 1:
            # The common case: a sink woken for what was just committed. Served from memory,
            # not re-read from SQLite (a measurable part of a press's latency).
            start = after_seq + 1 - recent[0].seq
            events = [e for e in itertools.islice(recent, start, None) if e.seq <= bound][:limit]
        else:
            events = super().read_after(after_seq, limit, upto=bound)
        if self._held and len(events) < limit:
            start = events[-1].seq if events else after_seq
            for seq in range(max(start, self.durable_seq) + 1, self.visible_seq + 1):
                held = self._held.get(seq)
                if held is None or (upto is not None and seq > upto) or len(events) >= limit:
                    break
                events.append(held)
        return events

    async def wait_beyond(self, seq: int) -> None:
        """Return once an event with a seq above ``seq`` is readable (durable or held)."""
        while self.visible_seq <= seq:
            assert self._changed is not None
            await self._changed.wait()

    async def wait_durable(self, seq: int) -> None:
        """Return once every event up to ``seq`` is committed (held ones included, once the
        disk takes them again)."""
        while self.durable_seq < seq:
            assert self._changed is not None
            await self._changed.wait()

    def _notify(self) -> None:
        assert self._changed is not None
        self._changed.set()
        self._changed = asyncio.Event()

    # --- loop-thread callbacks from the writer ---------------------------------------------

    def _event_of(self, item: _Item, *, prev_hash: str = "", hash_: str = "", held: bool) -> Event:
        return Event(
            seq=item.seq,
            event_id=item.new.event_id,
            occurred_at_ms=item.new.occurred_at_ms,
            clock_synced=item.new.clock_synced,
            origin=item.new.origin,
            payload=item.new.payload,
            recovered=item.recovered,
            prev_hash=prev_hash,
            hash=hash_,
            held=held,
        )

    def _resolve_held(self, items: Sequence[_Item]) -> None:
        for item in items:
            if item.future.done():
                continue
            event = self._event_of(item, held=True)
            self._held[item.seq] = event
            self.visible_seq = max(self.visible_seq, item.seq)
            item.future.set_result(event)
        self.health.held = len(self._held)
        self._notify()

    def _on_failed(self, items: Sequence[_Item], error: str) -> None:
        if not self.health.failing:
            log.critical(
                "JOURNAL WRITE FAILED (%s): feeding continues; %d event(s) held in memory "
                "until the journal accepts them",
                error,
                len(items),
            )
            self.health.since_ms = time.time_ns() // 1_000_000
        self.health.failing = True
        self.health.last_error = error
        self._resolve_held(items)

    def _on_committed(self, written: Sequence[tuple[_Item, str, str]]) -> None:
        recovered = 0
        for item, prev_hash, hash_ in written:
            if self._held.pop(item.seq, None) is not None:
                recovered += 1
            event = self._event_of(item, prev_hash=prev_hash, hash_=hash_, held=False)
            if not item.future.done():
                item.future.set_result(event)
            self._recent.append(event)
            self.durable_seq = max(self.durable_seq, item.seq)
        self.visible_seq = max(self.visible_seq, self.durable_seq)
        self.health.commits += 1
        self.health.events_written += len(written)
        self.health.held = len(self._held)
        if self.health.failing:
            self.health.recovered_total += recovered
            log.warning("journal writable again: %d held event(s) recorded as recovered", recovered)
            self.health.failing = False
            self.health.since_ms = None
        self._notify()

    # --- the writer thread -----------------------------------------------------------------

    def _writer_main(self) -> None:
        assert self._loop is not None
        loop = self._loop
        backlog: list[_Item] = []  # events whose commit failed, in order, ahead of new ones
        delay = self.RETRY_FIRST_S
        stopping_since: float | None = None
        while True:
            # Retrying: wait out the back-off, collecting new appends meanwhile. Otherwise sleep
            # until there is work.
            with contextlib.suppress(queue.Empty):
                first = self._queue.get(timeout=delay if backlog else None)
                stopping_since = self._absorb(first, backlog, stopping_since)
            if not backlog:
                stopping_since = self._wait_for_company(backlog, stopping_since)
            while True:
                try:
                    stopping_since = self._absorb(self._queue.get_nowait(), backlog, stopping_since)
                except queue.Empty:
                    break
            with self._lock:
                cursors = dict(self._dirty_cursors)
                letters = list(self._dead_letters)
            if backlog or cursors or letters:
                try:
                    written = self._timed_commit(backlog, cursors, letters)
                except sqlite3.Error as e:
                    with self._lock:
                        self._failing = True
                        for item in backlog:
                            item.recovered = True
                    loop.call_soon_threadsafe(self._on_failed, list(backlog), str(e))
                    delay = min(delay * 2, self.RETRY_MAX_S) if delay else self.RETRY_FIRST_S
                    if stopping_since is not None and (
                        time.monotonic() - stopping_since > self.STOP_GRACE_S
                    ):
                        self._give_up(backlog, e)
                        return
                    continue
                with self._lock:
                    self._failing = False
                    for sink, seq in cursors.items():
                        if self._dirty_cursors.get(sink) == seq:
                            del self._dirty_cursors[sink]
                    del self._dead_letters[: len(letters)]
                backlog = []
                delay = self.RETRY_FIRST_S
                if written:
                    loop.call_soon_threadsafe(self._on_committed, written)
            if stopping_since is not None and not backlog:
                return

    def _wait_for_company(self, backlog: list[_Item], stopping_since: float | None) -> float | None:
        """Woken for a cursor (or a dead letter) alone: give an event up to ``CURSOR_FLUSH_S``
        to come and share the commit, so a delivery does not cost an fsync of its own."""
        deadline = time.monotonic() + self.CURSOR_FLUSH_S
        while not backlog and stopping_since is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                got = self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            stopping_since = self._absorb(got, backlog, stopping_since)
        return stopping_since

    def _absorb(
        self, got: object, backlog: list[_Item], stopping_since: float | None
    ) -> float | None:
        if got is _STOP:
            return time.monotonic() if stopping_since is None else stopping_since
        if isinstance(got, _Item):
            backlog.append(got)
        return stopping_since

    def _timed_commit(
        self,
        items: Sequence[_Item],
        cursors: dict[str, int],
        letters: Sequence[tuple[str, int, str, int]],
    ) -> list[tuple[_Item, str, str]]:
        """:meth:`_commit`, its duration handed to the ``on_commit`` hook (metrics)."""
        began = time.perf_counter()
        written = self._commit(items, cursors, letters)
        if self.on_commit is not None:
            self.on_commit(time.perf_counter() - began)
        return written

    def _commit(
        self,
        items: Sequence[_Item],
        cursors: dict[str, int],
        letters: Sequence[tuple[str, int, str, int]] = (),
    ) -> list[tuple[_Item, str, str]]:
        """One transaction: the events in order, then cursors and dead letters.
        Raises sqlite3.Error."""
        conn = self._writer_conn
        now_ms = time.time_ns() // 1_000_000
        try:
            conn.execute("BEGIN IMMEDIATE")
            # Only a commit that reported failure can have reached the disk regardless.
            written = self._already_committed(conn, items) if self._commit_failed else []
            prev = written[-1][2] if written else self._tail_hash
            rows = []
            with self._lock:
                flags = [item.recovered for item in items[len(written) :]]
            for item, recovered in zip(items[len(written) :], flags, strict=True):
                new = item.new
                h = chain_hash(
                    prev,
                    seq=item.seq,
                    event_id=new.event_id,
                    type_=new.type.value,
                    occurred_at_ms=new.occurred_at_ms,
                    clock_synced=new.clock_synced,
                    origin=new.origin.value,
                    recovered=recovered,
                    payload=item.payload_json,
                )
                rows.append(
                    (
                        item.seq,
                        new.event_id,
                        new.type.value,
                        new.occurred_at_ms,
                        int(new.clock_synced),
                        new.origin.value,
                        int(recovered),
                        item.payload_json,
                        prev,
                        h,
                    )
                )
                written.append((item, prev, h))
                prev = h
            if rows:
                conn.executemany(
                    f"INSERT INTO events ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",  # noqa: S608
                    rows,
                )
            if cursors:
                conn.executemany(
                    "INSERT INTO cursors (sink, seq, updated_at_ms) VALUES (?, ?, ?) "
                    "ON CONFLICT (sink) DO UPDATE SET seq = excluded.seq, "
                    "updated_at_ms = excluded.updated_at_ms",
                    [(sink, seq, now_ms) for sink, seq in cursors.items()],
                )
            if letters:
                conn.executemany(
                    "INSERT OR REPLACE INTO dead_letters (sink, seq, error, at_ms) "
                    "VALUES (?, ?, ?, ?)",
                    letters,
                )
            conn.execute("COMMIT")
        except sqlite3.Error:
            self._commit_failed = True
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        self._tail_hash = prev
        self._commit_failed = False
        return written

    def _already_committed(
        self, conn: sqlite3.Connection, items: Sequence[_Item]
    ) -> list[tuple[_Item, str, str]]:
        """The leading ``items`` that an earlier attempt did commit after all.

        A COMMIT can report an error (disk full, I/O) and still have reached the disk. Writing
        those events again would trip the gapless trigger forever; instead they are taken as
        written, with the hashes the disk holds.
        """
        if not items:
            return []
        (last,) = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()
        if last < items[0].seq:
            return []
        stored = conn.execute(
            "SELECT seq, event_id, prev_hash, hash FROM events WHERE seq >= ? AND seq <= ? "
            "ORDER BY seq",
            (items[0].seq, min(last, items[-1].seq)),
        ).fetchall()
        done: list[tuple[_Item, str, str]] = []
        for item, (seq, event_id, prev_hash, hash_) in zip(items, stored, strict=False):
            if seq != item.seq or event_id != item.new.event_id:
                raise sqlite3.IntegrityError(
                    f"journal seq {seq} holds another event than this writer queued: "
                    "is a second process appending?"
                )
            done.append((item, prev_hash, hash_))
        return done

    def _give_up(self, backlog: Sequence[_Item], error: sqlite3.Error) -> None:
        self.health.lost_at_stop = len(backlog)
        log.critical(
            "JOURNAL: stopping with %d event(s) that could not be written (%s): seq %d..%d are "
            "lost from the ledger",
            len(backlog),
            error,
            backlog[0].seq,
            backlog[-1].seq,
        )

    # --- for tests and maintenance ---------------------------------------------------------

    def writer_pragma(self, sql: str) -> None:
        """Run a PRAGMA on the writer connection (tests simulate a full disk with
        ``max_page_count``). Only safe while no commit is in progress, e.g. between awaits."""
        if not sql.lstrip().upper().startswith("PRAGMA"):
            raise JournalError("writer_pragma takes a PRAGMA only")
        self._writer_conn.execute(sql)


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
