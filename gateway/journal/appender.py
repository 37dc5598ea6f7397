"""The daemon's journal: the one appender, on the event loop's side.

:class:`Journal` numbers each append on the loop, in call order, and hands it to the
:class:`~gateway.journal.writer.CommitThread`; the caller's future resolves only when its own
event is committed and fsynced (``held=False``), or at once with ``held=True`` (spilled) when
the disk refuses writes: feeding never waits on the disk. Held events are readable and are
written with ``recovered=1`` once the disk takes them. Unlike a JournalReader (on purpose, so
it is not one), :meth:`Journal.read_visible` includes held events and serves recent ones from
memory, and :meth:`Journal.saved_cursor` may not be written yet; :attr:`Journal.reader` reads
the disk.
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
from gateway.journal.chain import GENESIS_HASH
from gateway.journal.cursors import CursorBook
from gateway.journal.files import (
    WriterLock,
    connect_read_write,
    disk_trouble,
    inspect_file,
    set_aside,
)
from gateway.journal.ids import new_event_id
from gateway.journal.opening import (
    Window,
    check_file,
    degraded_reader,
    salvage,
    spilled_after,
    writer_opener,
)
from gateway.journal.reader import JournalReader
from gateway.journal.sidecar import Spilled
from gateway.journal.writer import CommitThread, Item, Sidecars, Written
from gateway.stored_event import StoredEvent

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
    spilled: int = 0
    since_ms: int | None = field(default=None)
    # Something a person must hear about even while all is well again (a set-aside journal).
    alert: str | None = None


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
        self,
        reader: JournalReader,
        writer: sqlite3.Connection | None,
        lock: WriterLock,
        clock: Clock,
        window: Window | None = None,
    ) -> None:
        self.reader = reader
        self.path = reader.path
        self._writer_conn = writer
        self._opener: Callable[[], sqlite3.Connection] | None = None
        self._lock = lock
        self._clock = clock
        meta = reader.meta()
        self._window = window or Window()
        tail = self._window.tail
        self._tail_hash = tail.hash if tail else meta.get("genesis_hash", GENESIS_HASH)
        self._base_seq = int(meta.get("base_seq", "0") or 0)
        self.durable_seq = tail.seq if tail else self._base_seq
        self._next_seq = self.durable_seq + 1
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
        self._replay: list[Spilled] = []
        # Events of a set-aside predecessor, folded before this journal's own (startup_events)
        self.carried: list[Event] = []
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
        base_seq: int = 0,
        window_ms: int = 0,
        adopt: str | None = None,
    ) -> Journal:
        """Open (creating or migrating as needed), checking what start-up reads: the last
        ``window_ms`` of events and the tail (O(window), not a verify). A disk that refuses
        writes opens it degraded (held, spilled, retrying); only a file that fails a check
        raises JournalCorruptError (JournalTailLostError: it ends below its high-water mark).
        ``genesis_hash``, ``predecessor``, ``base_seq`` apply only to a new file; ``adopt``
        names a set-aside journal whose spilled events this one takes."""
        path = Path(path)
        clock = clock or SystemClock()
        path.parent.mkdir(parents=True, exist_ok=True)
        now = clock.now_ms()
        version = inspect_file(path)  # raises, touching nothing, if not ours or too new
        lock = WriterLock.take(path)
        meta = {
            "journal_id": new_event_id(),
            "created_at_ms": str(now),
            "genesis_hash": genesis_hash,
        }
        meta |= {"predecessor": predecessor or "", "base_seq": str(base_seq) if base_seq else ""}
        open_writer = writer_opener(path, version, meta := {k: v for k, v in meta.items() if v})
        writer: sqlite3.Connection | None = None
        trouble: str | None = None
        try:
            window, degraded = check_file(path, version, now - window_ms)
            try:
                if degraded:
                    raise sqlite3.OperationalError("disk full or failing at start-up")
                writer = open_writer()
                reader_conn = connect_read_write(path)
            except sqlite3.Error as e:
                if not disk_trouble(e) and not degraded:
                    raise JournalCorruptError(f"{path}: cannot be opened as a journal: {e}") from e
                trouble = f"cannot open for writing: {e}"
                reader_conn = degraded_reader(path, version, meta)
            reader = JournalReader(path, reader_conn)
            try:
                journal = cls(reader, writer, lock, clock, window)
                journal._take_spill(adopt)
            except (JournalError, sqlite3.Error) as e:
                reader.close()
                if isinstance(e, JournalError):
                    raise
                raise JournalCorruptError(f"{path}: unreadable as a journal: {e}") from e
        except BaseException:
            if writer is not None:
                writer.close()
            lock.release()
            raise
        if trouble is not None:
            journal._opener = open_writer
            journal.health.failing = True
            journal.health.last_error = trouble
            journal.health.since_ms = now
            log.critical("JOURNAL %s %s: starting degraded, holding events", path, trouble)
        return journal

    def _take_spill(self, adopt: str | None) -> None:
        owners = {self.journal_id, adopt or ""} - {""}
        self._replay = spilled_after(self.path, owners, self.durable_seq)
        self._next_seq = self.durable_seq + len(self._replay) + 1

    @classmethod
    def open_or_set_aside(
        cls, path: Path | str, *, clock: Clock | None = None, window_ms: int = 0
    ) -> Journal:
        """:meth:`open`; a damaged journal is set aside untouched and a new one links to the
        last hash that verifies, numbers on from the highest seq it ever showed, and carries its
        recent events for the policy."""
        path = Path(path)
        clock = clock or SystemClock()
        try:
            return cls.open(path, clock=clock, window_ms=window_ms)
        except JournalCorruptError as e:
            now = clock.now_ms()
            aside = set_aside(path, e, now)
            left = salvage(path.with_name(aside), now - window_ms)
            highest = max(left.highest_seq, getattr(e, "highest_seq", 0))
            log.critical(
                "journal %s set aside as %s: the new one links to seq %d, the last that "
                "verifies, and numbers on from seq %d",
                *(path, aside, left.last_good_seq, highest + 1),
            )
            journal = cls.open(
                path,
                clock=clock,
                genesis_hash=left.last_good_hash,
                predecessor=aside,
                base_seq=highest,
                window_ms=window_ms,
                adopt=left.journal_id,
            )
            journal.carried = left.carried()
            journal.health.alert = f"journal set aside as {aside}: {e}"
            return journal

    def startup_events(self) -> tuple[list[Event], list[Event]]:
        """(The feeder's last reports, the checked window in seq order: a set-aside
        predecessor's, this journal's, those spilled by an earlier life) for the daemon's fold."""
        replayed = [r.event() for r in self._replay]
        return list(self._window.reports), [*self.carried, *self._window.events, *replayed]

    # --- running ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer thread; call from the running event loop."""
        self._loop = asyncio.get_running_loop()
        self._writer = CommitThread(
            self._writer_conn,
            opener=self._opener,
            on_opened=self._on_opened,
            sidecars=Sidecars(self.path, self.journal_id),
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
        self._writer.failing = self._writer_conn is None
        replay = [self._replay_item(r) for r in self._replay]
        if replay:  # in memory and readable at once; written at the writer's first commit
            self._resolve_held(replay)
        self._writer.start()
        for item in replay:
            self._writer.put(item)
        self._writer.wake()  # cursors registered before start() are written like any other

    def _replay_item(self, record: Spilled) -> Item:
        future = asyncio.get_running_loop().create_future()
        item = Item(record.new_event(), record.seq, record.payload, future)
        item.recovered = item.spilled = True
        return item

    def _on_opened(self, conn: sqlite3.Connection) -> None:
        """On the loop: the disk took the journal back; read through a normal connection."""
        self._writer_conn = conn
        self.reader.reconnect(connect_read_write(self.path))
        log.warning("journal %s can be written again: continuing the same file", self.path)

    async def aclose(self) -> None:
        """Commit everything queued, then stop the writer and close the connections."""
        if self._writer is not None:
            self._writer.stop()
            await asyncio.to_thread(self._writer.join)
            self._writer = None
        if self._writer_conn is not None:
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
        # While the disk refuses writes the writer spills the item and answers it held at once,
        # without a commit attempt: feeding does not wait on the disk, and nothing answered is
        # only in memory (docs/reliability.md, fault 2).
        writer.put(item)
        return item.future

    async def append(self, new: NewEvent) -> Event:
        return await self.append_nowait(new)

    # --- cursors and dead letters ----------------------------------------------------------

    def register_cursor(self, sink: str, *, start_at: int) -> int:
        """The sink's cursor, created at ``start_at`` (or the journal's base) when first seen."""
        seq, created = self._book.register(sink, max(start_at, self._base_seq))
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

    def read_stored(self, after: int, limit: int, *, upto: int | None = None) -> list[StoredEvent]:
        """Durable events after ``after`` (and up to ``upto``) as stored, in seq order."""
        bound = self.durable_seq if upto is None else min(upto, self.durable_seq)
        return self.reader.read_stored_after(after, limit, upto=bound) if after < bound else []

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
            event = _event_of(item, "", "", held=True)
            self._held[item.seq] = event
            self.visible_seq = max(self.visible_seq, item.seq)
            item.future.set_result(event)
        self.health.held = len(self._held)
        self._notify()

    def _on_failed(self, items: list[Item], error: str, spilled: int) -> None:
        if not self.health.failing:
            log.critical(
                "JOURNAL WRITE FAILED (%s): feeding continues; %d event(s) held (and spilled "
                "to %s) until the journal accepts them",
                error,
                len(items),
                f"{self.path}.spill",
            )
            self.health.since_ms = self._clock.now_ms()
        self.health.failing = True
        self.health.last_error = error
        self.health.spilled = spilled
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
            event = _event_of(item, prev_hash, hash_)
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
        """In the writer thread, at stop: the disk never took these; say so loudly. Spilled
        ones go in at the next start; the rest (the spill was full) are lost, and the
        high-water mark keeps their seqs from ever being used again."""
        lost = [item.seq for item in backlog if not item.spilled]
        self.health.lost_at_stop = len(lost)
        log.critical(
            "JOURNAL: stopping with seq %d..%d refused by the disk (%s): %d in the spill file "
            "go in at the next start; %d lost from the ledger (their seqs are never reused)",
            backlog[0].seq,
            backlog[-1].seq,
            error,
            len(backlog) - len(lost),
            len(lost),
        )

    # --- for tests and maintenance ---------------------------------------------------------

    def writer_pragma(self, sql: str) -> None:
        """Run a PRAGMA on the writer connection (tests simulate a full disk with
        ``max_page_count``). Only safe while no commit is in progress, e.g. between awaits."""
        if not sql.lstrip().upper().startswith("PRAGMA"):
            raise JournalError("writer_pragma takes a PRAGMA only")
        if self._writer_conn is not None:
            self._writer_conn.execute(sql)


def _event_of(item: Item, prev_hash: str, hash_: str, *, held: bool = False) -> Event:
    """The event an appended item became (``held``: in memory, without its chain hash yet)."""
    new = item.new
    # Positional: this runs once per event on the loop, and keywords cost more.
    return Event(
        item.seq, new.event_id, new.occurred_at_ms, new.clock_synced, new.origin, new.payload,
        item.recovered, prev_hash, hash_, held, item.payload_json,
    )  # fmt: skip
