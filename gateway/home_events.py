"""Payloads of the smart-home events: schedule changes and alerts (docs/architecture.md,
"Schedules" and "Alerts").

- ``MealSkipped``: "skip next meal" was asked for; names the one meal it skips (its schedule
  and the instant it was due), so the decision is fixed when it is made, not when the meal
  comes. The meal itself is then journaled ``FeedRejected`` with reason ``skipped``.
- ``SchedulePaused``: every schedule is paused until ``until_ms`` (a time in the past, or 0,
  resumes them). Meals due while paused are journaled ``FeedRejected`` ``paused``.
- ``AlertRaised`` / ``AlertCleared``: an alert of a ``kind`` about a ``subject`` ("" when the
  kind has one subject only: the feeder, the journal) began or ended.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from gateway.event_kinds import AlertKind, EventType
from gateway.payload_fields import non_negative_int, optional, parse_enum, require


@dataclass(frozen=True, slots=True)
class MealSkipped:
    TYPE: ClassVar[EventType] = EventType.MEAL_SKIPPED
    schedule: str
    meal_at_ms: int

    def to_dict(self) -> dict[str, Any]:
        return {"schedule": self.schedule, "meal_at_ms": self.meal_at_ms}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            schedule=require(data, "schedule", str),
            meal_at_ms=non_negative_int(data, "meal_at_ms"),
        )


@dataclass(frozen=True, slots=True)
class SchedulePaused:
    TYPE: ClassVar[EventType] = EventType.SCHEDULE_PAUSED
    until_ms: int

    def to_dict(self) -> dict[str, Any]:
        return {"until_ms": self.until_ms}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls(until_ms=non_negative_int(data, "until_ms"))


@dataclass(frozen=True, slots=True)
class AlertRaised:
    TYPE: ClassVar[EventType] = EventType.ALERT_RAISED
    kind: AlertKind
    subject: str = ""
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "subject": self.subject, "message": self.message}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            kind=parse_enum(AlertKind, "kind", require(data, "kind", str)),
            subject=optional(data, "subject", str) or "",
            message=optional(data, "message", str) or "",
        )


@dataclass(frozen=True, slots=True)
class AlertCleared:
    TYPE: ClassVar[EventType] = EventType.ALERT_CLEARED
    kind: AlertKind
    subject: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "subject": self.subject}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            kind=parse_enum(AlertKind, "kind", require(data, "kind", str)),
            subject=optional(data, "subject", str) or "",
        )
