"""The journal's file: whether it is ours, the one-appender lock, connections, setting aside.

Nothing here reads or writes events: this module answers "may this process open this file,
and how", so that every way in (the daemon's writer, a CLI reader, a replay's cursor) opens
it with the same checks and the same pragmas.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import sqlite3
import time
from pathlib import Path

from gateway.errors import JournalCorruptError, JournalError, JournalVersionError, NotAJournalError
from gateway.journal.schema import APPLICATION_ID, SCHEMA_VERSION

log = logging.getLogger("gateway.journal")

BUSY_TIMEOUT_MS = 5000

# The SQLite error families that say the disk refused, not that the file is bad.
_DISK_TROUBLE = ("SQLITE_FULL", "SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_READONLY")


def disk_trouble(error: BaseException) -> bool:
    """Whether ``error`` is the disk's trouble (full, I/O, cannot create ``-shm``), not the
    file's: such a journal is opened degraded, never set aside."""
    name = getattr(error, "sqlite_errorname", None) or ""
    return name.startswith(_DISK_TROUBLE)


def connect_immutable(path: Path) -> sqlite3.Connection:
    """Read a journal the disk will not let us open normally: no lock, no ``-shm``, no write.

    ``immutable`` is true only while no process can write the file (this one holds the
    writer lock and has not opened it for writing).
    """
    uri = f"{path.resolve().as_uri()}?mode=ro&immutable=1"
    return sqlite3.connect(uri, uri=True, check_same_thread=False)


def inspect_file(path: Path) -> int:
    """Check, without changing a byte, that ``path`` is a journal this code can open.

    Returns its schema version (0 for an empty or missing file). Raises NotAJournalError for a
    database of another application, JournalCorruptError for a file SQLite cannot read, and
    JournalVersionError for a journal newer than this code.
    """
    if not path.exists() or path.stat().st_size == 0:
        return 0
    try:
        app_id, version, tables = _header(
            sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        )
    except sqlite3.Error as e:
        if not disk_trouble(e):
            raise JournalCorruptError(f"{path}: not readable as a journal: {e}") from e
        try:  # a full disk cannot create the -shm a WAL reader needs: read it as it stands
            app_id, version, tables = _header(connect_immutable(path))
        except sqlite3.Error as e2:
            raise JournalCorruptError(f"{path}: not readable as a journal: {e2}") from e2
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


def _header(conn: sqlite3.Connection) -> tuple[int, int, int]:
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    finally:
        conn.close()
    return int(app_id), int(version), int(tables)


def connect_read_only(path: Path) -> sqlite3.Connection:
    """A connection that can never change the file (WAL readers never block the writer)."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return conn


def connect_read_write(path: Path, *, synchronous: str = "FULL") -> sqlite3.Connection:
    """A connection in autocommit mode: every transaction here is an explicit BEGIN IMMEDIATE,
    or a single statement that is its own transaction (the writer's lone event).

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
        try:  # the pid only names the holder: a full disk must not stop the start-up here
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        except OSError as e:
            log.warning("cannot write the pid into %s.lock (%s)", path, e)
        return cls(fd)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None


def set_aside(path: Path, reason: Exception, now_ms: int) -> str:
    """Rename a damaged journal (with its WAL and shared memory) out of the way, untouched.

    Returns the new file name, so that the journal started in its place can name its
    predecessor. Nothing opens the file before it is renamed: reading it (to salvage what it
    still shows) happens afterwards, read-only.
    """
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now_ms / 1000))
    aside = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while aside.exists():  # two set-asides in one second (a restart loop) keep both
        n += 1
        aside = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
    for suffix in ("", "-wal", "-shm"):
        part = Path(f"{path}{suffix}")
        if part.exists():
            part.rename(Path(f"{aside}{suffix}"))
    # Events spilled for this journal that its successor cannot take back with their seqs (the
    # spill overflowed and later seqs were lost) must not vanish when the spill is reused: a
    # copy stays beside the set-aside file. Best effort: the disk may be the trouble.
    spill = Path(f"{path}.spill")
    with contextlib.suppress(OSError), spill.open("rb") as f:
        if f.read(1) not in (b"", b"\0"):
            shutil.copyfile(spill, Path(f"{aside}.spill"))
    log.critical("journal %s failed its checks (%s): set aside as %s", path, reason, aside.name)
    return aside.name
