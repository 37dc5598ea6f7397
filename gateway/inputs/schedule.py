"""Meal schedules as an input: a due meal becomes a FeedCommand with origin ``schedule``,
through the intake and its policy like any press (docs/architecture.md, "Schedules").

Offline by design: it needs the local clock and the journal, nothing else. The decisions are
:mod:`gateway.schedule`'s (pure); this loop only asks them at the right moments and journals
each due meal exactly once — fed, or rejected ``missed``, ``skipped`` or ``paused``.

**A Pi without a real-time clock** boots at a wrong time until NTP answers. Firing meals from
that clock could feed at 3 am or not at all, so nothing is decided while the clock is not
synchronised: the status says so, and once it is, meals that fell in the meantime are fed
within the catch-up window or journaled ``missed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence
from datetime import datetime

from gateway.clock import Clock
from gateway.errors import ScheduleError
from gateway.events import Event, MealSkipped, Origin, RejectReason, SchedulePaused
from gateway.home_config import SchedulingConfig
from gateway.intake import FeedCommand, Intake
from gateway.schedule import Meal, MealPlan, ScheduleMemory, Verdict, due_meals, upcoming
from gateway.status import InputStatus

log = logging.getLogger(__name__)

WAITING_FOR_CLOCK = "clock not synchronised: meals wait for it (no real-time clock)"


class ScheduleInput:
    name = "schedule"

    def __init__(
        self,
        plans: Sequence[MealPlan],
        settings: SchedulingConfig,
        intake: Intake,
        clock: Clock,
        history: Iterable[Event] = (),
    ) -> None:
        """``history``: the journal's recent events (meals handled, skips, the last pause),
        folded so a restart neither repeats nor forgets a meal."""
        self.plans = list(plans)
        self.zone = settings.zone
        self.catch_up_ms = settings.catch_up_s * 1000
        self.poll_s = settings.poll_s
        self.intake = intake
        self.clock = clock
        self.memory = ScheduleMemory.fold(history)
        self._since_ms: int | None = None  # set when the clock is first trusted
        self._started_mono_ms = clock.monotonic_ms()
        self._wake = asyncio.Event()
        self.waiting_for_clock = False
        self.fired = 0
        self.ticks = 0  # looks at the clock so far (tests wait on it to see "nothing fired")

    # --- the input protocol ----------------------------------------------------------------

    async def open(self) -> None:
        pass

    async def run(self) -> None:
        while True:
            self.tick()
            self._wake.clear()
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._sleep_s()):
                    await self._wake.wait()

    async def close(self) -> None:
        pass

    def status(self) -> InputStatus:
        if self.waiting_for_clock:
            detail = WAITING_FOR_CLOCK
        else:
            meal = self.next_meal()
            detail = "no meal scheduled" if meal is None else self._next_text(meal)
        return InputStatus(self.name, None, received=self.fired, detail=detail)

    def _next_text(self, meal: Meal) -> str:
        local = datetime.fromtimestamp(meal.at_ms / 1000, self.zone)
        return f"next meal {meal.schedule} at {local:%Y-%m-%d %H:%M %Z}"

    # --- deciding ----------------------------------------------------------------------------

    def tick(self) -> list[asyncio.Future[Event]]:
        """Journal every meal that is due now (one step, no await: see the intake)."""
        self.ticks += 1
        if not self.clock.synced():
            if not self.waiting_for_clock:
                log.warning("schedule: %s", WAITING_FOR_CLOCK)
            self.waiting_for_clock = True
            return []
        if self.waiting_for_clock:
            log.info("schedule: the clock is synchronised; meals run")
        self.waiting_for_clock = False
        now = self.clock.now_ms()
        if self._since_ms is None:
            # A schedule with no meal in the journal starts when this gateway started, in
            # trusted time (the monotonic clock says how long ago, whatever the wall clock
            # said then), less the catch-up window: a meal that fell while the clock was
            # unsynchronised is then fed late or journaled missed, never silently dropped.
            started = now - (self.clock.monotonic_ms() - self._started_mono_ms)
            self._since_ms = started - self.catch_up_ms
        due = due_meals(
            self.plans,
            self.zone,
            self.memory,
            now,
            catch_up_ms=self.catch_up_ms,
            since_ms=self._since_ms,
        )
        return [self._handle(meal, verdict) for meal, verdict in due]

    def _handle(self, meal: Meal, verdict: Verdict) -> asyncio.Future[Event]:
        command = FeedCommand(
            bowls=meal.bowls,
            origin=Origin.SCHEDULE,
            request_id=meal.request_id,
            portion_ms=meal.portion_ms,
            schedule=meal.schedule,
            meal_at_ms=meal.at_ms,
        )
        if verdict is Verdict.FEED:
            self.fired += 1
            log.info("schedule: %s is due, feeding %s", _describe(meal), "+".join(meal.bowls))
            future = self.intake.request_feed_nowait(command)
        else:
            log.warning("schedule: %s not fed (%s)", _describe(meal), verdict.value)
            future = self.intake.reject_nowait(command, RejectReason(verdict.value))
        # The memory moves now, with the append queued: the next tick must not see it again.
        self.memory.handled[meal.schedule] = max(
            meal.at_ms, self.memory.handled.get(meal.schedule, meal.at_ms)
        )
        self.memory.skips.discard((meal.schedule, meal.at_ms))
        return future

    def _sleep_s(self) -> float:
        meal = None if self.waiting_for_clock else self.next_meal()
        if meal is None:
            return self.poll_s
        until_s = (meal.at_ms - self.clock.now_ms()) / 1000
        return max(0.0, min(self.poll_s, until_s))

    # --- reading and changing ----------------------------------------------------------------

    def next_meal(self) -> Meal | None:
        if not self.clock.synced():
            return None
        return upcoming(self.plans, self.zone, self.memory, self.clock.now_ms())

    def skip_next(self, schedule: str | None, origin: Origin) -> asyncio.Future[Event]:
        """Journal ``MealSkipped`` for the next meal that would be fed."""
        self._check(schedule)
        meal = upcoming(self.plans, self.zone, self.memory, self.clock.now_ms(), schedule=schedule)
        if meal is None:
            raise ScheduleError("there is no upcoming meal to skip")
        payload = MealSkipped(meal.schedule, meal.at_ms)
        self.memory.apply(payload)
        log.info("schedule: %s will be skipped (asked by %s)", _describe(meal), origin.value)
        self._wake.set()
        return self.intake.record_nowait(payload, origin)

    def pause_until(self, until_ms: int, origin: Origin) -> asyncio.Future[Event]:
        """Journal ``SchedulePaused``: meals before ``until_ms`` are not fed (0 resumes)."""
        self._check(None)
        payload = SchedulePaused(until_ms=max(0, until_ms))
        self.memory.apply(payload)
        self._wake.set()
        return self.intake.record_nowait(payload, origin)

    def _check(self, schedule: str | None) -> None:
        if not self.clock.synced():
            raise ScheduleError(WAITING_FOR_CLOCK)
        if schedule is not None and schedule not in {p.name for p in self.plans}:
            known = ", ".join(p.name for p in self.plans) or "none configured"
            raise ScheduleError(f"no schedule {schedule!r} (known: {known})")


def _describe(meal: Meal) -> str:
    return f"{meal.schedule} of {meal.day.isoformat()}"
