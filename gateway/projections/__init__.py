"""Projections: pure folds of the journal into a datastore of their own, tracked exactly once.

A projection is one small module (see ``feeding_history``): a :class:`Projection` names itself,
declares its SQLite schema, the event types it reads, and a pure ``apply(row)`` that turns one
journal row into what folds it in: :class:`Insert` rows (the fast path: buffered and written
with ``executemany``, table by table) and :class:`Sql` statements (run in order, after every
row yielded before them is written). No I/O in ``apply``: the same rows always give the same
output, so a projection built as of seq N is the same whether it was built in one go or
brought up to date many times on the way. An insert-only projection whose queries are views
is both the simplest to write and the fastest to rebuild.

The :class:`Runner` does the I/O. It opens the journal read-only (never blocking the daemon,
which is the only appender) and the projection's own SQLite file read-write, and folds the
journal in seq windows. Each window is ONE transaction on the projection's file that both
applies the window's statements and moves the projection's position (the
``projection_position`` row) from the window's start to its end — compare-and-set, so a second
builder racing on the same file, or a retry after a crash, can never apply a window twice. A
build killed at any instant leaves the file at the end of its last committed window, and the
next run continues from exactly there: every event is applied exactly once. (This is the same
idea as the eventsourcing library's process recorder, which records a tracking position in the
same transaction as the records it derives; here the position is a compare-and-set row.)

"As of" a point: ``until_seq`` folds the journal's prefix up to that seq. ``until_ms`` folds
the prefix before the first event recorded at or after that time: seq is the order, and an
event with an unsynchronised clock does not move the cut back. A file already past the asked
point cannot be folded backwards: rebuild it (``--rebuild`` starts a new file).

Rows are handed to ``apply`` as :class:`Row` — the stored columns with the payload decoded by
``json.loads`` only, not validated into typed payloads (the journal validated them when it
wrote them; re-validating a million rows would triple the cost of a rebuild).
"""

from __future__ import annotations

import contextlib
import gc
import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NamedTuple, Protocol

from gateway.errors import GatewayError
from gateway.journal import GENESIS_HASH, JournalReader
from gateway.journal.schema import APPLICATION_ID


class Insert(NamedTuple):
    """Insert ``values`` (every column, in schema order) into ``table``."""

    table: str
    values: Sequence[Any]


class Sql(NamedTuple):
    """Run ``statement`` with ``params`` (an UPDATE, an upsert...), in order."""

    statement: str
    params: Sequence[Any] = ()


Op = Insert | Sql

WINDOW: Final = 20_000  # seqs folded per transaction

