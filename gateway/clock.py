"""Wall-clock time, monotonic time, and whether the wall clock can be trusted.

The Pi has no real-time clock: after a cold boot without network its wall clock can be years
off. Every event records whether the clock was synchronised when it was written, and order
always comes from ``seq``, never from these times.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import time
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

# systemd-timesyncd touches this file once the clock has been synchronised.
_TIMESYNC_FLAG = Path("/run/systemd/timesync/synchronized")
_TIME_ERROR = 5  # adjtimex(2): the clock is not synchronised
# A wall clock this far behind the steady one has been stepped back (not read-to-read jitter).
STEP_MS = 1000


class Clock(Protocol):
    def now_ms(self) -> int:
        """Wall-clock time, integer milliseconds since the Unix epoch."""

    def monotonic_ms(self) -> int:
        """Monotonic milliseconds: for timers and gaps within one run."""

    def synced(self) -> bool:
        """Whether the wall clock is believed to be synchronised (NTP)."""


class _Timex(ctypes.Structure):
    # Only the leading fields matter (modes=0 reads without changing anything); the rest of
    # struct timex is padding large enough for every libc layout.
    _fields_ = [("modes", ctypes.c_uint), ("_rest", ctypes.c_byte * 256)]


def kernel_clock_synced() -> bool:
    """Ask the kernel (adjtimex) whether NTP has synchronised the clock; False if unknown."""
    if _TIMESYNC_FLAG.exists():
        return True
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        state = libc.adjtimex(ctypes.byref(_Timex()))
    except (OSError, AttributeError):
        return False
    return bool(state >= 0 and state != _TIME_ERROR)


class SystemClock:
    """The real clocks. Sync state is re-read at most every 60 s (it is a syscall)."""

    def __init__(self) -> None:
        self._synced = kernel_clock_synced()
        self._checked_at = time.monotonic()

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic_ms(self) -> int:
        return time.monotonic_ns() // 1_000_000

    def synced(self) -> bool:
        if time.monotonic() - self._checked_at > 60:
            self._synced = kernel_clock_synced()
            self._checked_at = time.monotonic()
        return self._synced


class FixedClock:
    """A clock that moves only when told: for pure-logic tests and replays."""

    def __init__(self, now_ms: int = 1_800_000_000_000, *, synced: bool = True) -> None:
        self.wall_ms = now_ms
        self.mono_ms = 0
        self.is_synced = synced

    def advance(self, ms: int) -> None:
        self.wall_ms += ms
        self.mono_ms += ms

    def now_ms(self) -> int:
        return self.wall_ms

    def monotonic_ms(self) -> int:
        return self.mono_ms

    def synced(self) -> bool:
        return self.is_synced


class SteadyClock:
    """A wall clock that never goes back: what caps, gaps and expiry are measured on.

    ``now_ms()`` is the wall clock, unless that is earlier than the last value given plus the
    monotonic time elapsed since: then the latter. So a clock stepped back (a Pi without a
    real-time clock, a bad NTP answer, a person's ``date -s``) is read as "only the monotonic
    time has passed", never as "the feeds of the last half hour are in the future" — which let
    a policy that left such feeds out accept a feed per step. A forward step is followed:
    that is NTP setting a clock that was behind. ``floor_ms`` is the newest time already in the
    journal, so a restart on a clock behind the last run's does not go back either (journal
    order carries the clock across restarts).

    The price: a clock that was ahead and is corrected backwards is followed only at the rate
    of monotonic time, so recorded times run ahead until real time catches up; every event
    still says whether the clock was synchronised.
    """

    def __init__(self, clock: Clock, *, floor_ms: int = 0) -> None:
        self._clock = clock
        self._last_ms = floor_ms
        self._last_mono_ms = clock.monotonic_ms()
        self.steps_back = 0  # how often the wall clock was seen to go back
        self._last_wall_ms = clock.now_ms()

    def now_ms(self) -> int:
        wall = self._clock.now_ms()
        mono = self._clock.monotonic_ms()
        steady = self._last_ms + max(0, mono - self._last_mono_ms)
        if wall - self._last_wall_ms < mono - self._last_mono_ms - STEP_MS:
            self.steps_back += 1  # the wall clock moved back against monotonic time
            log.warning(
                "the wall clock went back by %d ms; caps and gaps ignore it",
                (mono - self._last_mono_ms) - (wall - self._last_wall_ms),
            )
        self._last_wall_ms = wall
        wall = max(wall, steady)
        self._last_ms, self._last_mono_ms = wall, mono
        return wall

    def monotonic_ms(self) -> int:
        return self._clock.monotonic_ms()

    def synced(self) -> bool:
        return self._clock.synced()
