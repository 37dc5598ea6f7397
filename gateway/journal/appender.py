"""The daemon's journal: the one appender, on the event loop's side.

:class:`Journal` numbers each append on the loop, in call order, and hands it to the
:class:`~gateway.journal.writer.CommitThread`; the caller's future resolves only when its own
event is committed and fsynced (``held=False``), or at once with ``held=True`` when the disk is
refusing writes, so that feeding never waits on the disk. Held events are readable (sinks that
act locally may act on them) and are written with ``recovered=1`` once the disk takes them.

It answers differently from :class:`~gateway.journal.reader.JournalReader` on purpose, so it
does not pretend to be one: :meth:`Journal.read_visible` includes held events and serves recent
ones from memory, :meth:`Journal.saved_cursor` is the position a sink last saved (perhaps not
yet written). For what is on disk, ask :attr:`Journal.reader`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import sqlite3
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gateway.backoff import Backoff
from gateway.clock import Clock, SystemClock
from gateway.errors import JournalCorruptError, JournalError
from gateway.events import Event, NewEvent, canonical_json
from gateway.journal.chain import GENESIS_HASH, row_hash
from gateway.journal.cursors import CursorBook
from gateway.journal.files import (
    WriterLock,
    connect_read_write,
    inspect_file,
    set_aside,
)
from gateway.journal.ids import new_event_id
from gateway.journal.reader import JournalReader
from gateway.journal.schema import SCHEMA_VERSION, migrate
from gateway.journal.writer import CommitThread, Item, Written

log = logging.getLogger("gateway.journal")


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


class Journal:
    """The daemon's journal: the single appender. Use :meth:`open`, then :meth:`start`."""

    # Back-off between commit attempts while the disk refuses them (see :attr:`retry`).
    RETRY_FIRST_S = 0.05
    RETRY_MAX_S = 5.0
    # At shutdown, how long to keep trying to write held events before giving up loudly.
    STOP_GRACE_S = 3.0
    # A cursor that moved with no event to commit waits this long to be written, so that a
    # delivery does not cost a second fsync; a crash meanwhile only means sending again.
    CURSOR_FLUSH_S = 0.5
    RECENT_EVENTS = 1024

    def __init__(
        self, reader: JournalReader, writer: sqlite3.Connection, lock: WriterLock, clock: Clock
    ) -> None:
        self.reader = reader
        self.path = reader.path
        self._writer_conn = writer
        self._lock = lock
        self._clock = clock
        meta = reader.meta()
        tail = reader.tail()
        self._tail_hash = tail.hash if tail else meta.get("genesis_hash", GENESIS_HASH)
        self._next_seq = (tail.seq if tail else 0) + 1
        self.durable_seq = tail.seq if tail else 0
        self.visible_seq = self.durable_seq
        self.journal_id = meta.get("journal_id", "")
        self._book = CursorBook(reader.cursors(), clock)
        self._held: dict[int, Event] = {}
        # The last events committed by this process, contiguous in seq, for read_visible.
        self._recent: deque[Event] = deque(maxlen=self.RECENT_EVENTS)
        # Public so that a test can shorten it on a running journal.
        self.retry = Backoff(self.RETRY_FIRST_S, self.RETRY_MAX_S)
        self._writer: CommitThread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: list[asyncio.Future[None]] = []  # woken by _notify
        self.health = WriterHealth()
        # Called on the writer thread with each successful commit's duration in seconds (the
        # metrics' histogram). Must be quick and thread-safe; None: not measured.
        self.on_commit: Callable[[float], None] | None = None

    # --- opening ---------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: Path | str,
        *,
        clock: Clock | None = None,
        genesis_hash: str = GENESIS_HASH,
        predecessor: str | None = None,
    ) -> Journal:
        """Open (creating or migrating as needed) and check the chain's tail: O(1) in length.

        ``genesis_hash`` and ``predecessor`` apply only when the file is created: they link a
        new journal to one that was set aside.
        """
        path = Path(path)
        clock = clock or SystemClock()
        path.parent.mkdir(parents=True, exist_ok=True)
        version = inspect_file(path)  # raises, touching nothing, if not ours or too new
        lock = WriterLock.take(path)
        try:
            writer = connect_read_write(path)
            writer.execute("PRAGMA journal_mode = WAL")
            if version < SCHEMA_VERSION:
                old = migrate(writer)
                if old == 0:
                    _init_meta(writer, genesis_hash, predecessor, clock.now_ms())
                else:
                    log.info("journal %s migrated from schema %d to %d", path, old, SCHEMA_VERSION)
            reader = JournalReader(path, connect_read_write(path))
        except sqlite3.DatabaseError as e:
            lock.release()
            raise JournalCorruptError(f"{path}: cannot be opened as a journal: {e}") from e
        try:
            journal = cls(reader, writer, lock, clock)  # reads meta, tail and cursors
            journal._check_tail()
        except (JournalError, sqlite3.DatabaseError) as e:
            writer.close()
            reader.close()
            lock.release()
            if isinstance(e, JournalError):
                raise
            raise JournalCorruptError(f"{path}: unreadable as a journal: {e}") from e
        return journal

    @classmethod
    def open_or_set_aside(cls, path: Path | str, *, clock: Clock | None = None) -> Journal:
        """:meth:`open`; a damaged journal is set aside untouched and a new one links to it."""
        path = Path(path)
        clock = clock or SystemClock()
        try:
            return cls.open(path, clock=clock)
        except JournalCorruptError as e:
            aside, last_hash = set_aside(path, e, clock.now_ms())
            return cls.open(path, clock=clock, genesis_hash=last_hash, predecessor=aside)

    def _check_tail(self) -> None:
        """The last row must hash to itself and link to the one before: O(1), not a verify."""
        try:
            tail = self.reader.tail()
            if tail is None:
                return
            if row_hash(tail) != tail.hash:
                raise JournalCorruptError(
                    f"{self.path}: the last row (seq {tail.seq}) does not match its hash"
                )
            before = self.reader.position_at(tail.seq - 1) if tail.seq > 1 else None
            if tail.seq > 1 and (before is None or before[0] != tail.prev_hash):
                raise JournalCorruptError(
                    f"{self.path}: the last row (seq {tail.seq}) does not link to seq "
                    f"{tail.seq - 1}"
                )
        except sqlite3.DatabaseError as e:
            raise JournalCorruptError(f"{self.path}: tail unreadable: {e}") from e

    # --- running ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer thread; call from the running event loop."""
        self._loop = asyncio.get_running_loop()
        self._writer = CommitThread(
            self._writer_conn,
            tail_hash=self._tail_hash,
            book=self._book,
            clock=self._clock,
            retry=self.retry,
            loop=self._loop,
            on_committed=self._on_committed,
            on_failed=self._on_failed,
            on_lost=self._on_lost,
            on_commit_time=self._commit_timed,
            cursor_flush_s=self.CURSOR_FLUSH_S,
            stop_grace_s=self.STOP_GRACE_S,
        )
        self._writer.start()
        self._writer.wake()  # cursors registered before start() are written like any other

    async def aclose(self) -> None:
        """Commit everything queued, then stop the writer and close the connections."""
        if self._writer is not None:
            self._writer.stop()
            await asyncio.to_thread(self._writer.join)
            self._writer = None
        self._writer_conn.close()
        self.close()

    def close(self) -> None:
        """Close without committing what is queued (see :meth:`aclose`)."""
        self.reader.close()
        self._lock.release()

    def append_nowait(self, new: NewEvent) -> asyncio.Future[Event]:
        """Queue ``new``; it gets the next seq now. The future resolves once it is durable
        (``held=False``) or held in memory because the disk refused it (``held=True``)."""
        writer, loop = self._writer, self._loop
        if writer is None or loop is None:
            raise JournalError("Journal.start() first")
        seq = self._next_seq
        self._next_seq = seq + 1
        item = Item(new, seq, canonical_json(new.payload.to_dict()), loop.create_future())
        if writer.failing:
            # The disk is refusing writes: answer now so that feeding does not wait on it.
            item.recovered = True
            self._resolve_held([item])
        writer.put(item)
        return item.future

    async def append(self, new: NewEvent) -> Event:
        return await self.append_nowait(new)

    # --- cursors and dead letters ----------------------------------------------------------

    def register_cursor(self, sink: str, *, start_at: int) -> int:
        """The sink's cursor, creating it at ``start_at`` the first time the sink is seen."""
        seq, created = self._book.register(sink, start_at)
        if created and self._writer is not None:
            self._writer.wake()
        return seq

    def save_cursor(self, sink: str, seq: int) -> None:
        """Move ``sink``'s cursor; written with the next commit, or within ``CURSOR_FLUSH_S``
        (at least once delivery means a cursor a little behind after a crash only repeats
        work)."""
        self._book.save(sink, seq)
        if self._writer is not None:
            self._writer.wake()  # the writer waits up to CURSOR_FLUSH_S for an event to join

    def saved_cursor(self, sink: str) -> int | None:
        """The position ``sink`` last saved, perhaps not yet written (``reader.cursor`` is
        the one on disk)."""
        return self._book.saved(sink)

    def add_dead_letter(self, sink: str, seq: int, error: str) -> None:
        """Record that ``sink`` gave up on event ``seq``; written with the next commit, before
        or with the cursor that moves past it."""
        self._book.add_dead_letter(sink, seq, error)
        if self._writer is not None:
            self._writer.wake()

    # --- reading what this process appended ------------------------------------------------

    def read_visible(
        self, after_seq: int, limit: int = 500, *, upto: int | None = None
    ) -> list[Event]:
        """Durable events after ``after_seq``, then any held in memory, in seq order (pass
        ``upto=durable_seq`` for durable ones only)."""
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
            events = self.reader.read_after(after_seq, limit, upto=bound)
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
            await self._next_change()

    async def wait_durable(self, seq: int) -> None:
        """Return once every event up to ``seq`` is committed (held ones included, once the
        disk takes them again)."""
        while self.durable_seq < seq:
            await self._next_change()

    async def _next_change(self) -> None:
        """Wait for the next commit, failure or held event."""
        if self._loop is None:
            raise JournalError("Journal.start() first")
        waiter = self._loop.create_future()
        self._waiters.append(waiter)
        await waiter

    def _notify(self) -> None:
        # Plain futures rather than an asyncio.Event replaced at every commit: with no sink
        # waiting (a burst, or sinks busy sending) this is one list check per commit.
        waiters = self._waiters
        if waiters:
            self._waiters = []
            for waiter in waiters:
                if not waiter.done():  # a cancelled waiter (its sink stopped)
                    waiter.set_result(None)

    # --- on the loop, called by the writer thread ------------------------------------------

    def _resolve_held(self, items: Sequence[Item]) -> None:
        for item in items:
            if item.future.done():
                continue
            new = item.new
            event = Event(
                item.seq,
                new.event_id,
                new.occurred_at_ms,
                new.clock_synced,
                new.origin,
                new.payload,
                item.recovered,
                "",
                "",
                True,
            )
            self._held[item.seq] = event
            self.visible_seq = max(self.visible_seq, item.seq)
            item.future.set_result(event)
        self.health.held = len(self._held)
        self._notify()

    def _on_failed(self, items: list[Item], error: str) -> None:
        if not self.health.failing:
            log.critical(
                "JOURNAL WRITE FAILED (%s): feeding continues; %d event(s) held in memory "
                "until the journal accepts them",
                error,
                len(items),
            )
            self.health.since_ms = self._clock.now_ms()
        self.health.failing = True
        self.health.last_error = error
        self._resolve_held(items)

    def _commit_timed(self, seconds: float) -> None:
        hook = self.on_commit
        if hook is not None:
            hook(seconds)

    def _on_committed(self, written: list[Written]) -> None:
        held = self._held
        recovered = 0
        recent = self._recent
        for item, prev_hash, hash_ in written:
            if held and held.pop(item.seq, None) is not None:
                recovered += 1
            new = item.new
            # Positional: this runs once per event on the loop, and keywords cost more.
            event = Event(
                item.seq,
                new.event_id,
                new.occurred_at_ms,
                new.clock_synced,
                new.origin,
                new.payload,
                item.recovered,
                prev_hash,
                hash_,
            )
            future = item.future
            if not future.done():
                future.set_result(event)
            recent.append(event)
        # The writer commits in seq order, so the last one written is the highest.
        self.durable_seq = max(self.durable_seq, written[-1][0].seq)
        self.visible_seq = max(self.visible_seq, self.durable_seq)
        health = self.health
        health.commits += 1
        health.events_written += len(written)
        if recovered:
            health.held = len(held)
            health.recovered_total += recovered
        if health.failing:
            log.warning("journal writable again: %d held event(s) recorded as recovered", recovered)
            health.failing = False
            health.since_ms = None
        self._notify()

    def _on_lost(self, backlog: Sequence[Item], error: str) -> None:
        """In the writer thread, at stop: the disk never took these; say so loudly."""
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


def _init_meta(
    conn: sqlite3.Connection, genesis_hash: str, predecessor: str | None, now_ms: int
) -> None:
    rows = {
        "journal_id": new_event_id(),
        "created_at_ms": str(now_ms),
        "genesis_hash": genesis_hash,
    }
    if predecessor:
        rows["predecessor"] = predecessor
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", rows.items())
    conn.execute("COMMIT")
