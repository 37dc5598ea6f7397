"""Two small files beside the journal that outlive what can happen to its tail.

``<journal>.seq`` — the high-water mark: the journal's id and the highest seq this process has
answered anyone with. It is rewritten in place (``pwrite`` at offset 0) after every commit, so
it needs no free space, and lives outside the WAL, so deleting ``journal.db-wal`` cannot take
it along. At open, a journal whose last seq is below its mark has lost events a sink may have
sent: the journal is set aside and its successor numbers from above the mark (see
``docs/reliability.md``). The mark is fsynced when it is the only record of a seq (an event held
in memory); after a commit it is written but not fsynced — the WAL's fsync already made those
events durable, and the page cache keeps the mark across a crash of the process.

``<journal>.spill`` — a file pre-allocated (``posix_fallocate``) while the disk had room, where
the writer puts events the disk refuses: appending into blocks already allocated needs no free
space. A spilled event is durable (fdatasync) before its caller is answered, keeps its seq,
and is written into the journal at the next commit that succeeds — in this life or, after a
SIGTERM or a crash, at the next start. Each record is one line: a CRC-32 and the event as JSON.
"""

from __future__ import annotations

import contextlib
import json
import json.encoder
import logging
import os
import zlib
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from gateway.events import Bowl, Event, FeedRequested, NewEvent, Origin, payload_from_dict

log = logging.getLogger("gateway.journal")

MARK_BYTES: Final = 2048
# The last accepted feeds ride with the mark: if the rows that recorded them are lost with the
# tail, the policy still knows them after the set-aside (a press inside the gap is refused).
FEEDS_KEPT: Final = 24

Feed = tuple[int, int, str, Sequence[str]]  # seq, occurred_at_ms, request_id, bowls
SPILL_BYTES: Final = 256 * 1024  # ~700 held events at ~350 bytes each


def mark_path(journal: Path) -> Path:
    return Path(f"{journal}.seq")


def spill_path(journal: Path) -> Path:
    return Path(f"{journal}.spill")


def _open_preallocated(path: Path, size: int) -> int | None:
    """A descriptor on ``path``, allocated to ``size`` bytes; None if the disk cannot."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        log.warning("cannot open %s (%s): carrying on without it", path, e)
        return None
    try:
        if os.fstat(fd).st_size < size:
            os.posix_fallocate(fd, 0, size)
            os.fsync(fd)
    except OSError as e:
        log.warning("cannot allocate %s (%s): carrying on without it", path, e)
        os.close(fd)
        return None
    return fd


# --- the high-water mark -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Mark:
    journal_id: str
    seq: int
    feeds: tuple[Feed, ...] = ()

    def feed_events(self) -> list[Event]:
        """The remembered feeds as the policy folds them (FeedRequested at their times)."""
        return [
            Event(
                seq,
                request_id,
                at_ms,
                False,
                Origin.GATEWAY,
                FeedRequested(
                    request_id=request_id,
                    bowls=tuple(Bowl(b) for b in bowls),
                    portion_ms=0,
                    expires_at_ms=at_ms,
                    origin=Origin.GATEWAY,
                ),
            )
            for seq, at_ms, request_id, bowls in self.feeds
        ]


def read_mark(journal: Path) -> Mark | None:
    """The journal's high-water mark, or None when there is no readable one. A mark whose
    feeds are cut short (earlier versions cut an over-long mark at MARK_BYTES) still gives
    its id and seq, which are what detect a lost tail; its feeds are then forgotten."""
    try:
        raw = mark_path(journal).read_bytes()[:MARK_BYTES].rstrip(b"\0")
        journal_id, seq_text, *rest = raw.decode(errors="replace").split(" ", 2)
        seq = int(seq_text)
    except (OSError, ValueError):
        return None
    if not journal_id:
        return None
    try:
        feeds = tuple(
            (int(f[0]), int(f[1]), str(f[2]), [str(b) for b in f[3]])
            for f in (json.loads(rest[0]) if rest else [])
        )
    except (ValueError, IndexError, TypeError, KeyError):
        log.warning("%s: the remembered feeds are unreadable; keeping its seq", mark_path(journal))
        feeds = ()
    return Mark(journal_id, seq, feeds)


# A request id as a JSON string, as JSONEncoder(ensure_ascii=False).encode gives it without its
# Python frame (json.dumps of a list builds an encoder per call, several microseconds), so a
# feed is put together from its parts.
_quoted: Final = json.encoder.encode_basestring


_bowls_json: dict[tuple[str, ...], bytes] = {}  # a handful of combinations


def _feed_json(feed: Feed) -> bytes:
    seq, at_ms, request_id, bowls = feed
    key = tuple(bowls)
    listed = _bowls_json.get(key)
    if listed is None:
        listed = _bowls_json[key] = f"[{','.join(map(_quoted, key))}]".encode()
    return b"[%d,%d,%s,%s]" % (seq, at_ms, _quoted(request_id).encode(), listed)


class HighWater:
    """The writer's handle on ``<journal>.seq`` (see the module docstring)."""

    def __init__(self, journal: Path, journal_id: str) -> None:
        old = read_mark(journal)
        self._fd = _open_preallocated(mark_path(journal), MARK_BYTES)
        self._id = journal_id.encode()
        self.seq = 0
        # Each feed encoded once, as it is accepted (re-encoding them all at every commit cost
        # more than the rest of the journal's own work per append); only the newest that fit
        # are kept. The mark is never cut: a cut one loses its seq, the part that matters, and
        # request ids of up to 128 characters can make FEEDS_KEPT feeds too long for it.
        self._feeds: deque[bytes] = deque()
        self._size = 0  # of the feeds and a comma each
        # Room for the feeds once the id, a seq of any length and the newline are in.
        self._room = MARK_BYTES - len(self._id) - len(f" {2**64} []\n")
        self._feeds_json = b"[]"
        if old is not None and old.journal_id == journal_id:
            self._remember(old.feeds)

    def _remember(self, feeds: Iterable[Feed]) -> None:
        for feed in feeds:
            encoded = _feed_json(feed)
            self._feeds.append(encoded)
            self._size += len(encoded) + 1
            while len(self._feeds) > FEEDS_KEPT or self._size > self._room:
                self._size -= len(self._feeds.popleft()) + 1
        self._feeds_json = b"[" + b",".join(self._feeds) + b"]"

    def note(self, seq: int, *, sync: bool = False, feeds: list[Feed] | None = None) -> None:
        """Raise the mark to ``seq`` (with the feeds just accepted); ``sync`` when nothing
        else makes ``seq`` durable."""
        if seq <= self.seq and not sync:
            return
        self.seq = max(seq, self.seq)
        if feeds:
            self._remember(feeds)
        if self._fd is None:
            return
        text = b"%s %d %s\n" % (self._id, self.seq, self._feeds_json)
        try:
            os.pwrite(self._fd, text.ljust(MARK_BYTES, b"\0"), 0)
            if sync:
                os.fdatasync(self._fd)
        except OSError as e:  # the mark is a safety net: losing it must not stop the writer
            log.warning("cannot write the high-water mark (%s)", e)

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None


