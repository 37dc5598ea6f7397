"""Recognising our own presses when the cloud sends them back. Pure.

The published rule matches every event of the source, and the published Lambda turns each into
``{"event": detail["click-type"], "reportedTime": time}`` on ``cat-feeder/action`` — no id, and
the time in whole seconds. So every button event this gateway sends to EventBridge (and every
replay of one) may come back as an id-less command. Each send leaves one *credit* for its
(click type, second); an id-less command that finds a credit uses it up and is an echo. One to
one: two presses in the same second leave two credits and absorb two echoes, and a third
command in that second is real.

Credits expire after ``window_ms`` (an echo arrives within seconds; a genuine remote command
much later must not be swallowed). The daemon rebuilds them at start-up from the events the
EventBridge sink has sent recently, so a restart between a send and its echo still catches it.
"""

from __future__ import annotations

from collections import deque

from gateway.events import ClickType


class EchoLedger:
    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        # (click, second) -> wall-clock ms at which each credit was left, oldest first.
        self._credits: dict[tuple[ClickType, int], deque[int]] = {}
        self.absorbed = 0
        self._pruned_at_ms = 0

    def forwarded(self, click: ClickType, occurred_at_ms: int, now_ms: int) -> None:
        """An event with this click type and time was sent where an echo may come from."""
        # Expired credits go here too, at most once a window (so a send stays O(1)): where no
        # echo ever comes (no rule or Lambda behind the bus), nothing else would drop them,
        # and the ledger would grow for as long as the daemon runs.
        if abs(now_ms - self._pruned_at_ms) >= self.window_ms:
            self.prune(now_ms)
        self._credits.setdefault((click, occurred_at_ms // 1000), deque()).append(now_ms)

    def take(self, click: ClickType, reported_second: int, now_ms: int) -> bool:
        """Use up one credit for (click, second) if there is one: True means an echo."""
        self.prune(now_ms)
        key = (click, reported_second)
        credits = self._credits.get(key)
        if not credits:
            return False
        credits.popleft()
        if not credits:
            del self._credits[key]
        self.absorbed += 1
        return True

    def prune(self, now_ms: int) -> None:
        self._pruned_at_ms = now_ms
        horizon = now_ms - self.window_ms
        for key in [k for k, times in self._credits.items() if times[-1] < horizon]:
            del self._credits[key]
        for times in self._credits.values():
            while times and times[0] < horizon:
                times.popleft()

    def __len__(self) -> int:
        return sum(len(t) for t in self._credits.values())