_POSITION_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS projection_position (
    name           TEXT PRIMARY KEY,
    version        INTEGER NOT NULL,
    seq            INTEGER NOT NULL CHECK (seq >= 0),
    hash           TEXT    NOT NULL,  -- the journal's chain hash at seq: which journal, where
    occurred_at_ms INTEGER,           -- the recorded time of the event at seq
    updated_at_ms  INTEGER NOT NULL
)
"""


class ProjectionError(GatewayError):
    """A projection file that cannot be brought to the asked point as it is."""


@dataclass(frozen=True, slots=True)
class Row:
    """One journal row as a projection sees it."""

    seq: int
    type: str
    occurred_at_ms: int
    clock_synced: bool
    origin: str
    data: dict[str, Any]


class Projection(Protocol):
    """What a projection module provides (see ``feeding_history`` for one)."""

    @property
    def name(self) -> str:
        """Its name: ``fmfb project NAME``."""
        ...

    @property
    def version(self) -> int:
        """Bump it when ``schema`` or ``apply`` change: older files must be rebuilt."""
        ...

    @property
    def schema(self) -> Sequence[str]:
        """CREATE statements (tables, indexes, views) for a new file."""
        ...

    @property
    def event_types(self) -> frozenset[str] | None:
        """The event types ``apply`` reads (others are passed over unread); None: all."""
        ...

    def apply(self, row: Row) -> Iterable[Op]:
        """What folds ``row`` in. Pure."""
        ...


@dataclass(frozen=True, slots=True)
class Position:
    seq: int
    hash: str
    occurred_at_ms: int | None
    version: int


@dataclass(frozen=True, slots=True)
class BuildResult:
    start_seq: int
    seq: int
    applied: int  # rows handed to apply
    seconds: float


Progress = Callable[[int, int], None]  # (position, target)


def target_seq(
    reader: JournalReader, *, until_seq: int | None = None, until_ms: int | None = None
) -> int:
    """The last seq a build "as of" the given point folds (see the module docstring)."""
    last = reader.last_seq()
    target = last if until_seq is None else min(until_seq, last)
    if until_ms is not None:
        first_at_or_after = reader.first_seq_at_or_after(until_ms)
        if first_at_or_after is not None:
            target = min(target, first_at_or_after - 1)
    return max(0, target)


class Runner:
    """Builds and updates one projection's SQLite file from a journal."""

    def __init__(self, projection: Projection, out: Path, *, window: int = WINDOW) -> None:
        self.projection = projection
        self.out = out
        self.window = window
        self._conn: sqlite3.Connection | None = None

    # --- the projection's file -------------------------------------------------------------

    @staticmethod
    def remove(out: Path) -> None:
        """Delete a projection file (and its WAL) so the next build starts from seq 0."""
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                Path(f"{out}{suffix}").unlink()

    def open(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        conn = sqlite3.connect(self.out, isolation_level=None)
        (app_id,) = conn.execute("PRAGMA application_id").fetchone()
        if app_id == APPLICATION_ID:
            conn.close()
            raise ProjectionError(
                f"{self.out} is a journal, not a projection: choose another --out"
            )
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.execute("PRAGMA journal_mode = WAL")
        # NORMAL in WAL: a killed process loses nothing committed; a power cut may lose the
        # last windows, position and rows together (still exactly once).
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA cache_size = -65536")  # 64 MiB: a window's pages stay in memory
        p = self.projection
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(_POSITION_SCHEMA)
            row = conn.execute(
                "SELECT version FROM projection_position WHERE name = ?", (p.name,)
            ).fetchone()
            if row is None:
                for statement in p.schema:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO projection_position (name, version, seq, hash, occurred_at_ms, "
                    "updated_at_ms) VALUES (?, ?, 0, ?, NULL, ?)",
                    (p.name, p.version, GENESIS_HASH, _now_ms()),
                )
            elif int(row[0]) != p.version:
                raise ProjectionError(  # noqa: TRY301 - rolled back just below
                    f"{self.out} holds {p.name} version {row[0]}, this code builds version "
                    f"{p.version}: rebuild it (--rebuild)"
                )
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            conn.close()
            raise
        self._conn = conn
        return conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Runner:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def position(self) -> Position:
        row = (
            self.open()
            .execute(
                "SELECT seq, hash, occurred_at_ms, version FROM projection_position WHERE name = ?",
                (self.projection.name,),
            )
            .fetchone()
        )
        return Position(int(row[0]), str(row[1]), row[2], int(row[3]))

    # --- building --------------------------------------------------------------------------

    def run(
        self,
        reader: JournalReader,
        *,
        until_seq: int | None = None,
        until_ms: int | None = None,
        progress: Progress | None = None,
    ) -> BuildResult:
        """Fold the journal from this file's position up to the asked point (default: the
        journal's end). Safe to interrupt at any instant; safe to run again."""
        started = time.perf_counter()
        target = target_seq(reader, until_seq=until_seq, until_ms=until_ms)
        pos = self.position()
        self._check_same_journal(reader, pos)
        if pos.seq > target:
            raise ProjectionError(
                f"{self.out} is already at seq {pos.seq}, past the asked seq {target}: a "
                "projection cannot be folded backwards; rebuild it (--rebuild)"
            )
        applied = 0
        start = pos.seq
        windows = [
            (after, min(after + self.window, target))
            for after in range(pos.seq, target, self.window)
        ]
        # A window's rows are acyclic tuples and dicts, freed at its end: the cyclic collector
        # would only rescan them (its full passes grow with what a window keeps alive).
        collecting = gc.isenabled()
        gc.disable()
        try:
            for after, end in windows:
                applied += self._fold_window(reader, after, end)
                if progress is not None:
                    progress(end, target)
        finally:
            if collecting:
                gc.enable()
        return BuildResult(start, target, applied, time.perf_counter() - started)

    def _check_same_journal(self, reader: JournalReader, pos: Position) -> None:
        if pos.seq == 0:
            expected: str | None = reader.genesis_hash()
        else:
            at = reader.position_at(pos.seq)
            expected = None if at is None else at[0]
        if expected != pos.hash:
            raise ProjectionError(
                f"{self.out} was built from another journal (its position, seq {pos.seq}, "
                "does not match this journal's chain there): rebuild it (--rebuild)"
            )

    def _fold_window(self, reader: JournalReader, after: int, end: int) -> int:
        """Apply seqs (after, end] and move the position after -> end, in one transaction."""
        prepared = self._prepare(reader, after, end)
        self._commit(prepared)
        return prepared.rows

    def _prepare(self, reader: JournalReader, after: int, end: int) -> _Window:
        """Read seqs (after, end] and fold them into what to write. No write here."""
        p = self.projection
        rows = reader.fold_rows(after, end, p.event_types)
        tail = reader.position_at(end)
        if tail is None:
            raise ProjectionError(f"the journal has no seq {end}")
        apply = p.apply
        steps: list[dict[str, list[Sequence[Any]]] | Sql] = []
        pending: dict[str, list[Sequence[Any]]] = {}
        # Every stored payload is one compact JSON object (canonical_json): the window's
        # payloads decode as one JSON array, in one pass of the C scanner.
        datas = json.loads("[" + ",".join([r[5] for r in rows]) + "]") if rows else []
        for (seq, type_, at_ms, synced, origin, _), data in zip(rows, datas, strict=True):
            for op in apply(Row(seq, type_, at_ms, synced == 1, origin, data)):
                if op.__class__ is Insert:
                    table = op[0]
                    batch = pending.get(table)
                    if batch is None:
                        batch = pending[table] = []
                    batch.append(op[1])
                else:
                    # Rows yielded before a statement are written before it runs.
                    if pending:
                        steps.append(pending)
                        pending = {}
                    steps.append(Sql(op[0], op[1]))
        if pending:
            steps.append(pending)
        return _Window(after, end, tail[0], tail[1], steps, len(rows))

    def _commit(self, w: _Window) -> None:
        """Write a prepared window and move the position w.after -> w.end: one transaction,
        applied only if the position is still w.after (compare-and-set)."""
        p = self.projection
        conn = self.open()
        conn.execute("BEGIN IMMEDIATE")
        try:
            (now_at,) = conn.execute(
                "SELECT seq FROM projection_position WHERE name = ?", (p.name,)
            ).fetchone()
            if now_at != w.after:
                raise ProjectionError(  # noqa: TRY301 - rolled back just below
                    f"{self.out}: {p.name} moved away from seq {w.after} to {now_at} while "
                    "this build ran (another builder?): nothing from this window was applied"
                )
            for step in w.steps:
                if isinstance(step, Sql):
                    conn.execute(step.statement, step.params)
                    continue
                for table, values in step.items():
                    conn.executemany(_insert_sql(table, len(values[0])), values)
            moved = conn.execute(
                "UPDATE projection_position SET seq = ?, hash = ?, occurred_at_ms = ?, "
                "updated_at_ms = ? WHERE name = ? AND seq = ?",
                (w.end, w.hash, w.occurred_at_ms, _now_ms(), p.name, w.after),
            ).rowcount
            if moved != 1:
                raise ProjectionError(  # noqa: TRY301 - rolled back just below
                    f"{self.out}: {p.name} moved away from seq {w.after} while this build ran "
                    "(another builder?): nothing from this window was applied"
                )
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise


@dataclass(frozen=True, slots=True)
class _Window:
    """One window of the journal, folded and ready to be written."""

    after: int
    end: int
    hash: str
    occurred_at_ms: int | None
    steps: list[dict[str, list[Sequence[Any]]] | Sql]
    rows: int


def _insert_sql(table: str, width: int) -> str:
    return f'INSERT INTO "{table}" VALUES ({",".join("?" * width)})'  # noqa: S608 - own tables


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def table_contents(
    path: Path, *, exclude: Iterable[str] = ("projection_position",)
) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's and view's rows, sorted (for comparing two builds)."""
    skip = set(exclude)
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') ORDER BY name"
            )
            if r[0] not in skip and not r[0].startswith("sqlite_")
        ]
        return {
            name: sorted(
                conn.execute(f'SELECT * FROM "{name}"').fetchall(),  # noqa: S608 - own names
                key=repr,
            )
            for name in names
        }
    finally:
        conn.close()