# --- the spill -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Spilled:
    """One event as spilled: enough to write its row exactly as the writer would have."""

    journal_id: str
    seq: int
    event_id: str
    type: str
    occurred_at_ms: int
    clock_synced: bool
    origin: str
    payload: str  # the stored JSON text

    def line(self) -> bytes:
        body = json.dumps(
            [
                self.journal_id,
                self.seq,
                self.event_id,
                self.type,
                self.occurred_at_ms,
                self.clock_synced,
                self.origin,
                self.payload,
            ],
            separators=(",", ":"),
        ).encode()
        return b"%08x %s\n" % (zlib.crc32(body), body)

    def new_event(self) -> NewEvent:
        return NewEvent(
            self.event_id,
            self.occurred_at_ms,
            self.clock_synced,
            Origin(self.origin),
            payload_from_dict(self.type, json.loads(self.payload)),
        )

    def event(self) -> Event:
        """As the feeder sink and the policy see it while it is not yet in the journal."""
        new = self.new_event()
        return Event(
            self.seq,
            new.event_id,
            new.occurred_at_ms,
            new.clock_synced,
            new.origin,
            new.payload,
            recovered=True,
            held=True,
        )

    @classmethod
    def parse(cls, line: bytes) -> Spilled | None:
        crc, _, body = line.partition(b" ")
        try:
            if int(crc, 16) != zlib.crc32(body):
                return None
            j, seq, eid, type_, at_ms, synced, origin, payload = json.loads(body)
            record = cls(j, int(seq), eid, type_, int(at_ms), bool(synced), origin, payload)
            record.new_event()  # a record this code cannot turn back into an event is not one
        except (ValueError, TypeError, KeyError):
            return None
        return record


def read_spill(journal: Path) -> list[Spilled]:
    """Every whole record in the spill, in the order written (a torn last one is dropped:
    its caller was never answered)."""
    try:
        data = spill_path(journal).read_bytes()
    except OSError:
        return []
    out: list[Spilled] = []
    for line in data.split(b"\n"):
        if not line or line[0] == 0:
            break
        record = Spilled.parse(line)
        if record is None:
            break
        out.append(record)
    return out


class Spill:
    """The writer's handle on ``<journal>.spill``."""

    def __init__(self, journal: Path) -> None:
        self.path = spill_path(journal)
        self._fd = _open_preallocated(self.path, SPILL_BYTES)
        self._end = 0
        if self._fd is not None:
            self._end = sum(len(r.line()) for r in read_spill(journal))
        self.count = 0

    @property
    def usable(self) -> bool:
        return self._fd is not None

    def add(self, records: list[Spilled]) -> bool:
        """Append and fdatasync ``records``; False if they do not fit (nothing is written)."""
        if self._fd is None or not records:
            return self._fd is not None
        data = b"".join(r.line() for r in records)
        if self._end + len(data) > SPILL_BYTES:
            return False
        try:
            os.pwrite(self._fd, data, self._end)
            os.fdatasync(self._fd)
        except OSError as e:
            log.critical("cannot write the spill file %s (%s)", self.path, e)
            return False
        self._end += len(data)
        self.count += len(records)
        return True

    def clear(self) -> None:
        """Everything spilled is in the journal now: zero the records (the blocks stay)."""
        if self._fd is None or self._end == 0:
            return
        try:
            os.pwrite(self._fd, b"\0" * self._end, 0)
            os.fdatasync(self._fd)
        except OSError as e:  # left as is, the records are recognised as written at next open
            log.warning("cannot clear the spill file %s (%s)", self.path, e)
            return
        self._end = 0
        self.count = 0

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
