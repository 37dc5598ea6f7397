"""The pure schedule: due meals, catch-up and missed, skip and pause, and DST (hypothesis).

The property: a gateway that wakes up at arbitrary moments — often, rarely, across any DST
change in several zones — feeds each (schedule, local date) exactly once, never before its
instant, and at the configured local time unless that time did not exist that day.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from gateway.events import Bowl, FeedRejected, FeedRequested, MealSkipped, Origin, SchedulePaused
from gateway.schedule import (
    Meal,
    MealPlan,
    ScheduleMemory,
    Verdict,
    due_meals,
    meal_instant,
    meal_to_skip,
    to_ms,
    upcoming,
)

LONDON = ZoneInfo("Europe/London")
ZONES = [
    "Europe/London",
    "America/New_York",
    "Australia/Sydney",
    "America/Santiago",
    "Pacific/Chatham",
    "Asia/Kolkata",
    "Australia/Lord_Howe",  # a half-hour DST change
]
HOUR = 3_600_000
DAY = 24 * HOUR
CATCH_UP = 30 * 60_000


def handled(memory: ScheduleMemory, meal: Meal, verdict: Verdict) -> None:
    """Journal a handled meal the way the input does (folded into the memory)."""
    fields = {
        "request_id": meal.request_id,
        "bowls": meal.bowls,
        "portion_ms": 1,
        "expires_at_ms": meal.at_ms + 1,
        "origin": Origin.SCHEDULE,
        "schedule": meal.schedule,
        "meal_at_ms": meal.at_ms,
    }
    if verdict is Verdict.FEED:
        memory.apply(FeedRequested(**fields))
    else:
        memory.apply(FeedRejected(**fields, reason=verdict.value))


def plan(at: time, days: frozenset[int] = frozenset(range(7))) -> MealPlan:
    return MealPlan("dinner", at, (Bowl.LEFT,), days)


@given(
    zone=st.sampled_from(ZONES),
    at=st.builds(time, st.integers(0, 23), st.integers(0, 59)),  # config: HH:MM
    start=st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2027, 12, 1)),
    steps=st.lists(st.integers(min_value=1, max_value=CATCH_UP), min_size=1, max_size=120),
    stride=st.sampled_from([60_000, 20 * 60_000, HOUR, 6 * HOUR]),
)
def test_each_local_day_is_fed_exactly_once_across_dst(zone, at, start, steps, stride):
    tz = ZoneInfo(zone)
    now = to_ms(start.replace(tzinfo=UTC))
    since = now
    memory = ScheduleMemory()
    fed: list[tuple[Meal, int]] = []
    # Wake-ups closer together than the catch-up window: nothing may be missed.
    for step in steps:
        now += min(step * (stride // 60_000), CATCH_UP)
        for meal, verdict in due_meals(
            [plan(at)], tz, memory, now, catch_up_ms=CATCH_UP, since_ms=since
        ):
            assert verdict is Verdict.FEED
            assert meal.at_ms <= now
            handled(memory, meal, verdict)
            fed.append((meal, now))
    days = [m.day for m, _ in fed]
    assert len(days) == len(set(days)), "a local date was fed twice"
    instants = [m.at_ms for m, _ in fed]
    assert instants == sorted(instants)
    # No day lost: every local date whose meal fell in (since, now] was fed.
    expected = set()
    day = datetime.fromtimestamp(since / 1000, tz).date() - timedelta(days=1)
    while meal_instant(day, at, tz) <= now:
        if meal_instant(day, at, tz) > since:
            expected.add(day)
        day += timedelta(days=1)
    assert set(days) == expected
    for meal, _ in fed:
        local = datetime.fromtimestamp(meal.at_ms / 1000, tz)
        wanted = datetime.combine(meal.day, at)
        # The configured time, or (when it did not exist that day) shortly after it.
        shift = local.replace(tzinfo=None) - wanted
        assert timedelta(0) <= shift <= timedelta(hours=1), (meal, local)


def test_spring_forward_gap_fires_once_an_hour_late():
    # 2026-03-29 01:00 GMT -> 02:00 BST: 01:30 never happens in London that day.
    meal_day = date(2026, 3, 29)
    at_ms = meal_instant(meal_day, time(1, 30), LONDON)
    assert datetime.fromtimestamp(at_ms / 1000, LONDON).strftime("%H:%M %Z") == "02:30 BST"
    before = meal_instant(meal_day - timedelta(days=1), time(1, 30), LONDON)
    due = due_meals(
        [plan(time(1, 30))],
        LONDON,
        ScheduleMemory(),
        at_ms + 10 * HOUR,
        catch_up_ms=11 * HOUR,
        since_ms=before,
    )
    assert [m.day for m, _ in due] == [meal_day]


def test_autumn_repeated_hour_fires_once_at_the_first():
    # 2026-10-25 02:00 BST -> 01:00 GMT: 01:30 happens twice; the first (BST) is the meal.
    meal_day = date(2026, 10, 25)
    at_ms = meal_instant(meal_day, time(1, 30), LONDON)
    assert datetime.fromtimestamp(at_ms / 1000, LONDON).strftime("%H:%M %Z") == "01:30 BST"
    memory = ScheduleMemory()
    first = due_meals(
        [plan(time(1, 30))], LONDON, memory, at_ms, catch_up_ms=CATCH_UP, since_ms=at_ms - 1
    )
    assert len(first) == 1
    handled(memory, *first[0])
    # An hour later the wall clock reads 01:30 again: nothing is due.
    assert (
        due_meals(
            [plan(time(1, 30))], LONDON, memory, at_ms + HOUR, catch_up_ms=CATCH_UP, since_ms=0
        )
        == []
    )


def test_catch_up_window_then_missed():
    at_ms = meal_instant(date(2026, 6, 1), time(7, 0), LONDON)
    dinner = plan(time(7, 0))
    memory = ScheduleMemory()
    handled(memory, Meal("dinner", date(2026, 5, 31), at_ms - DAY, (Bowl.LEFT,)), Verdict.FEED)
    inside = due_meals([dinner], LONDON, memory, at_ms + CATCH_UP, catch_up_ms=CATCH_UP, since_ms=0)
    assert [v for _, v in inside] == [Verdict.FEED]
    # The Pi was off for three days: two meals missed, today's within the window is fed.
    late = due_meals(
        [dinner], LONDON, memory, at_ms + 2 * DAY + 60_000, catch_up_ms=CATCH_UP, since_ms=0
    )
    assert [v for _, v in late] == [Verdict.MISSED, Verdict.MISSED, Verdict.FEED]


def test_skip_next_skips_one_meal_and_asked_twice_the_one_after():
    dinner = plan(time(18, 0))
    now = meal_instant(date(2026, 6, 1), time(12, 0), LONDON)
    memory = ScheduleMemory()
    first = meal_to_skip([dinner], LONDON, memory, now)
    assert first is not None and first.day == date(2026, 6, 1)
    memory.apply(MealSkipped(first.schedule, first.at_ms))
    second = meal_to_skip([dinner], LONDON, memory, now)
    assert second is not None and second.day == date(2026, 6, 2)
    due = due_meals([dinner], LONDON, memory, first.at_ms, catch_up_ms=CATCH_UP, since_ms=now)
    assert due == [(first, Verdict.SKIPPED)]
    nxt = upcoming([dinner], LONDON, memory, now)
    assert nxt is not None and nxt.day == date(2026, 6, 2)  # the skipped one is not "next"


def test_pause_rejects_meals_until_it_ends():
    dinner = plan(time(18, 0))
    now = meal_instant(date(2026, 6, 1), time(12, 0), LONDON)
    memory = ScheduleMemory()
    memory.apply(SchedulePaused(until_ms=now + 2 * DAY))
    due = due_meals([dinner], LONDON, memory, now + DAY + 7 * HOUR, catch_up_ms=DAY, since_ms=now)
    assert [v for _, v in due] == [Verdict.PAUSED, Verdict.PAUSED]
    nxt = upcoming([dinner], LONDON, memory, now)
    assert nxt is not None and nxt.day == date(2026, 6, 3)


def test_days_of_the_week():
    weekends = MealPlan("brunch", time(10, 0), (Bowl.RIGHT,), frozenset({5, 6}))
    monday = meal_instant(date(2026, 6, 1), time(0, 0), LONDON)
    nxt = upcoming([weekends], LONDON, ScheduleMemory(), monday)
    assert nxt is not None and nxt.day == date(2026, 6, 6)
