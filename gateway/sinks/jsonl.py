"""The JSONL sink: every durable event appended as one line of JSON to a file, for log
shippers (Vector, Fluent Bit, Promtail, ``tail -F``).

Each line is the event's cloud detail (:func:`gateway.cloud_event.detail_json`): the same
object EventBridge and IoT Core receive, with ``seq``, ``event-id`` and ``chain-hash``, so a
shipper can drop the duplicates an at-least-once sink may write after a crash.

A batch is written, flushed and fsynced before the cursor moves over it. The file is rotated
by size the way logrotate does it — ``events.jsonl`` → ``events.jsonl.1`` → … up to ``keep``
files — between batches, so a line is never split across two files. A write that fails (disk
full, the folder gone) leaves the cursor where it was: the sink retries with its back-off and
nothing is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

from gateway.cloud_event import detail_json
from gateway.config import JsonlSinkConfig
from gateway.events import Event
from gateway.sinks.base import SinkContext
from gateway.sinks.follower import Follower, Outcome, follow
from gateway.status import SinkStatus

BATCH = 500


def rotate(path: Path, keep: int) -> None:
    """``path`` → ``path.1`` → … ``path.<keep>``; the oldest beyond ``keep`` is removed."""
    if keep == 0:
        path.unlink(missing_ok=True)
        return
    oldest = path.with_name(f"{path.name}.{keep}")
    oldest.unlink(missing_ok=True)
    for n in range(keep - 1, 0, -1):
        older = path.with_name(f"{path.name}.{n}")
        if older.exists():
            older.rename(path.with_name(f"{path.name}.{n + 1}"))
    if path.exists():
        path.rename(path.with_name(f"{path.name}.1"))


def append_lines(path: Path, lines: Sequence[str], *, max_bytes: int, keep: int) -> None:
    """Append ``lines`` durably (flush + fsync), rotating first if the file is full. Blocking."""
    if path.exists() and path.stat().st_size >= max_bytes:
        rotate(path, keep)
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    try:
        size = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError:
            # A disk that filled mid-batch: no half line for a shipper to choke on; the whole
            # batch is written again once there is room.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)


class JsonlSink:
    name = "jsonl"

    def __init__(self, context: SinkContext, settings: JsonlSinkConfig) -> None:
        self.settings = settings
        self.gateway_id = context.config.gateway_id
        self.path = settings.path or context.config.state_dir / "events.jsonl"
        self.follower = Follower(self.name, settings, context)

    def status(self) -> SinkStatus:
        return self.follower.status()

    async def run(self) -> None:
        await follow(self.follower, self._deliver, batch=BATCH)

    async def _deliver(self, events: Sequence[Event]) -> Outcome:
        lines = [detail_json(e, self.gateway_id) for e in events]
        try:
            # Off the loop: an fsync on an SD card takes milliseconds.
            await asyncio.to_thread(
                append_lines,
                self.path,
                lines,
                max_bytes=self.settings.max_bytes,
                keep=self.settings.keep,
            )
        except OSError as e:
            return Outcome(0, f"cannot write {self.path}: {e.strerror or e}")
        return Outcome(len(events))
