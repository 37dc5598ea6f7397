"""The writer thread: group commit, retries while the disk refuses, and the one write connection.

The event loop queues :class:`Item`\\ s (each already numbered); this thread takes everything
queued, writes it in ONE transaction with the cursors and dead letters waiting in the
:class:`~gateway.journal.cursors.CursorBook`, and reports back on the loop (``committed`` or
``failed``). The fsync of ``synchronous=FULL`` happens here, never on the event loop.

Invariants, and why:

- Items are committed in queue order, and the loop numbered them in that order, so seq order
  is commit order with no gaps (the schema's trigger refuses a gap from anyone else).
- When a commit fails, the batch stays at the head of the backlog, marked ``recovered`` (the
  loop answers its callers at once as *held*), and is retried after a back-off with whatever
  was queued meanwhile behind it.
- A COMMIT that reported an error may still have reached the disk (seen with SQLite in WAL):
  after a failed commit the retry first asks which leading items are already stored and takes
  them as written, rather than writing them twice (which the gapless trigger would refuse
  forever).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from gateway.backoff import Backoff
from gateway.clock import Clock
from gateway.events import Event, EventType, FeedRequested, NewEvent, Origin
from gateway.journal.chain import stored_hash
from gateway.journal.cursors import CursorBook, DeadLetter, write_cursors, write_dead_letters
from gateway.journal.rows import COLUMNS
from gateway.journal.sidecar import FEEDS_KEPT, Feed, HighWater, Spill, Spilled

log = logging.getLogger("gateway.journal")

_INSERT: Final = f"INSERT INTO events ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)"  # noqa: S608


@dataclass(slots=True, eq=False)
class Item:
    """One queued append.

    ``recovered`` is set by the loop before the item is queued (the disk was already failing)
    or by this thread after a failed commit; each side touches it only while it owns the item,
    so it needs no lock.
    """

    new: NewEvent
    seq: int
    payload_json: str
    future: asyncio.Future[Event]
    recovered: bool = False
    spilled: bool = False  # in the spill file (writer thread only)
    answered: bool = False  # its caller was answered held (writer thread only)


Written = tuple[Item, str, str]  # (item, prev_hash, hash) as committed

# The stored text of each type and origin. An enum's .value goes through a Python-level
# descriptor (about 0.3 us, twice per row); a dict lookup does not.
_TEXT: Final[dict[str, str]] = {m: m.value for m in (*EventType, *Origin)}


class Sidecars:
    """The high-water mark and the spill (``sidecar``), opened by the writer's owner."""

    def __init__(self, path: Path, journal_id: str) -> None:
        self.journal_id = journal_id
        self.mark = HighWater(path, journal_id)
        self.spill = Spill(path)

    def close(self) -> None:
        self.mark.close()
        self.spill.close()


def _feeds(written: list[Written]) -> list[Feed] | None:
    """The last accepted feeds among ``written``, oldest first, for the high-water mark (the
    mark keeps only FEEDS_KEPT: a burst is read from its end and no further)."""
    out: list[Feed] | None = None
    for item, _, _ in reversed(written):
        payload = item.new.payload
        if payload.__class__ is FeedRequested:
            assert isinstance(payload, FeedRequested)
            out = out or []
            # Bowl is a StrEnum: its members are the strings the mark writes.
            out.append((item.seq, item.new.occurred_at_ms, payload.request_id, payload.bowls))
            if len(out) >= FEEDS_KEPT:
                break
    return None if out is None else out[::-1]


_STOP: Final = object()
_WAKE: Final = object()


