"""Counts of what was refused at the door, and logs that do not flood.

A misbehaving device can send thousands of bad messages a minute: each is counted, and logged
at WARNING at most once a minute per (source, field); the rest go to DEBUG.
"""

from __future__ import annotations

import logging
import time
from collections import Counter

from gateway.errors import PayloadError

log = logging.getLogger("gateway.input")


class InputCounters:
    WARN_EVERY_S = 60.0

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._last_warned: dict[str, float] = {}
        # Keys counted by bad_input; note() names may contain ":" too, and are not bad input.
        self._bad_keys: set[str] = set()

    def bad_input(self, source: str, error: PayloadError, raw: bytes | str = b"") -> None:
        # "payload" when no one field is to blame (not UTF-8, not JSON, empty).
        key = f"{source}:{error.field or 'payload'}"
        self.counts[key] += 1
        self._bad_keys.add(key)
        now = time.monotonic()
        shown = raw[:80] if isinstance(raw, str) else raw[:80].decode("utf-8", "replace")
        if now - self._last_warned.get(key, -self.WARN_EVERY_S) >= self.WARN_EVERY_S:
            self._last_warned[key] = now
            log.warning(
                "ignored input from %s: %s (payload %r; %d so far)",
                source,
                error,
                shown,
                self.counts[key],
            )
        else:
            log.debug("ignored input from %s: %s", source, error)

    def note(self, name: str) -> None:
        self.counts[name] += 1

    @property
    def total_bad(self) -> int:
        return sum(self.counts[k] for k in self._bad_keys)
