"""The one door into the journal: every input becomes exactly one event here.

A feed command (a click, ``fmfb feed``, later a cloud command) is decided by the pure policy
against state folded from the journal, and the outcome — one FeedRequested or one FeedRejected —
is appended. Deciding, applying the outcome to the state and queueing the append happen in one
synchronous step on the event loop, with no ``await`` in between: so decisions are serialised
without a lock, in the same order as their seqs, and the next decision already sees this one
even before it is durable.

Callers then await the append: it resolves when the event is committed and fsynced — or, if the
disk refuses it, when it is held in memory (feeding never waits on the disk).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from gateway.clock import Clock
from gateway.config import FeedingConfig
from gateway.events import (
    Bowl,
    ClickType,
    Event,
    FeedRequested,
    NewEvent,
    Origin,
    Payload,
)
from gateway.journal import Journal, new_event_id
from gateway.policy import Limits, decide
from gateway.state import GatewayState

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FeedCommand:
    """What an input asks for, before the policy has seen it."""

    bowls: tuple[Bowl, ...]
    origin: Origin
    button: str | None = None
    click_type: ClickType | None = None
    request_id: str | None = None  # a cloud command's own id; else the new event's id
    portion_ms: int | None = None
    expires_at_ms: int | None = None


class Intake:
    def __init__(
        self,
        journal: Journal,
        state: GatewayState,
        limits: Limits,
        feeding: FeedingConfig,
        clock: Clock,
    ) -> None:
        self.journal = journal
        self.state = state
        self.limits = limits
        self.feeding = feeding
        self.clock = clock

    # --- feed requests ---------------------------------------------------------------------

    def request_feed_nowait(self, command: FeedCommand) -> asyncio.Future[Event]:
        """Decide and queue in one step (see the module docstring for why it must not await)."""
        now = self.clock.now_ms()
        event_id = new_event_id()
        request = FeedRequested(
            request_id=command.request_id or event_id,
            bowls=command.bowls,
            portion_ms=command.portion_ms or self.feeding.portion_ms,
            expires_at_ms=command.expires_at_ms or now + self.feeding.expiry_s * 1000,
            origin=command.origin,
            button=command.button,
            click_type=command.click_type,
        )
        outcome = decide(request, self.state, self.limits, now)
        if outcome is not request:
            log.info(
                "feed refused (%s): %s from %s",
                getattr(outcome, "reason", "?"),
                "+".join(request.bowls),
                command.button or command.origin,
            )
        return self._append(outcome, command.origin, now, event_id)

    async def request_feed(self, command: FeedCommand) -> Event:
        return await self.request_feed_nowait(command)

    def click_nowait(self, button: str, click: ClickType) -> asyncio.Future[Event]:
        """A button's click: its bowls come from the configured mapping."""
        return self.request_feed_nowait(
            FeedCommand(
                bowls=self.feeding.bowls_for(click),
                origin=Origin.BUTTON,
                button=button,
                click_type=click,
            )
        )

    # --- everything else -------------------------------------------------------------------

    def record_nowait(self, payload: Payload, origin: Origin) -> asyncio.Future[Event]:
        """Journal something that happened (a feeder report, a lifecycle event)."""
        now = self.clock.now_ms()
        return self._append(payload, origin, now, new_event_id())

    async def record(self, payload: Payload, origin: Origin) -> Event:
        return await self.record_nowait(payload, origin)

    def _append(
        self, payload: Payload, origin: Origin, now_ms: int, event_id: str
    ) -> asyncio.Future[Event]:
        new = NewEvent(
            event_id=event_id,
            occurred_at_ms=now_ms,
            clock_synced=self.clock.synced(),
            origin=origin,
            payload=payload,
        )
        future = self.journal.append_nowait(new)
        self.state.apply(payload, at_ms=now_ms)
        return future


def fold_recent_state(journal: Journal, window_ms: int, now_ms: int) -> GatewayState:
    """Rebuild the working state from the journal's recent window plus the feeder's last
    reports (indexed lookups), so start-up does not read the whole ledger."""
    from gateway.events import EventType  # noqa: PLC0415 - only needed at start-up

    state = GatewayState(window_ms)
    level = journal.last_of_types([EventType.FOOD_LEVEL_CHANGED])
    if level is not None:
        state.apply_event(level)
    availability = journal.last_of_types([EventType.FEEDER_ONLINE, EventType.FEEDER_OFFLINE])
    if availability is not None:
        state.apply_event(availability)
    for event in journal.recent(since_ms=now_ms - window_ms):
        state.apply_event(event)
    return state
