"""Feeding statistics: a pure fold of journal events (no I/O, no clock).

What is counted, per UTC day of each event's *recorded* time (which may be wrong when the clock
was not synchronised; the journal's order is seq):

- ``requested``: accepted feed requests (``FeedRequested``), one per bowl named;
- ``dispensed``: feeds the feeder confirmed (``FeedDispensed``), one per bowl named;
- rejections by reason (``FeedRejected``), and unconfirmed feeds (``FeedUnconfirmed``);
- food level over time: each ``FoodLevelChanged`` point;
- feeder uptime: from ``FeederOnline`` / ``FeederOffline``. Time counts from the first such
  event to ``end_ms``; while the gateway was stopped (``GatewayStopped`` until the next
  start) the feeder's state is unknown and that time is not counted; after a crash (no
  ``GatewayStopped``) the last known state is taken to have lasted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.events import (
    Bowl,
    Event,
    EventType,
    FeedDispensed,
    FeedRejected,
    FeedRequested,
    FeedUnconfirmed,
    FoodLevelChanged,
)

DAY_MS = 86_400_000
BOWLS: tuple[str, ...] = tuple(b.value for b in Bowl)


def day_of(ms: int) -> str:
    """The UTC calendar day of a time in ms since the epoch, as ``YYYY-MM-DD``."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d")


def day_start_ms(day: str) -> int:
    dt = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC)
    return int(dt.timestamp()) * 1000


def days_between(first: str, last: str) -> list[str]:
    """Every UTC day from ``first`` to ``last`` inclusive."""
    start = datetime.strptime(first, "%Y-%m-%d").replace(tzinfo=UTC)
    end = datetime.strptime(last, "%Y-%m-%d").replace(tzinfo=UTC)
    out = []
    while start <= end:
        out.append(start.strftime("%Y-%m-%d"))
        start += timedelta(days=1)
    return out


@dataclass(frozen=True, slots=True)
class LevelPoint:
    seq: int
    at_ms: int
    level: int


@dataclass(slots=True)
class Uptime:
    """Milliseconds the feeder was known online / known at all, per UTC day."""

    online_ms: dict[str, int] = field(default_factory=dict)
    known_ms: dict[str, int] = field(default_factory=dict)

    @property
    def fraction(self) -> float | None:
        known = sum(self.known_ms.values())
        return None if known == 0 else sum(self.online_ms.values()) / known

    def day_fraction(self, day: str) -> float | None:
        known = self.known_ms.get(day, 0)
        return None if known == 0 else self.online_ms.get(day, 0) / known


@dataclass(slots=True)
class Stats:
    """What ``fmfb journal stats`` prints and ``fmfb journal chart`` draws."""

    events: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    # day -> bowl -> count
    requested: dict[str, dict[str, int]] = field(default_factory=dict)
    dispensed: dict[str, dict[str, int]] = field(default_factory=dict)
    rejections: dict[str, int] = field(default_factory=dict)
    unconfirmed: int = 0
    food_levels: list[LevelPoint] = field(default_factory=list)
    uptime: Uptime = field(default_factory=Uptime)

    def days(self) -> list[str]:
        """Every day from the first to the last with a feed, a level point or uptime."""
        seen = set(self.requested) | set(self.dispensed) | set(self.uptime.known_ms)
        seen |= {day_of(p.at_ms) for p in self.food_levels}
        if not seen:
            return []
        return days_between(min(seen), max(seen))

    def feeds(self, kind: str, day: str, bowl: str) -> int:
        table = self.requested if kind == "requested" else self.dispensed
        return table.get(day, {}).get(bowl, 0)

    def to_dict(self) -> dict[str, Any]:
        """One JSON object (``stats --json``)."""
        return {
            "events": self.events,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "feeds_per_day": [
                {
                    "day": day,
                    "requested": {b: self.feeds("requested", day, b) for b in BOWLS},
                    "dispensed": {b: self.feeds("dispensed", day, b) for b in BOWLS},
                }
                for day in self.days()
            ],
            "rejections": dict(sorted(self.rejections.items())),
            "unconfirmed": self.unconfirmed,
            "food_levels": [
                {"seq": p.seq, "at_ms": p.at_ms, "level": p.level} for p in self.food_levels
            ],
            "uptime": {
                "fraction": self.uptime.fraction,
                "days": [
                    {
                        "day": day,
                        "online_ms": self.uptime.online_ms.get(day, 0),
                        "known_ms": known,
                        "fraction": self.uptime.day_fraction(day),
                    }
                    for day, known in sorted(self.uptime.known_ms.items())
                ],
            },
        }


def _add_span(uptime: Uptime, start_ms: int, end_ms: int, *, online: bool) -> None:
    """Add [start, end) to the days it covers (nothing when a wrong clock made it negative)."""
    while start_ms < end_ms:
        day = day_of(start_ms)
        cut = min(end_ms, day_start_ms(day) + DAY_MS)
        uptime.known_ms[day] = uptime.known_ms.get(day, 0) + (cut - start_ms)
        if online:
            uptime.online_ms[day] = uptime.online_ms.get(day, 0) + (cut - start_ms)
        start_ms = cut


def _count(table: dict[str, dict[str, int]], day: str, bowls: Iterable[Bowl]) -> None:
    per_bowl = table.setdefault(day, {})
    for bowl in bowls:
        per_bowl[bowl.value] = per_bowl.get(bowl.value, 0) + 1


def fold(events: Iterable[Event], *, end_ms: int | None = None) -> Stats:
    """Fold events (in seq order) into statistics.

    ``end_ms`` closes the last uptime span (pass "now" for a journal still being written);
    without it the last span ends at the last event's time.
    """
    stats = Stats()
    state: bool | None = None  # the feeder: online, offline, or unknown
    paused: bool | None = None  # the state when the gateway stopped
    since_ms = 0
    last_ms: int | None = None
    for event in events:
        stats.events += 1
        if stats.first_seq is None:
            stats.first_seq = event.seq
        stats.last_seq = event.seq
        at = event.occurred_at_ms
        last_ms = at
        day = day_of(at)
        p = event.payload
        if isinstance(p, FeedRequested):
            _count(stats.requested, day, p.bowls)
        elif isinstance(p, FeedDispensed):
            _count(stats.dispensed, day, p.bowls)
        elif isinstance(p, FeedRejected):
            stats.rejections[p.reason] = stats.rejections.get(p.reason, 0) + 1
        elif isinstance(p, FeedUnconfirmed):
            stats.unconfirmed += 1
        elif isinstance(p, FoodLevelChanged):
            stats.food_levels.append(LevelPoint(event.seq, at, p.level))
        if event.type in (EventType.FEEDER_ONLINE, EventType.FEEDER_OFFLINE):
            if state is not None:
                _add_span(stats.uptime, since_ms, at, online=state)
            state = event.type is EventType.FEEDER_ONLINE
            since_ms = at
        elif event.type is EventType.GATEWAY_STOPPED and state is not None:
            _add_span(stats.uptime, since_ms, at, online=state)
            state, paused = None, state
        elif event.type is EventType.GATEWAY_STARTED and state is None and paused is not None:
            # The daemon journals the feeder's state on change only: it resumes as it was.
            state, since_ms, paused = paused, at, None
    end = end_ms if end_ms is not None else last_ms
    if state is not None and end is not None:
        _add_span(stats.uptime, since_ms, end, online=state)
    return stats
