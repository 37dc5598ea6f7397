"""Alerts, pure: what should be raised now, given a fold of the journal and a few live facts
(docs/architecture.md, "Alerts").

An alert is a (kind, subject) that is either active or not; the journal holds its whole life
as ``AlertRaised`` / ``AlertCleared`` events, and :class:`AlertFacts` folds them together with
the events that trigger them, so after a restart the gateway knows which alerts are open and
neither raises them again nor forgets to clear them.

**Never flapping.** Each rule raises on one condition and clears on a clearly different one:

- ``food-low``: raised when the level falls below ``food_low_percent``; cleared only once it is
  at least ``food_low_percent + food_clear_margin`` (a refill), not when a sensor wobbles;
- ``feeder-offline``: raised when the feeder has been offline ``feeder_offline_min``; cleared
  when it is back online;
- ``feed-unconfirmed``: raised by a ``FeedUnconfirmed``; cleared by the next ``FeedDispensed``;
- ``not-fed`` (subject: the bowl): raised when the local time passes the bowl's deadline with
  no dispensed feed since local midnight; cleared by a feed, or by the next local day;
- ``journal-failing``: raised while the disk refuses commits; cleared when it takes them again;
- ``sink-backlog`` (subject: the sink): raised when a cloud sink's oldest unsent event is older
  than ``sink_backlog_min``; cleared when it is younger than half that (or nothing is left).

Rules that read the wall clock (offline for, deadline, backlog age) are not evaluated while it
is unsynchronised: their alerts stay as they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import time
from zoneinfo import ZoneInfo

from gateway.events import (
    AlertCleared,
    AlertKind,
    AlertRaised,
    Bowl,
    Event,
    FeedDispensed,
    FeederOffline,
    FeederOnline,
    FeedUnconfirmed,
    FoodLevelChanged,
)
from gateway.schedule import local_date, meal_instant

AlertKey = tuple[AlertKind, str]  # (kind, subject)
CLOCK_RULES = frozenset(
    {AlertKind.FEEDER_OFFLINE, AlertKind.NOT_FED, AlertKind.SINK_BACKLOG},
)


@dataclass(frozen=True, slots=True)
class AlertRules:
    food_low_percent: int = 20
    food_clear_margin: int = 5
    feeder_offline_ms: int = 600_000
    sink_backlog_ms: int = 1_800_000
    not_fed_by: Mapping[Bowl, time] = field(default_factory=dict)


@dataclass
class AlertFacts:
    """The journal's view of everything alerts depend on, folded in seq order."""

    food_level: int | None = None
    feeder_online: bool | None = None
    offline_since_ms: int | None = None
    unconfirmed: bool = False  # a FeedUnconfirmed with no FeedDispensed after it
    last_dispensed_ms: dict[Bowl, int] = field(default_factory=dict)
    active: dict[AlertKey, str] = field(default_factory=dict)  # key -> its message
    seq: int = 0

    def apply(self, event: Event) -> None:
        payload = event.payload
        match payload:
            case FoodLevelChanged():
                self.food_level = payload.level
            case FeederOnline():
                self.feeder_online = True
                self.offline_since_ms = None
            case FeederOffline():
                if self.feeder_online is not False:
                    self.offline_since_ms = event.occurred_at_ms
                self.feeder_online = False
            case FeedUnconfirmed():
                self.unconfirmed = True
            case FeedDispensed():
                self.unconfirmed = False
                for bowl in payload.bowls:
                    self.last_dispensed_ms[bowl] = event.occurred_at_ms
            case AlertRaised():
                self.active[(payload.kind, payload.subject)] = payload.message
            case AlertCleared():
                self.active.pop((payload.kind, payload.subject), None)
            case _:
                pass
        self.seq = max(self.seq, event.seq)

    @classmethod
    def fold(cls, events: Iterable[Event]) -> AlertFacts:
        facts = cls()
        for event in events:
            facts.apply(event)
        return facts


def desired(
    facts: AlertFacts,
    rules: AlertRules,
    zone: ZoneInfo,
    now_ms: int,
    *,
    clock_synced: bool,
    journal_failing: bool,
    oldest_unsent_ms: Mapping[str, int | None],
) -> dict[AlertKey, str]:
    """The alerts that should be active now, each with its message."""
    want: dict[AlertKey, str] = {}
    active = facts.active

    level = facts.food_level
    if level is not None:
        key = (AlertKind.FOOD_LOW, "")
        limit = rules.food_low_percent + (rules.food_clear_margin if key in active else 0)
        if level < limit:
            want[key] = f"food at {level}% (below {rules.food_low_percent}%)"

    if facts.unconfirmed:
        want[(AlertKind.FEED_UNCONFIRMED, "")] = "the feeder did not confirm a feed"
    if journal_failing:
        want[(AlertKind.JOURNAL_FAILING, "")] = "the journal's disk refuses writes"

    if not clock_synced:  # keep what the clock rules decided while the clock was trusted
        want.update({k: m for k, m in active.items() if k[0] in CLOCK_RULES})
        return want

    since = facts.offline_since_ms
    offline = facts.feeder_online is False and since is not None
    if offline and since is not None and now_ms - since >= rules.feeder_offline_ms:
        minutes = (now_ms - since) // 60_000
        want[(AlertKind.FEEDER_OFFLINE, "")] = active.get(
            (AlertKind.FEEDER_OFFLINE, ""), f"the feeder has been offline {minutes} min"
        )

    today = local_date(now_ms, zone)
    midnight = meal_instant(today, time(0, 0), zone)
    for bowl, by in rules.not_fed_by.items():
        if now_ms >= meal_instant(today, by, zone) and facts.last_dispensed_ms.get(bowl, 0) < (
            midnight
        ):
            want[(AlertKind.NOT_FED, bowl.value)] = f"{bowl.value} bowl not fed by {by:%H:%M}"

    for sink, oldest in oldest_unsent_ms.items():
        key = (AlertKind.SINK_BACKLOG, sink)
        if oldest is None:
            continue
        age = now_ms - oldest
        threshold = rules.sink_backlog_ms // 2 if key in active else rules.sink_backlog_ms
        if age > threshold:
            want[key] = active.get(key, f"{sink}: oldest unsent event {age // 60_000} min old")
    return want


def transitions(
    active: Mapping[AlertKey, str], want: Mapping[AlertKey, str]
) -> list[AlertRaised | AlertCleared]:
    """The events that take ``active`` to ``want``: clears first, then raises, each sorted."""
    out: list[AlertRaised | AlertCleared] = [
        AlertCleared(kind, subject) for kind, subject in sorted(set(active) - set(want))
    ]
    out += [
        AlertRaised(kind, subject, want[(kind, subject)])
        for kind, subject in sorted(set(want) - set(active))
    ]
    return out
