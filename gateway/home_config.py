"""The config sections of the smart-home features: ``[scheduling]``, ``[[schedule]]``,
``[home_assistant]`` and ``[alerts]`` (fields of :class:`gateway.config.Config`).

Apart from ``gateway/config.py`` to keep each module one job; the same rules hold: every key
has a default, an unknown key or a wrong type is an error that names it.
"""

from __future__ import annotations

import re
from datetime import time
from typing import Annotated, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

from gateway.events import Bowl, canonical_bowls
from gateway.schedule import DAY_NAMES, MealPlan

_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


def parse_hhmm(value: str) -> time:
    match = _HHMM.match(value)
    if match is None:
        raise ValueError(f"{value!r}: a time of day as HH:MM (24-hour), e.g. 07:30")
    return time(int(match[1]), int(match[2]))


DayName = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class ScheduleConfig(_Section):
    """One meal a day at ``at`` (local time in ``scheduling.time_zone``) on ``days``."""

    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
    at: str
    days: list[DayName] = Field(default_factory=lambda: list(DAY_NAMES))  # type: ignore[arg-type]
    bowls: list[Bowl]
    portion_ms: Annotated[int, Field(strict=True, gt=0, le=120_000)] | None = None

    @field_validator("at")
    @classmethod
    def _at(cls, v: str) -> str:
        parse_hhmm(v)
        return v

    @field_validator("bowls", "days")
    @classmethod
    def _distinct(cls, v: list[str]) -> list[str]:
        if not v or len(set(v)) != len(v):
            raise ValueError("a non-empty list without repeats")
        return v

    def plan(self) -> MealPlan:
        return MealPlan(
            name=self.name,
            at=parse_hhmm(self.at),
            bowls=canonical_bowls(self.bowls),
            days=frozenset(DAY_NAMES.index(d) for d in self.days),
            portion_ms=self.portion_ms,
        )


class SchedulingConfig(_Section):
    # An IANA zone (zoneinfo: the system's tz database, Debian's tzdata package).
    time_zone: str = "UTC"
    # A meal whose time passed while the Pi was off or its clock unsynchronised is still fed
    # within this long after its time; later, it is journaled FeedRejected "missed".
    catch_up_s: Annotated[int, Field(strict=True, ge=0, le=43_200)] = 1800
    # How often the schedule looks at the clock (it also wakes for each meal's instant).
    poll_s: Annotated[float, Field(strict=True, gt=0, le=60, allow_inf_nan=False)] = 1.0

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"{v!r} is not an IANA time zone this system knows (e.g. Europe/London; "
                "install the tzdata package)"
            ) from None
        return v

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)


class HomeAssistantConfig(_Section):
    """Home Assistant over the local broker: discovery, state, commands. Off by default."""

    enabled: StrictBool = False
    discovery_prefix: str = "homeassistant"
    status_topic: str = "homeassistant/status"  # where HA says "online" after it restarts
    # Our own topics ("{gateway_id}" is replaced): state, commands, availability, alerts.
    base_topic: str = "fmfb/{gateway_id}"
    # How often the derived numbers that change without an event (backlog, "feeds today" at
    # midnight) are refreshed.
    refresh_s: Annotated[float, Field(strict=True, gt=0, le=3600, allow_inf_nan=False)] = 30.0


class NotFedByConfig(_Section):
    """Raise ``not-fed`` if ``bowl`` has had no dispensed feed today by ``by`` (local)."""

    bowl: Bowl
    by: str

    @field_validator("by")
    @classmethod
    def _by(cls, v: str) -> str:
        parse_hhmm(v)
        return v


class AlertsConfig(_Section):
    """Alerts are journaled events (AlertRaised / AlertCleared): each raised once, cleared
    once. The margins keep a value hovering at a threshold from raising and clearing again."""

    enabled: StrictBool = True
    food_low_percent: Annotated[int, Field(strict=True, ge=0, le=100)] = 20
    food_clear_margin: Annotated[int, Field(strict=True, ge=0, le=50)] = 5
    feeder_offline_min: Annotated[int, Field(strict=True, ge=0, le=10_080)] = 10
    sink_backlog_min: Annotated[int, Field(strict=True, gt=0, le=10_080)] = 30
    not_fed_by: list[NotFedByConfig] = Field(default_factory=list)
    check_every_s: Annotated[float, Field(strict=True, gt=0, le=600, allow_inf_nan=False)] = 5.0

    @model_validator(mode="after")
    def _one_deadline_per_bowl(self) -> Self:
        bowls = [n.bowl for n in self.not_fed_by]
        if len(set(bowls)) != len(bowls):
            raise ValueError("not_fed_by: one deadline per bowl")
        return self


def unique_schedule_names(schedules: list[ScheduleConfig]) -> list[ScheduleConfig]:
    names = [s.name for s in schedules]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"schedule names must be unique; repeated: {', '.join(dupes)}")
    return schedules