class CommitThread:
    """The thread that owns the write connection. Built by the Journal; one per open journal."""

    def __init__(
        self,
        conn: sqlite3.Connection | None,
        *,
        opener: Callable[[], sqlite3.Connection] | None,
        on_opened: Callable[[sqlite3.Connection], None],
        sidecars: Sidecars,
        tail_hash: str,
        book: CursorBook,
        clock: Clock,
        retry: Backoff,
        loop: asyncio.AbstractEventLoop,
        on_committed: Callable[[list[Written]], None],
        on_failed: Callable[[list[Item], str, int], None],
        on_lost: Callable[[Sequence[Item], str], None],
        on_commit_time: Callable[[float], None],
        cursor_flush_s: float,
        stop_grace_s: float,
    ) -> None:
        self._conn = conn
        self._opener = opener
        self._on_opened = on_opened
        self._sidecars = sidecars
        self._spill_full_said = False
        self._last_error = "the disk is refusing writes"  # the last commit's error, for status
        self._tail_hash = tail_hash
        self._book = book
        self._clock = clock
        self._retry = retry
        self._loop = loop
        self._on_committed = on_committed
        self._on_failed = on_failed
        self._on_lost = on_lost
        self._on_commit_time = on_commit_time
        self._cursor_flush_ms = int(cursor_flush_s * 1000)
        self._stop_grace_ms = int(stop_grace_s * 1000)
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        # Read by the loop without a lock (one bool, atomic): a stale False only means the
        # caller waits for this thread's next answer; a stale True only marks an event
        # recovered that was in fact answered before it was durable, which is the truth.
        self.failing = False
        self._commit_failed = False  # this thread only: the last COMMIT raised
        self._thread = threading.Thread(target=self._main, name="journal-writer", daemon=True)

    # --- the loop's side -------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def put(self, item: Item) -> None:
        self._queue.put(item)

    def wake(self) -> None:
        """A cursor or dead letter is waiting: commit it, with company if some comes soon."""
        self._queue.put(_WAKE)

    def stop(self) -> None:
        """Commit everything queued (retrying up to the stop grace), then end; see join."""
        self._queue.put(_STOP)

    def join(self) -> None:
        self._thread.join()

    # --- the thread ------------------------------------------------------------------------

    def _main(self) -> None:
        try:
            self._run()
        finally:
            self._sidecars.close()

    def _run(self) -> None:
        q = self._queue
        backlog: list[Item] = []  # in seq order: a failed batch first, then newer items
        stopping_ms: int | None = None
        # While the disk refuses: when to try again. New items meanwhile are spilled and
        # answered without a commit attempt, so a press never waits on a failing disk.
        retry_at: int | None = None if not self.failing else self._clock.monotonic_ms()
        while True:
            wait = None if retry_at is None else retry_at - self._clock.monotonic_ms()
            try:
                got: object = q.get() if wait is None else q.get(timeout=max(0, wait) / 1000)
            except queue.Empty:
                got = None
            stopping_ms = self._absorb(got, backlog, stopping_ms)
            if not backlog and stopping_ms is None and retry_at is None:
                stopping_ms = self._wait_for_company(backlog)
            # One consumer: an item seen by empty() is still there for get_nowait() (cheaper
            # than letting get_nowait() raise Empty once per commit).
            while not q.empty():
                stopping_ms = self._absorb(q.get_nowait(), backlog, stopping_ms)
            if retry_at is not None and self._clock.monotonic_ms() < retry_at:
                self._hold(backlog, None)
                continue
            cursors, letters = self._book.snapshot()
            if backlog or cursors or letters:
                try:
                    self._ensure_open()
                    began = time.perf_counter()
                    written = self._commit(backlog, cursors, letters)
                    self._on_commit_time(time.perf_counter() - began)
                except sqlite3.Error as e:
                    self.failing = True
                    self._hold(backlog, str(e))
                    retry_at = self._clock.monotonic_ms() + int(self._retry.next_delay() * 1000)
                    if (
                        stopping_ms is not None
                        and self._clock.monotonic_ms() - stopping_ms > self._stop_grace_ms
                    ):
                        self._on_lost(backlog, str(e))
                        return
                    continue
                if retry_at is not None:
                    self.failing = False
                    self._retry.reset()
                    retry_at = None
                self._book.written(cursors, letters)
                backlog = []
                if written:
                    self._sidecars.mark.note(written[-1][0].seq, feeds=_feeds(written))
                    self._sidecars.spill.clear()
                    self._loop.call_soon_threadsafe(self._on_committed, written)
            if stopping_ms is not None and not backlog:
                return

    def _ensure_open(self) -> None:
        """A journal opened degraded gets its write connection once the disk allows it: the
        same file, continued (raises sqlite3.Error while it still refuses)."""
        if self._conn is None and self._opener is not None:
            conn = self._opener()
            # Readers switch off the immutable connection before the first commit changes the
            # file under it (an immutable reader may cache what it read).
            switched = threading.Event()

            def switch() -> None:
                try:
                    self._on_opened(conn)
                finally:
                    switched.set()

            self._loop.call_soon_threadsafe(switch)
            switched.wait(timeout=5)
            self._conn = conn
        if self._conn is None:
            raise sqlite3.OperationalError("the journal is not open for writing")

    def _hold(self, backlog: list[Item], error: str | None) -> None:
        """The disk refused ``backlog``: spill what is not yet spilled (durably, before anyone
        is told), then answer each caller not yet answered with its event held."""
        fresh = [item for item in backlog if not item.answered]
        if not fresh and error is None:
            return
        unspilled = [item for item in fresh if not item.spilled]
        if unspilled:
            spill = self._sidecars.spill
            if spill.add([self._spilled(item) for item in unspilled]):
                for item in unspilled:
                    item.spilled = True
            else:
                # No room: these live in memory only. The mark, fsynced, keeps their seqs from
                # ever being reused if they are lost.
                self._sidecars.mark.note(unspilled[-1].seq, sync=True)
                if not self._spill_full_said:
                    self._spill_full_said = True
                    log.critical(
                        "journal spill %s is full or unusable: events from seq %d are held in "
                        "memory only",
                        spill.path,
                        unspilled[0].seq,
                    )
        for item in fresh:
            item.recovered = True
            item.answered = True
        self._last_error = error or self._last_error
        reason = self._last_error
        self._loop.call_soon_threadsafe(self._on_failed, fresh, reason, self._sidecars.spill.count)

    def _spilled(self, item: Item) -> Spilled:
        new = item.new
        return Spilled(
            self._sidecars.journal_id,
            item.seq,
            new.event_id,
            _TEXT[new.payload.TYPE],
            new.occurred_at_ms,
            new.clock_synced,
            _TEXT[new.origin],
            item.payload_json,
        )

    def _absorb(self, got: object, backlog: list[Item], stopping_ms: int | None) -> int | None:
        if got.__class__ is Item:
            backlog.append(got)
        elif got is _STOP and stopping_ms is None:
            return self._clock.monotonic_ms()
        return stopping_ms

    def _wait_for_company(self, backlog: list[Item]) -> int | None:
        """Woken for a cursor (or a dead letter) alone: give an event up to the cursor flush
        time to come and share the commit, so a delivery does not cost an fsync of its own."""
        deadline = self._clock.monotonic_ms() + self._cursor_flush_ms
        stopping_ms: int | None = None
        while not backlog and stopping_ms is None:
            remaining = deadline - self._clock.monotonic_ms()
            if remaining <= 0:
                break
            try:
                got = self._queue.get(timeout=remaining / 1000)
            except queue.Empty:
                break
            stopping_ms = self._absorb(got, backlog, stopping_ms)
        return stopping_ms

    def _commit(
        self, items: list[Item], cursors: dict[str, int], letters: list[DeadLetter]
    ) -> list[Written]:
        """One transaction: the events in order, then cursors and dead letters.
        Raises sqlite3.Error (rolled back)."""
        conn = self._conn
        assert conn is not None
        # The common case, one event and nothing else: its INSERT alone, in autocommit, is the
        # whole transaction (taking the write lock as BEGIN IMMEDIATE does, fsynced at its end
        # as any commit is). BEGIN and COMMIT as statements of their own cost two more trips
        # into SQLite, each releasing and retaking the GIL the event loop is waiting for.
        lone = len(items) == 1 and not cursors and not letters and not self._commit_failed
        try:
            if not lone:
                conn.execute("BEGIN IMMEDIATE")
            # Only a commit that reported failure can have reached the disk regardless.
            written = self._already_committed(items) if self._commit_failed else []
            prev = written[-1][2] if written else self._tail_hash
            rows = []
            for item in items[len(written) :] if written else items:
                new = item.new
                seq, event_id, payload = item.seq, new.event_id, item.payload_json
                type_, at_ms, origin = (
                    _TEXT[new.payload.TYPE],
                    new.occurred_at_ms,
                    _TEXT[new.origin],
                )
                synced, recovered = 1 if new.clock_synced else 0, 1 if item.recovered else 0
                h = stored_hash(
                    prev, seq, event_id, type_, at_ms, synced, origin, recovered, payload
                )
                rows.append(
                    (seq, event_id, type_, at_ms, synced, origin, recovered, payload, prev, h)
                )
                written.append((item, prev, h))
                prev = h
            if len(rows) == 1:
                conn.execute(_INSERT, rows[0])
            elif rows:
                conn.executemany(_INSERT, rows)
            if cursors:
                write_cursors(conn, cursors, self._clock.now_ms())
            if letters:
                write_dead_letters(conn, letters)
            if not lone:
                conn.execute("COMMIT")
        except sqlite3.Error:
            self._commit_failed = True
            if conn.in_transaction:  # a failed autocommit INSERT has already rolled back
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise
        self._tail_hash = prev
        self._commit_failed = False
        return written

    def _already_committed(self, items: Sequence[Item]) -> list[Written]:
        """The leading ``items`` that an earlier attempt did commit after all, with the hashes
        the disk holds (see the module docstring)."""
        if not items:
            return []
        conn = self._conn
        assert conn is not None
        (last,) = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()
        if last < items[0].seq:
            return []
        stored = conn.execute(
            "SELECT seq, event_id, prev_hash, hash FROM events WHERE seq >= ? AND seq <= ? "
            "ORDER BY seq",
            (items[0].seq, min(last, items[-1].seq)),
        ).fetchall()
        done: list[Written] = []
        for item, (seq, event_id, prev_hash, hash_) in zip(items, stored, strict=False):
            if seq != item.seq or event_id != item.new.event_id:
                raise sqlite3.IntegrityError(
                    f"journal seq {seq} holds another event than this writer queued: "
                    "is a second process appending?"
                )
            done.append((item, prev_hash, hash_))
        return done
