"""Alerts, pure: each rule raises on one condition and clears on another (no flapping), the
fold remembers open alerts, and an alert is an event EventBridge sends like any other."""

from __future__ import annotations

import json
from datetime import date, time
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from gateway.alerts import AlertFacts, AlertRules, desired, transitions
from gateway.eventbridge_entries import EntrySpec, build_entry
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
    Origin,
    Payload,
)
from gateway.schedule import meal_instant

LONDON = ZoneInfo("Europe/London")
MINUTE = 60_000
RULES = AlertRules(
    food_low_percent=20,
    food_clear_margin=5,
    feeder_offline_ms=10 * MINUTE,
    sink_backlog_ms=30 * MINUTE,
    not_fed_by={Bowl.LEFT: time(8, 0)},
)


class Ledger:
    """Events folded into facts, and the watch's step: journal the transitions."""

    def __init__(self) -> None:
        self.facts = AlertFacts()
        self.seq = 0
        self.alerts: list[AlertRaised | AlertCleared] = []

    def add(self, payload: Payload, at_ms: int) -> None:
        self.seq += 1
        event = Event(self.seq, f"e{self.seq}", at_ms, True, Origin.FEEDER, payload)
        self.facts.apply(event)

    def step(self, now_ms: int, *, synced: bool = True, failing: bool = False, oldest=None):
        want = desired(
            self.facts,
            RULES,
            LONDON,
            now_ms,
            clock_synced=synced,
            journal_failing=failing,
            oldest_unsent_ms=oldest or {},
        )
        for payload in transitions(self.facts.active, want):
            self.alerts.append(payload)
            self.add(payload, now_ms)

    def kinds(self, cls: type) -> list[AlertKind]:
        return [a.kind for a in self.alerts if isinstance(a, cls)]


T0 = meal_instant(date(2026, 6, 1), time(6, 0), LONDON)


@given(st.lists(st.integers(0, 100), min_size=1, max_size=60))
def test_food_low_never_flaps(levels):
    ledger = Ledger()
    for i, level in enumerate(levels):
        before = len(ledger.alerts)
        ledger.add(FoodLevelChanged(level), T0 + i)
        ledger.step(T0 + i)
        new = ledger.alerts[before:]
        # A raise needs a level below the threshold; a clear needs one past the margin.
        for alert in new:
            if isinstance(alert, AlertRaised):
                assert level < 20
            else:
                assert level >= 25
    kinds = [type(a) for a in ledger.alerts]
    assert kinds == [AlertRaised, AlertCleared] * (len(kinds) // 2) + [AlertRaised] * (
        len(kinds) % 2
    )


def test_food_low_raised_once_and_cleared_only_past_the_margin():
    ledger = Ledger()
    for level in (30, 19, 15, 21, 24, 19, 25, 30):
        ledger.add(FoodLevelChanged(level), T0)
        ledger.step(T0)
    assert ledger.kinds(AlertRaised) == [AlertKind.FOOD_LOW]
    assert ledger.kinds(AlertCleared) == [AlertKind.FOOD_LOW]


def test_feeder_offline_after_n_minutes_cleared_online():
    ledger = Ledger()
    ledger.add(FeederOffline(), T0)
    ledger.step(T0 + 9 * MINUTE)
    assert ledger.alerts == []
    ledger.step(T0 + 10 * MINUTE)
    ledger.step(T0 + 20 * MINUTE)
    assert ledger.kinds(AlertRaised) == [AlertKind.FEEDER_OFFLINE]
    ledger.add(FeederOnline(), T0 + 21 * MINUTE)
    ledger.step(T0 + 21 * MINUTE)
    assert ledger.kinds(AlertCleared) == [AlertKind.FEEDER_OFFLINE]


def test_unconfirmed_until_the_next_dispensed():
    ledger = Ledger()
    ledger.add(FeedUnconfirmed("r1", (Bowl.LEFT,), 60_000), T0)
    ledger.step(T0)
    ledger.add(FeedUnconfirmed("r2", (Bowl.LEFT,), 60_000), T0)
    ledger.step(T0)
    ledger.add(FeedDispensed("r3", (Bowl.LEFT,), 1000), T0)
    ledger.step(T0)
    assert ledger.kinds(AlertRaised) == [AlertKind.FEED_UNCONFIRMED]
    assert ledger.kinds(AlertCleared) == [AlertKind.FEED_UNCONFIRMED]


def test_not_fed_by_deadline_then_fed_then_a_new_day():
    ledger = Ledger()
    deadline = meal_instant(date(2026, 6, 1), time(8, 0), LONDON)
    ledger.step(deadline - 1)
    assert ledger.alerts == []
    ledger.step(deadline)
    assert ledger.alerts == [AlertRaised(AlertKind.NOT_FED, "left", "left bowl not fed by 08:00")]
    ledger.add(FeedDispensed("r", (Bowl.LEFT,), 1000), deadline + MINUTE)
    ledger.step(deadline + MINUTE)
    assert ledger.kinds(AlertCleared) == [AlertKind.NOT_FED]
    ledger.step(deadline + 2 * MINUTE)  # fed today: stays clear
    assert len(ledger.alerts) == 2


def test_unsynced_clock_changes_no_clock_rule():
    ledger = Ledger()
    deadline = meal_instant(date(2026, 6, 1), time(8, 0), LONDON)
    ledger.step(deadline + MINUTE, synced=False)
    assert ledger.alerts == []


def test_journal_failing_and_sink_backlog():
    ledger = Ledger()
    ledger.step(T0, failing=True, oldest={"eventbridge": T0 - 31 * MINUTE})
    assert sorted(ledger.kinds(AlertRaised)) == sorted(
        [AlertKind.JOURNAL_FAILING, AlertKind.SINK_BACKLOG]
    )
    # Draining: 20 min old is still above half the threshold: no clear yet (no flapping).
    ledger.step(T0, oldest={"eventbridge": T0 - 20 * MINUTE})
    assert ledger.kinds(AlertCleared) == [AlertKind.JOURNAL_FAILING]
    ledger.step(T0, oldest={"eventbridge": None})
    assert ledger.kinds(AlertCleared) == [AlertKind.JOURNAL_FAILING, AlertKind.SINK_BACKLOG]


def test_an_alert_goes_to_eventbridge_like_any_event():
    event = Event(7, "e7", T0, True, Origin.GATEWAY, AlertRaised(AlertKind.FOOD_LOW, "", "low"))
    entry = build_entry(event, EntrySpec("feedmyfurbabies", "com.feedmyfurbabies", "gw"))
    assert entry.request["DetailType"] == "Alert Raised"
    detail = json.loads(entry.request["Detail"])
    assert detail["kind"] == "food-low"
    assert detail["seq"] == 7
