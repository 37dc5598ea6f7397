"""systemd notification: READY, STATUS, WATCHDOG and STOPPING, when NOTIFY_SOCKET is set.

Uses systemd-python's ``systemd.daemon.notify``. Without NOTIFY_SOCKET (run by hand, in tests
that do not listen) every call is a no-op. The watchdog is pinged from a task on the event
loop: if the loop hangs, the pings stop and systemd restarts the service.
"""

from __future__ import annotations

import logging
import os
from typing import Any

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self) -> None:
        self.enabled = bool(os.environ.get("NOTIFY_SOCKET"))
        self._notify: Any = None
        if self.enabled:
            try:
                import systemd.daemon as daemon  # noqa: PLC0415, PLR0402 - only under systemd; typed as Any
            except ImportError:
                log.warning("NOTIFY_SOCKET is set but systemd-python is not installed")
                self.enabled = False
            else:
                self._notify = daemon.notify

    def watchdog_interval_s(self) -> float | None:
        """Half of WatchdogSec (systemd's advice), or None when no watchdog is asked for."""
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        if not self.enabled or not usec or (pid and pid != str(os.getpid())):
            return None
        try:
            return max(0.1, int(usec) / 1_000_000 / 2)
        except ValueError:
            return None

    def send(self, state: str) -> None:
        if self._notify is not None:
            self._notify(state)

    def ready(self, status: str) -> None:
        self.send(f"READY=1\nSTATUS={status}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def stopping(self) -> None:
        self.send("STOPPING=1\nSTATUS=stopping")
