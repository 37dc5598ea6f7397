"""The device's clock on the host: real time, sped up by FMFB_SPEED, shared by processes.

virtual ms = (time.monotonic() - FMFB_T0) * 1000 * FMFB_SPEED. CLOCK_MONOTONIC is one clock
for every process on the machine, so the test, its fault proxy and the firmware's process
agree on it. Everything the firmware waits for (sleep_ms, socket timeouts, the watchdog) is
scaled the same way: a 20 s motor run at speed 50 takes 0.4 s.
"""

from __future__ import annotations

import os
import time

SPEED = float(os.environ.get("FMFB_SPEED", "1"))
T0 = float(os.environ.get("FMFB_T0", str(time.monotonic())))
TICKS_PERIOD = 1 << 30  # the ESP32 port's ticks_ms wraps here
# Start 5 s (virtual) before the wrap: every run crosses it.
TICKS_OFFSET = TICKS_PERIOD - 5000


def virtual_ms() -> int:
    return int((time.monotonic() - T0) * 1000 * SPEED)


def real_s(virtual_s: float) -> float:
    return virtual_s / SPEED


def ticks_ms() -> int:
    return (virtual_ms() + TICKS_OFFSET) & (TICKS_PERIOD - 1)


def ticks_add(ticks: int, delta: int) -> int:
    return (ticks + delta) & (TICKS_PERIOD - 1)


def ticks_diff(a: int, b: int) -> int:
    half = TICKS_PERIOD // 2
    return ((a - b + half) & (TICKS_PERIOD - 1)) - half


def sleep_ms(ms: int) -> None:
    time.sleep(real_s(ms / 1000))


def install() -> None:
    """MicroPython's time.ticks_* and sleep_ms, on CPython's time module."""
    time.ticks_ms = ticks_ms  # type: ignore[attr-defined]
    time.ticks_add = ticks_add  # type: ignore[attr-defined]
    time.ticks_diff = ticks_diff  # type: ignore[attr-defined]
    time.sleep_ms = sleep_ms  # type: ignore[attr-defined]
