"""Meal schedules, pure: which meals are due, which is next, what "skip next" skips.

Everything here is a function of the schedules, the time zone, what the journal remembers
(:class:`ScheduleMemory`, a fold) and ``now``: no clock, no I/O, so it is tested across DST
transitions with hypothesis (docs/architecture.md, "Schedules").

**A meal is a (schedule, local date)**: at most one per schedule per local day, whatever the
clocks do. Its instant is the local time of day on that date in the zone, resolved so that
every date has exactly one instant and later dates have later instants:

- a time that happens twice (the autumn change, 01:30 in London) is the first one: fed once;
- a time that never happens (the spring change, 01:30 in London) is shifted forward by the
  gap (02:30 BST): fed once, late rather than lost. ``zoneinfo`` does exactly this for
  ``fold=0``: the offset before the transition applies.

**Due meals.** Each schedule remembers the instant of the last meal it handled (fed or
rejected: every due meal is journaled exactly once). Meals after that and up to ``now`` are
due: fed if ``now`` is within the catch-up window after the meal, else rejected ``missed``
(the Pi was off, or its clock unsynchronised, too long); rejected ``skipped`` if "skip next"
named it, ``paused`` if it falls before the pause's end.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from gateway.events import (
    Bowl,
    Event,
    FeedRejected,
    FeedRequested,
    MealSkipped,
    Origin,
    Payload,
    SchedulePaused,
)

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
# Missed meals older than this are not journaled one by one (a Pi off for a month would
# otherwise write dozens of rejections); the next meal is fed as usual.
MAX_LOOKBACK_MS = 7 * 86_400_000
# How far ahead "next meal" looks past a pause (a schedule may run on one weekday only).
MAX_LOOKAHEAD_DAYS = 400


@dataclass(frozen=True, slots=True)
class MealPlan:
    """One ``[[schedule]]`` entry."""

    name: str
    at: time
    bowls: tuple[Bowl, ...]
    days: frozenset[int] = frozenset(range(7))  # Monday = 0
    portion_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Meal:
    schedule: str
    day: date  # the local date it belongs to
    at_ms: int
    bowls: tuple[Bowl, ...]
    portion_ms: int | None = None

    @property
    def request_id(self) -> str:
        # Deterministic: the policy's dedupe refuses a second request for the same meal, even
        # if something upstream went wrong and asked twice.
        return f"meal:{self.schedule}:{self.day.isoformat()}"


class Verdict(StrEnum):
    FEED = "feed"
    MISSED = "missed"
    SKIPPED = "skipped"
    PAUSED = "paused"


def to_ms(moment: datetime) -> int:
    return (moment - _EPOCH) // _MS


def local_date(ms: int, zone: ZoneInfo) -> date:
    return (_EPOCH + ms * _MS).astimezone(zone).date()


def meal_instant(day: date, at: time, zone: ZoneInfo) -> int:
    """The instant of ``at`` on ``day`` in ``zone`` (the module docstring says why fold=0)."""
    return to_ms(datetime.combine(day, at, tzinfo=zone).replace(fold=0))


def meals_between(plan: MealPlan, zone: ZoneInfo, after_ms: int, upto_ms: int) -> list[Meal]:
    """The plan's meals with ``after_ms < at_ms <= upto_ms``, in order."""
    if upto_ms <= after_ms:
        return []
    first = local_date(after_ms, zone) - timedelta(days=1)
    last = local_date(upto_ms, zone) + timedelta(days=1)
    meals = []
    day = first
    while day <= last:
        if day.weekday() in plan.days:
            at_ms = meal_instant(day, plan.at, zone)
            if after_ms < at_ms <= upto_ms:
                meals.append(Meal(plan.name, day, at_ms, plan.bowls, plan.portion_ms))
        day += timedelta(days=1)
    return meals


