"""The gateway's daemon in the caller's own event loop, started and stopped as ``fmfb run``'s
would be: for the demo, for tests that drive its parts while real brokers run beside it, and for
the benchmarks.

``running(config)`` is the short form (``async with running(config) as daemon:``);
:class:`InProcessDaemon` is the long one, for a caller that must also notice when the daemon
stops by itself (SIGTERM, Ctrl-C or a failure), as the demo does.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

from gateway.clock import Clock
from gateway.config import Config
from gateway.daemon import Daemon
from gateway.devstack import DevStackError

READY_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 15.0


def task_stacks() -> str:
    """Where every task on the running loop is waiting: what to show when a stop hangs."""
    out = io.StringIO()
    for task in asyncio.all_tasks():
        print(f"--- {task.get_name()}: {task!r}", file=out)
        awaiting: Any = task.get_coro()
        while awaiting is not None:  # the whole chain of awaits, innermost last
            frame = getattr(awaiting, "cr_frame", None) or getattr(awaiting, "ag_frame", None)
            if frame is not None:
                print(
                    f"    {frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}",
                    file=out,
                )
            awaiting = getattr(awaiting, "cr_await", None) or getattr(awaiting, "ag_await", None)
    return out.getvalue()


class InProcessDaemon:
    """A :class:`~gateway.daemon.Daemon` run as a task of the running loop.

    ``pin_factory``: a gpiozero pin factory for the GPIO buttons (a ``MockFactory`` the caller
    drives with gpiozero's own API, ``factory.pin(17).drive_low()``).
    """

    def __init__(
        self,
        config: Config,
        *,
        pin_factory: Any = None,
        ready_timeout_s: float = READY_TIMEOUT_S,
        stop_timeout_s: float = STOP_TIMEOUT_S,
        clock: Clock | None = None,
    ) -> None:
        """``clock``: a clock to run on instead of the system's (tests move a FixedClock)."""
        self.daemon = Daemon(config, pin_factory=pin_factory, clock=clock)
        self.ready_timeout_s = ready_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._task: asyncio.Task[int] | None = None

    @property
    def exited(self) -> bool:
        """The daemon's ``run()`` has returned or raised (asked to stop, or by itself)."""
        return self._task is not None and self._task.done()

    async def wait_exited(self) -> None:
        """Until ``run()`` returns or raises; never raises what it raised."""
        if self._task is not None:
            await asyncio.wait({self._task})

    async def start(self) -> Daemon:
        """Run the daemon and return it once it is ready; raise what stopped it, or a
        DevStackError when it is not ready in time."""
        daemon = self.daemon
        task = asyncio.create_task(daemon.run(), name="daemon")
        self._task = task
        ready = asyncio.create_task(daemon.ready.wait())
        await asyncio.wait(
            {task, ready}, timeout=self.ready_timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
        if daemon.ready.is_set():
            return daemon
        ready.cancel()
        if task.done():
            task.result()  # raises what stopped it
        daemon.stop()
        await asyncio.wait({task}, timeout=self.stop_timeout_s)
        task.cancel()
        raise DevStackError(f"the gateway did not become ready within {self.ready_timeout_s:g}s")

    async def stop(self) -> int:
        """Ask the daemon to stop as SIGTERM would; its exit status (0), or what it raised.

        ``asyncio.wait``, not ``wait_for``: a daemon that does not stop is a failure that shows
        where each task is stuck, not a cancellation that might hang as well."""
        task = self._task
        if task is None:
            return 0
        self.daemon.stop()
        await asyncio.wait({task}, timeout=self.stop_timeout_s)
        if not task.done():
            stacks = task_stacks()
            task.cancel()
            raise DevStackError(
                f"the gateway did not stop within {self.stop_timeout_s:g}s:\n{stacks}"
            )
        return task.result()

    async def __aenter__(self) -> InProcessDaemon:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


@contextlib.asynccontextmanager
async def running(
    config: Config,
    *,
    pin_factory: Any = None,
    ready_timeout_s: float = READY_TIMEOUT_S,
    stop_timeout_s: float = STOP_TIMEOUT_S,
    clock: Clock | None = None,
) -> AsyncIterator[Daemon]:
    """Run a Daemon in this loop until the block ends; stop it as SIGTERM would, and raise if
    it does not stop in time or did not exit cleanly."""
    runner = InProcessDaemon(
        config,
        pin_factory=pin_factory,
        ready_timeout_s=ready_timeout_s,
        stop_timeout_s=stop_timeout_s,
        clock=clock,
    )
    daemon = await runner.start()
    try:
        yield daemon
    finally:
        code = await runner.stop()
        if code != 0:
            raise DevStackError(f"the gateway exited with status {code}")
