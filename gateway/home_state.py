"""Live state for Home Assistant and anyone reading MQTT, pure: a fold of the journal and the
retained messages it means (docs/architecture.md, "Home Assistant").

Folded, not counted as things happen: after a restart the gateway folds the journal's recent
window (:func:`gateway.alert_watch.home_history`) and publishes exactly what it published
before — last fed, feeds today, food level, next meal, open alerts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

from gateway.alerts import AlertFacts
from gateway.events import AlertKind, Bowl, Event, FeedDispensed
from gateway.ha_discovery import HomeTopics
from gateway.schedule import MealPlan, ScheduleMemory, local_date, meal_instant, upcoming

UNKNOWN = "unknown"  # what a Home Assistant sensor shows as "unknown"


def iso_utc(ms: int) -> str:
    """A timestamp as Home Assistant's timestamp sensors read it (ISO 8601 with offset)."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds")


@dataclass
class HomeState:
    alerts: AlertFacts = field(default_factory=AlertFacts)
    meals: ScheduleMemory = field(default_factory=ScheduleMemory)
    dispensed: dict[Bowl, list[int]] = field(default_factory=lambda: {b: [] for b in Bowl})
    seq: int = 0

    def apply(self, event: Event) -> None:
        if event.seq <= self.seq:
            return  # already folded (the follower may hand over what start-up read)
        self.alerts.apply(event)
        self.meals.apply(event.payload)
        if isinstance(event.payload, FeedDispensed):
            for bowl in event.payload.bowls:
                times = self.dispensed[bowl]
                times.append(event.occurred_at_ms)
                del times[:-200]  # today's feeds fit: the policy caps them far below this
        self.seq = event.seq

    def fed_today(self, bowl: Bowl, zone: ZoneInfo, now_ms: int) -> int:
        midnight = meal_instant(local_date(now_ms, zone), time(0, 0), zone)
        return sum(1 for t in self.dispensed[bowl] if midnight <= t <= now_ms)


def state_messages(
    state: HomeState,
    topics: HomeTopics,
    *,
    zone: ZoneInfo,
    now_ms: int,
    clock_synced: bool,
    plans: Sequence[MealPlan],
    backlog: Mapping[str, int],
) -> dict[str, str]:
    """Topic -> retained payload for everything derived from the journal."""
    facts = state.alerts
    out: dict[str, str] = {}
    out[topics.food_level] = UNKNOWN if facts.food_level is None else str(facts.food_level)
    for bowl in Bowl:
        last = facts.last_dispensed_ms.get(bowl)
        out[topics.last_fed(bowl)] = UNKNOWN if last is None else iso_utc(last)
        out[topics.fed_today(bowl)] = str(state.fed_today(bowl, zone, now_ms))
    meal = upcoming(plans, zone, state.meals, now_ms) if clock_synced and plans else None
    out[topics.next_meal] = UNKNOWN if meal is None else iso_utc(meal.at_ms)
    for sink, n in backlog.items():
        out[topics.backlog(sink)] = str(n)
    active = sorted(facts.active.items())
    for kind in AlertKind:
        out[topics.alert(kind)] = "ON" if any(k == kind for (k, _), _ in active) else "OFF"
    out[topics.alerts] = json.dumps(
        [{"kind": k.value, "subject": s, "message": m} for (k, s), m in active],
        separators=(",", ":"),
    )
    return out
