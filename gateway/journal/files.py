"""The journal's file: whether it is ours, the one-appender lock, connections, setting aside.

Nothing here reads or writes events: this module answers "may this process open this file,
and how", so that every way in (the daemon's writer, a CLI reader, a replay's cursor) opens
it with the same checks and the same pragmas.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import time
from pathlib import Path

from gateway.errors import JournalCorruptError, JournalError, JournalVersionError, NotAJournalError
from gateway.journal.chain import GENESIS_HASH
from gateway.journal.schema import APPLICATION_ID, SCHEMA_VERSION

log = logging.getLogger("gateway.journal")

BUSY_TIMEOUT_MS = 5000


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


def connect_read_only(path: Path) -> sqlite3.Connection:
    """A connection that can never change the file (WAL readers never block the writer)."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return conn


def connect_read_write(path: Path, *, synchronous: str = "FULL") -> sqlite3.Connection:
    """A connection in autocommit mode: every transaction here is an explicit BEGIN IMMEDIATE.

    ``synchronous``: FULL fsyncs the WAL at every commit, which is what "durable" means for
    the daemon's appends. NORMAL (a replay's own cursor) survives a killed process, not a
    power cut: only for rows whose loss means repeating work, never for events.
    """
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    return conn


class WriterLock:
    """The one-appender lock (``<journal>.lock``), held for as long as the writer is open.

    Two appenders would each believe they own the chain's tail; the schema's gapless trigger
    would stop the second one's commits, but only after it had answered feeds. Refusing to
    open is the clear failure.
    """

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    @classmethod
    def take(cls, path: Path) -> WriterLock:
        """Take it, or raise JournalError naming the pid that holds it."""
        fd = os.open(Path(f"{path}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
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
        return cls(fd)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None


def last_hash_of_damaged(path: Path) -> str:
    """The newest hash a damaged journal still shows, or the genesis hash if none can be read.

    Read-only and forgiving: the file failed its checks, so any error here just means the
    next journal cannot link to it and starts from genesis.
    """
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return GENESIS_HASH
    return str(row[0]) if row else GENESIS_HASH


def set_aside(path: Path, reason: Exception, now_ms: int) -> tuple[str, str]:
    """Rename a damaged journal (with its WAL and shared memory) out of the way, untouched.

    Returns (the new file name, its last known hash) so that the journal started in its place
    can name its predecessor and link its chain to it.
    """
    last_hash = last_hash_of_damaged(path)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now_ms / 1000))
    aside = path.with_name(f"{path.name}.damaged-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        part = Path(f"{path}{suffix}")
        if part.exists():
            part.rename(Path(f"{aside}{suffix}"))
    log.critical(
        "journal %s could not be opened (%s): set aside as %s, untouched; a new journal "
        "starts from its last known hash %s",
        path,
        reason,
        aside.name,
        last_hash[:12],
    )
    return aside.name, last_hash
