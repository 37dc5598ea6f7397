"""Bounding floods: what is journaled one by one and what is only counted. Pure: the caller
passes monotonic time and does the journaling.

A device can send far more than anyone could act on: a stuck button publishing a hundred
thousand presses, a feeder whose level sensor flaps between two values. Journaling each one
costs an fsync (an SD card wears, and a real acknowledgement waits behind them) and tells a
person nothing the first one did not. So:

- :class:`Suppressor` — a press the policy refuses (too soon, over the cap) is journaled once
  per key (button and reason) per window; the rest of that window's are counted, and the
  counts are journaled as one ``InputsSuppressed`` summary. A press the policy accepts is
  never suppressed: only what could not have fed is.
- :class:`Coalescer` — a feeder report (food level, online/offline) is journaled at once when
  none of its kind was in the last window; later ones in the window wait, and only the last
  value is journaled when the window ends, and only if it differs from what is journaled.
  A value that flaps is therefore journaled at most twice per window, and ends right.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Generic, TypeVar

V = TypeVar("V")

SUPPRESS_WINDOW_MS = 10_000
REPORT_WINDOW_MS = 5_000


class Suppressor:
    """Which refused presses to journal, and how many were only counted."""

    def __init__(self, window_ms: int = SUPPRESS_WINDOW_MS) -> None:
        self.window_ms = window_ms
        self._journaled_at: dict[str, int] = {}
        self._counts: Counter[str] = Counter()
        self.total = 0  # suppressed since start (status, tests)

    def admit(self, key: str, mono_ms: int) -> bool:
        """True: journal this one. False: it was counted (the caller schedules a summary)."""
        last = self._journaled_at.get(key)
        if last is None or mono_ms - last >= self.window_ms:
            self._journaled_at[key] = mono_ms
            return True
        self._counts[key] += 1
        self.total += 1
        return False

    def take_counts(self) -> dict[str, int]:
        """What was counted since the last call (for one summary), and start counting anew."""
        counts, self._counts = dict(self._counts), Counter()
        return counts


@dataclass
class _Kind(Generic[V]):
    journaled_at: int | None = None
    pending: V | None = None
    has_pending: bool = False
    coalesced: int = 0


@dataclass
class Coalescer(Generic[V]):
    """At most one report of each kind journaled at once per window; the last one held."""

    window_ms: int = REPORT_WINDOW_MS
    _kinds: dict[str, _Kind[V]] = field(default_factory=dict)

    def offer(self, kind: str, value: V, mono_ms: int) -> bool:
        """True: journal ``value`` now. False: it is held as the latest of its kind."""
        state = self._kinds.setdefault(kind, _Kind())
        if state.journaled_at is None or mono_ms - state.journaled_at >= self.window_ms:
            state.journaled_at = mono_ms
            state.pending, state.has_pending = None, False
            return True
        if state.has_pending:
            state.coalesced += 1  # the one held before is replaced: never journaled
        state.pending, state.has_pending = value, True
        return False

    def next_due(self) -> int | None:
        """The monotonic ms at which a held report is due, if any is held."""
        due = [
            k.journaled_at + self.window_ms
            for k in self._kinds.values()
            if k.has_pending and k.journaled_at is not None
        ]
        return min(due, default=None)

    def take_due(self, mono_ms: int) -> list[tuple[str, V]]:
        """Held reports whose window has ended: journal each (if it is still a change)."""
        out: list[tuple[str, V]] = []
        for name, state in self._kinds.items():
            if not state.has_pending or state.journaled_at is None:
                continue
            if mono_ms - state.journaled_at < self.window_ms:
                continue
            assert state.pending is not None
            out.append((name, state.pending))
            state.journaled_at = mono_ms
            state.pending, state.has_pending = None, False
        return out

    def take_counts(self) -> dict[str, int]:
        """Reports replaced before they were journaled, per kind, since the last call."""
        counts = {name: k.coalesced for name, k in self._kinds.items() if k.coalesced}
        for k in self._kinds.values():
            k.coalesced = 0
        return counts
