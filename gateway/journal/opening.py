"""What opening a journal checks, and what is left of a journal that failed the checks.

Two questions a start-up must not confuse (docs/reliability.md, faults 1 and 3):

- *Can the disk take writes?* A full disk or an I/O error is the disk's trouble, not the
  file's: ``files.disk_trouble`` names those SQLite errors, and the journal then opens degraded
  (read through an ``immutable`` connection, which needs no ``-shm`` and no free space).
- *Is the file sound?* :func:`read_window` reads every row the start-up will fold (the recent
  window, and the feeder's last reports), checking each row's hash and its link to the next and
  parsing it. Anything wrong raises JournalCorruptError: the file is set aside untouched, and
  :func:`salvage` reads what it still can from it — the last hash that verifies, the highest seq
  it shows, and the recent events, so the policy remembers recent feeds across the set-aside.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gateway.errors import JournalCorruptError, JournalTailLostError
from gateway.events import Event, EventType
from gateway.journal.chain import GENESIS_HASH, ChainRow, check_row, row_hash
from gateway.journal.files import (
    connect_immutable,
    connect_read_only,
    connect_read_write,
    disk_trouble,
)
from gateway.journal.rows import COLUMNS, to_chain, to_event
from gateway.journal.schema import SCHEMA_VERSION, migrate
from gateway.journal.sidecar import Spilled, read_mark, read_spill

log = logging.getLogger("gateway.journal")

_REPORTS = (
    (EventType.FOOD_LEVEL_CHANGED,),
    (EventType.FEEDER_ONLINE, EventType.FEEDER_OFFLINE),
)


def check_file(path: Path, version: int, since_ms: int) -> tuple[Window, bool]:
    """Read and check the window through a connection that cannot write: (the window, whether
    the disk is in trouble). Raises JournalCorruptError before anything opens the file for
    writing, so a damaged file is set aside exactly as it was found."""
    if version == 0:
        return Window(), False
    trouble = False
    try:
        conn = connect_read_only(path)
        try:
            return read_window(conn, since_ms), False
        finally:
            conn.close()
    except sqlite3.Error as e:
        if not disk_trouble(e):
            raise JournalCorruptError(f"{path}: unreadable as a journal: {e}") from e
        trouble = True
    conn = connect_immutable(path)
    try:
        return read_window(conn, since_ms), trouble
    except sqlite3.Error as e:
        raise JournalCorruptError(f"{path}: unreadable as a journal: {e}") from e
    finally:
        conn.close()


def writer_opener(
    path: Path, version: int, meta: dict[str, str]
) -> Callable[[], sqlite3.Connection]:
    """What opens the write connection: now, or (degraded) once the disk takes writes again.
    A new file gets ``meta``; an older schema is migrated forward."""

    def open_writer() -> sqlite3.Connection:
        conn = connect_read_write(path)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            old = migrate(conn) if version < SCHEMA_VERSION else version
            if old == 0:
                init_meta(conn, meta)
            elif old < SCHEMA_VERSION:
                log.info("journal %s migrated from schema %d to %d", path, old, SCHEMA_VERSION)
        except BaseException:
            conn.close()
            raise
        return conn

    return open_writer


def init_meta(conn: sqlite3.Connection, rows: dict[str, str]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", rows.items())
    conn.execute("COMMIT")


def degraded_reader(path: Path, version: int, meta: dict[str, str]) -> sqlite3.Connection:
    """A reader while the disk refuses: the file as it stands, or (no file yet) an empty journal
    in memory with the meta the file will be created with."""
    if version > 0:
        return connect_immutable(path)
    conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    migrate(conn)
    init_meta(conn, meta)
    return conn


@dataclass(slots=True)
class Window:
    """The rows a start-up reads, already checked: the tail, the recent ones, the reports."""

    tail: ChainRow | None = None
    events: list[Event] = field(default_factory=list)  # in seq order
    reports: list[Event] = field(default_factory=list)  # the feeder's last level and availability


def read_window(conn: sqlite3.Connection, since_ms: int, max_rows: int = 100_000) -> Window:
    """Check and read the recent window (at least the tail and the row before it).

    Raises JournalCorruptError naming the seq and the reason; sqlite3 errors of the disk's
    trouble (:func:`disk_trouble`) pass through unchanged for the caller to tell apart.
    """
    window = Window()
    newer: ChainRow | None = None
    try:
        cur = conn.execute(
            f"SELECT {COLUMNS} FROM events ORDER BY seq DESC LIMIT ?",  # noqa: S608 - constant
            (max_rows,),
        )
        for raw in cur:
            row = to_chain(raw)
            problem = _row_problem(row, newer)
            if problem:
                raise JournalCorruptError(f"seq {row.seq}: {problem}")
            if newer is None:
                window.tail = row
            if raw[3] < since_ms and newer is not None:
                break  # the row before the window: its link to the window is checked
            window.events.append(_event(raw))
            newer = row
        window.events.reverse()
        for types in _REPORTS:
            best: tuple[object, ...] | None = None
            for t in types:
                found = conn.execute(
                    f"SELECT {COLUMNS} FROM events WHERE type = ? "  # noqa: S608
                    "ORDER BY seq DESC LIMIT 1",
                    (t.value,),
                ).fetchone()
                if found is not None and (best is None or found[0] > best[0]):
                    best = found
            if best is not None:
                if row_hash(to_chain(best)) != best[9]:
                    raise JournalCorruptError(f"seq {best[0]}: hash mismatch")
                window.reports.append(_event(best))
    except sqlite3.Error as e:
        if disk_trouble(e):
            raise
        raise JournalCorruptError(f"unreadable: {e}") from e
    return window


def _row_problem(row: ChainRow, newer: ChainRow | None) -> str | None:
    if newer is not None:
        problem = check_row(newer, expected_seq=row.seq + 1, expected_prev_hash=row.hash)
        if problem:
            return f"seq {newer.seq}: {problem}"
    try:
        if row_hash(row) != row.hash:
            return "its fields do not match its hash"
    except (TypeError, UnicodeError) as e:
        return f"malformed row ({e})"
    return None


def _event(raw: tuple[object, ...] | sqlite3.Row) -> Event:
    try:
        return to_event(raw)
    except (ValueError, TypeError, KeyError) as e:
        raise JournalCorruptError(f"seq {raw[0]}: payload unreadable ({e})") from e


def spilled_after(path: Path, owners: set[str], last: int) -> list[Spilled]:
    """The events an earlier life spilled (``sidecar``) that follow seq ``last``: they go back
    in with their own seqs. Raises JournalTailLostError when the journal, with them, still
    ends below its high-water mark: it lost events a sink may have sent (``-wal`` deleted)."""
    replay: list[Spilled] = []
    for record in read_spill(path):
        if record.journal_id in owners and record.seq == last + len(replay) + 1:
            replay.append(record)
    top = last + len(replay)
    if replay:
        log.warning(
            "journal %s: seq %d..%d, spilled by the last run, go in now", path, last + 1, top
        )
    mark = read_mark(path)
    if mark is not None and mark.journal_id in owners and mark.seq > top:
        raise JournalTailLostError(
            f"{path}: the journal ends at seq {top} but seq {mark.seq} was already answered "
            "(was its -wal file deleted?)",
            mark.seq,
        )
    return replay


# --- what is left of a damaged journal ------------------------------------------------------


@dataclass(slots=True)
class Salvage:
    journal_id: str = ""
    last_good_seq: int = 0  # the end of the prefix that verifies from the genesis hash
    last_good_hash: str = GENESIS_HASH
    highest_seq: int = 0  # the highest seq any readable row shows
    recent: dict[int, Event] = field(default_factory=dict)
    remembered: list[Event] = field(default_factory=list)  # feeds the high-water mark kept

    def carried(self) -> list[Event]:
        """The recent events to fold, in seq order: those still readable, and the feeds the
        mark remembers whose rows are gone."""
        events = dict(self.recent)
        for feed in self.remembered:
            events.setdefault(feed.seq, feed)
        return [events[s] for s in sorted(events)]


def salvage(path: Path, since_ms: int, max_rows: int = 100_000) -> Salvage:
    """Read what can be read of a set-aside journal, never raising, never writing.

    The chain is followed from its genesis as far as it verifies (O(n), once, after damage).
    Every readable event recorded since ``since_ms`` is kept, even past a bad row: a feed that
    happened still counts for the gap and the cap (erring towards refusing, never towards
    feeding twice).
    """
    out = Salvage()
    original = path.with_name(path.name.split(".damaged-")[0])
    for connect in (_connect_forgiving, lambda p: _connect_forgiving(p, immutable=True)):
        try:
            conn = connect(path)
        except sqlite3.Error:
            continue
        try:
            _salvage_with(conn, original, out, since_ms, max_rows)
        finally:
            conn.close()
        if out.highest_seq:
            break
    return out


def _connect_forgiving(path: Path, *, immutable: bool = False) -> sqlite3.Connection:
    flags = "mode=ro&immutable=1" if immutable else "mode=ro"
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?{flags}", uri=True)
    # Text that is not UTF-8 becomes a row that fails its hash, not an exception mid-scan.
    conn.text_factory = _text
    return conn


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _salvage_with(
    conn: sqlite3.Connection, path: Path, out: Salvage, since_ms: int, max_rows: int
) -> None:
    meta: dict[str, str] = {}
    with contextlib.suppress(sqlite3.Error):
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    out.journal_id = meta.get("journal_id", "")
    mark = read_mark(path)
    if mark is not None and mark.journal_id == out.journal_id:
        out.highest_seq = mark.seq  # the mark stays beside the journal: it is not set aside
        out.remembered = mark.feed_events()
    prev = meta.get("genesis_hash", GENESIS_HASH)
    expected = int(meta.get("base_seq", "0") or 0) + 1
    out.last_good_seq, out.last_good_hash = expected - 1, prev
    verifying = True

    def keep(raw: tuple[object, ...]) -> None:
        seq = int(raw[0])  # type: ignore[call-overload]
        out.highest_seq = max(out.highest_seq, seq)
        if isinstance(raw[3], int) and raw[3] >= since_ms and len(out.recent) < max_rows:
            with contextlib.suppress(ValueError, TypeError, KeyError, JournalCorruptError):
                out.recent[seq] = _event(raw)

    def scan(sql: str, each: Callable[[tuple[object, ...]], bool]) -> None:
        with contextlib.suppress(sqlite3.Error):
            for raw in conn.execute(sql):
                if not each(raw):
                    return

    def forward(raw: tuple[object, ...]) -> bool:
        nonlocal verifying, expected, prev
        keep(raw)
        if verifying:
            row = to_chain(raw)
            try:
                ok = check_row(row, expected_seq=expected, expected_prev_hash=prev) is None
            except (TypeError, UnicodeError):
                ok = False
            if ok:
                out.last_good_seq, out.last_good_hash = row.seq, row.hash
                expected, prev = row.seq + 1, row.hash
            else:
                verifying = False
        return True

    scan(f"SELECT {COLUMNS} FROM events ORDER BY seq", forward)  # noqa: S608 - constant
    # A bad page can end the forward scan early: read backwards from the tail too.
    top = out.highest_seq

    def backward(raw: tuple[object, ...]) -> bool:
        if int(raw[0]) <= top:  # type: ignore[call-overload]
            return False
        keep(raw)
        return True

    scan(f"SELECT {COLUMNS} FROM events ORDER BY seq DESC", backward)  # noqa: S608 - constant