@dataclass
class ScheduleMemory:
    """What the journal says about schedules: folded from its events, in seq order."""

    handled: dict[str, int] = field(default_factory=dict)  # schedule -> last meal's at_ms
    skips: set[tuple[str, int]] = field(default_factory=set)  # (schedule, meal_at_ms)
    paused_until_ms: int = 0

    def apply(self, payload: Payload) -> None:
        match payload:
            case FeedRequested(origin=Origin.SCHEDULE) | FeedRejected(origin=Origin.SCHEDULE):
                if payload.schedule is not None and payload.meal_at_ms is not None:
                    last = self.handled.get(payload.schedule, payload.meal_at_ms)
                    self.handled[payload.schedule] = max(last, payload.meal_at_ms)
                    self.skips.discard((payload.schedule, payload.meal_at_ms))
            case MealSkipped():
                self.skips.add((payload.schedule, payload.meal_at_ms))
            case SchedulePaused():
                self.paused_until_ms = payload.until_ms
            case _:
                pass

    @classmethod
    def fold(cls, events: Iterable[Event]) -> ScheduleMemory:
        memory = cls()
        for event in events:
            memory.apply(event.payload)
        return memory


def verdict(meal: Meal, memory: ScheduleMemory, now_ms: int, catch_up_ms: int) -> Verdict:
    if (meal.schedule, meal.at_ms) in memory.skips:
        return Verdict.SKIPPED
    if meal.at_ms < memory.paused_until_ms:
        return Verdict.PAUSED
    if now_ms - meal.at_ms > catch_up_ms:
        return Verdict.MISSED
    return Verdict.FEED


def due_meals(
    plans: Sequence[MealPlan],
    zone: ZoneInfo,
    memory: ScheduleMemory,
    now_ms: int,
    *,
    catch_up_ms: int,
    since_ms: int,
) -> list[tuple[Meal, Verdict]]:
    """Every meal due by ``now_ms`` and not yet handled, oldest first, with what to do.

    ``since_ms``: where a schedule with no meal in the journal starts (the input passes the
    moment it first had a trusted clock, less the catch-up window).
    """
    floor = now_ms - MAX_LOOKBACK_MS
    found: list[tuple[Meal, Verdict]] = []
    for plan in plans:
        after = max(memory.handled.get(plan.name, since_ms), floor)
        for meal in meals_between(plan, zone, after, now_ms):
            found.append((meal, verdict(meal, memory, now_ms, catch_up_ms)))
    found.sort(key=lambda pair: (pair[0].at_ms, pair[0].schedule))
    return found


def upcoming(
    plans: Sequence[MealPlan],
    zone: ZoneInfo,
    memory: ScheduleMemory,
    now_ms: int,
    *,
    schedule: str | None = None,
    feeding_only: bool = True,
) -> Meal | None:
    """The first meal after ``now_ms`` (of ``schedule``, if named). ``feeding_only``: the
    first that will be fed (not skipped, not paused) — what "next meal" shows."""
    start = max(now_ms, memory.paused_until_ms - 1) if feeding_only else now_ms
    best: Meal | None = None
    for plan in plans:
        if schedule is not None and plan.name != schedule:
            continue
        after = max(start, memory.handled.get(plan.name, start))
        for horizon in (8, MAX_LOOKAHEAD_DAYS):  # a week ahead nearly always has it
            upto = after + horizon * 86_400_000
            meals = [
                m
                for m in meals_between(plan, zone, after, upto)
                if not feeding_only or verdict(m, memory, m.at_ms, 1) is Verdict.FEED
            ]
            if meals:
                if best is None or meals[0].at_ms < best.at_ms:
                    best = meals[0]
                break
    return best


def meal_to_skip(
    plans: Sequence[MealPlan],
    zone: ZoneInfo,
    memory: ScheduleMemory,
    now_ms: int,
    schedule: str | None = None,
) -> Meal | None:
    """What "skip next meal" skips: the next meal that would be fed (of ``schedule``, if named);
    asked twice, it skips the one after."""
    return upcoming(plans, zone, memory, now_ms, schedule=schedule, feeding_only=True)
