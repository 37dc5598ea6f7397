"""Exponential back-off with full jitter, reset on success. Pure: the caller sleeps.

Reconnect loops need "reset once connected": after an hour-long session, a dropped link should
be retried quickly again, not after the ceiling a long outage earlier reached.
"""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, first_s: float, max_s: float, *, rng: random.Random | None = None) -> None:
        # Written so that NaN fails too; an infinite max would mean "never retry again".
        if not 0 < first_s <= max_s < float("inf"):
            raise ValueError("back-off needs 0 < first_s <= max_s, both finite")
        self.first_s = first_s
        self.max_s = max_s
        self._attempt = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        """The next wait: uniform in [first/2, ceiling] where the ceiling doubles per failure.

        Jitter keeps a fleet of gateways from reconnecting in lock-step after a broker restart.
        """
        ceiling = min(self.max_s, self.first_s * (2**self._attempt))
        self._attempt = min(self._attempt + 1, 62)
        return self._rng.uniform(self.first_s / 2, ceiling)

    def reset(self) -> None:
        self._attempt = 0

    @property
    def attempts(self) -> int:
        return self._attempt
