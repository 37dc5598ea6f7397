"""The daemon in the test's own event loop: for tests that drive its parts directly (mock GPIO
pins, the intake, the journal) while real brokers run beside it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from mqtt_probe import task_stacks

from gateway.config import Config
from gateway.daemon import Daemon
from gateway.events import Event, EventType


@contextlib.asynccontextmanager
async def running(config: Config) -> AsyncIterator[Daemon]:
    """Run a Daemon in this loop until the block ends; stop it as SIGTERM would."""
    daemon = Daemon(config)
    task = asyncio.create_task(daemon.run(), name="daemon-under-test")
    ready = asyncio.create_task(daemon.ready.wait())
    await asyncio.wait({task, ready}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    if not daemon.ready.is_set():
        ready.cancel()
        if task.done():
            task.result()  # raises what stopped it
        task.cancel()
        raise AssertionError("the daemon did not become ready within 10 s")
    try:
        yield daemon
    finally:
        daemon.stopping.set()
        # asyncio.wait, not wait_for: a daemon that does not stop is a failure that shows
        # where each task is stuck, not a cancellation that might hang as well.
        await asyncio.wait({task}, timeout=15)
        if not task.done():
            raise AssertionError(f"the daemon did not stop within 15 s:\n{task_stacks()}")
        assert task.result() == 0


def journaled(daemon: Daemon, *types: EventType) -> list[Event]:
    """Durable events of ``types``, in seq order."""
    assert daemon.journal is not None
    return list(daemon.journal.reader.query(types=[t.value for t in types]))
