"""Stopping a process the local stack (or a benchmark) started: politely, then for sure."""

from __future__ import annotations

import signal
import subprocess

STOP_TIMEOUT_S = 10.0


def stop_process(process: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT_S) -> int:
    """SIGTERM and wait (a broker saves its persistence, the daemon journals GatewayStopped);
    SIGKILL if it has not exited in ``timeout`` seconds. Only ever the process we started, by
    its own handle. Its exit status."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait(timeout=timeout)
