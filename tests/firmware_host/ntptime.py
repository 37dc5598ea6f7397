"""Shim of MicroPython's ``ntptime``: the host's clock is the NTP answer (its time module's
epoch is 1970, like MicroPython 1.22 and later on the ESP32)."""

from __future__ import annotations

import time as _time

host = "pool.ntp.org"


def time() -> int:
    return int(_time.time())


def settime() -> None:
    pass
