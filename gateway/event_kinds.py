"""The event model's vocabularies: event types, origins, bowls, clicks, reasons, alert kinds.

Kept apart from the payloads (``gateway.events``) so the payload modules (``events``,
``home_events``) can share them without importing each other. Everything here is
re-exported by ``gateway.events``: import it from there.
"""

from __future__ import annotations

from enum import StrEnum


class EventType(StrEnum):
    FEED_REQUESTED = "FeedRequested"
    FEED_REJECTED = "FeedRejected"
    FEED_DISPENSED = "FeedDispensed"
    FEED_UNCONFIRMED = "FeedUnconfirmed"
    FOOD_LEVEL_CHANGED = "FoodLevelChanged"
    FEEDER_ONLINE = "FeederOnline"
    FEEDER_OFFLINE = "FeederOffline"
    GATEWAY_STARTED = "GatewayStarted"
    GATEWAY_STOPPED = "GatewayStopped"
    EVENT_DEAD_LETTERED = "EventDeadLettered"
    MEAL_SKIPPED = "MealSkipped"
    SCHEDULE_PAUSED = "SchedulePaused"
    ALERT_RAISED = "AlertRaised"
    ALERT_CLEARED = "AlertCleared"

    @property
    def detail_type(self) -> str:
        """EventBridge detail-type: the same words, spaced ("Feed Requested")."""
        words: list[str] = []
        for ch in self.value:
            if ch.isupper() and words:
                words.append(" ")
            words.append(ch)
        return "".join(words)


class Origin(StrEnum):
    """Where an input came from."""

    BUTTON = "button"
    CLI = "cli"
    CLOUD = "cloud"
    SCHEDULE = "schedule"
    HOME_ASSISTANT = "home-assistant"
    FEEDER = "feeder"
    GATEWAY = "gateway"


REQUEST_ORIGINS = frozenset(
    {Origin.BUTTON, Origin.CLI, Origin.CLOUD, Origin.SCHEDULE, Origin.HOME_ASSISTANT}
)


class Bowl(StrEnum):
    LEFT = "left"
    RIGHT = "right"


class ClickType(StrEnum):
    SINGLE = "SINGLE"
    DOUBLE = "DOUBLE"
    LONG = "LONG"


class RejectReason(StrEnum):
    """Reasons the gateway gives; a feeder may give others (kept as free text)."""

    CAP = "cap"
    TOO_SOON = "too-soon"
    EXPIRED = "expired"
    ECHO = "echo"
    DUPLICATE = "duplicate"
    # A scheduled meal that was not fed: its time passed beyond the catch-up window while the
    # Pi was off or its clock unsynchronised, someone asked to skip it, or schedules were paused.
    MISSED = "missed"
    SKIPPED = "skipped"
    PAUSED = "paused"


class RefusedBy(StrEnum):
    GATEWAY = "gateway"
    FEEDER = "feeder"


class AlertKind(StrEnum):
    """What an AlertRaised / AlertCleared is about (docs/architecture.md, "Alerts")."""

    FOOD_LOW = "food-low"
    FEEDER_OFFLINE = "feeder-offline"
    FEED_UNCONFIRMED = "feed-unconfirmed"
    NOT_FED = "not-fed"  # subject: the bowl
    JOURNAL_FAILING = "journal-failing"
    SINK_BACKLOG = "sink-backlog"  # subject: the sink
