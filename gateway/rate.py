"""Pacing publishes to a rate limit. Pure: the caller reads the clock and sleeps.

AWS IoT Core allows about 100 publishes per second per connection and throttles (or
disconnects) a client that goes over; the IoT Core sink is configured below that
(``sinks.iot_core.publish_rate_per_s``). A drain of a long offline backlog is exactly the case
that would go over, so every publish first asks the pacer when it may go.

The pacer is the Generic Cell Rate Algorithm: a token bucket written as one "theoretical
arrival time". With rate ``r`` (interval ``T = 1/r``) and burst ``b``, in any window of ``W``
seconds at most ``b + W/T`` sends are allowed, however the calls are spread, and a long idle
spell earns no more than ``b`` at once. ``reserve`` books the next slot and says how long to
wait for it; a booked slot that goes unused (the caller was cancelled) is simply lost, which
only ever makes the pacer slower, never faster than the limit.
"""

from __future__ import annotations

import math


class Pacer:
    """Books send slots at ``rate_per_s`` with up to ``burst`` at once (None: no limit)."""

    def __init__(self, rate_per_s: float | None, *, burst: int = 1) -> None:
        if rate_per_s is not None and not (0 < rate_per_s < math.inf):
            raise ValueError("the rate must be a positive, finite number per second (or None)")
        if burst < 1:
            raise ValueError("the burst must be at least 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.interval_s = 0.0 if rate_per_s is None else 1.0 / rate_per_s
        # How far ahead of the theoretical arrival time a send may go: the burst.
        self._tolerance_s = (burst - 1) * self.interval_s
        self._tat: float | None = None  # theoretical arrival time of the next send
        self.booked = 0

    @classmethod
    def unlimited(cls) -> Pacer:
        return cls(None)

    def reserve(self, now_s: float) -> float:
        """Book the next slot; return the seconds to wait (>= 0) before sending in it.

        ``now_s`` is any monotonic clock in seconds; calls must not go back in time.
        """
        self.booked += 1
        if self.rate_per_s is None:
            return 0.0
        tat = now_s if self._tat is None else max(self._tat, now_s)
        send_at = max(now_s, tat - self._tolerance_s)
        self._tat = tat + self.interval_s
        return send_at - now_s

    def delay(self, now_s: float) -> float:
        """How long a send booked now would wait, without booking it."""
        if self.rate_per_s is None or self._tat is None:
            return 0.0
        return max(0.0, max(self._tat, now_s) - self._tolerance_s - now_s)

    def __repr__(self) -> str:
        rate = "unlimited" if self.rate_per_s is None else f"{self.rate_per_s:g}/s"
        return f"Pacer({rate}, burst={self.burst})"
