"""How long the journal's commits take: a fixed-bucket histogram, thread-safe and dependency-free.

The journal's writer thread calls :meth:`CommitTimes.observe` after each commit (the one hook in
the journal); the daemon copies a snapshot into its status, and the metrics endpoint turns it
into a Prometheus histogram. Kept free of prometheus_client so that the journal and the status
never load it: only the metrics exporter does, and only when it is configured.
"""

from __future__ import annotations

import bisect
import threading
from typing import Final

# Upper bounds in seconds. An fsync on an SSD is ~0.2 ms, on an SD card 5-50 ms, on a dying
# card seconds: the buckets span all three.
COMMIT_BUCKETS_S: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class CommitTimes:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = [0] * (len(COMMIT_BUCKETS_S) + 1)  # the last: above every bound
        self._sum_s = 0.0

    def observe(self, seconds: float) -> None:
        index = bisect.bisect_left(COMMIT_BUCKETS_S, seconds)
        with self._lock:
            self._counts[index] += 1
            self._sum_s += seconds

    def snapshot(self) -> tuple[tuple[int, ...], float]:
        """(count per bucket, not cumulative, the last one above every bound; the sum in s)."""
        with self._lock:
            return tuple(self._counts), self._sum_s
