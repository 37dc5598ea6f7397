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
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.clock import Clock
from gateway.cloud_event import click_type_of
from gateway.config import FeedingConfig
from gateway.echo import EchoLedger
from gateway.events import (
    Bowl,
    ClickType,
    Event,
    FeedRejected,
    FeedRequested,
    InputsSuppressed,
    NewEvent,
    Origin,
    Payload,
    RefusedBy,
    RejectReason,
)
from gateway.flood import Suppressor
from gateway.journal import Journal, JournalReader, new_event_id
from gateway.policy import Limits, decide
from gateway.state import GatewayState
from gateway.wire import RemoteCommand

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
    schedule: str | None = None  # a scheduled meal's schedule and instant (gateway/schedule.py)
    meal_at_ms: int | None = None


class Intake:
    def __init__(
        self,
        journal: Journal,
        state: GatewayState,
        limits: Limits,
        feeding: FeedingConfig,
        clock: Clock,
        *,
        echoes: EchoLedger | None = None,
    ) -> None:
        self.journal = journal
        self.state = state
        self.limits = limits
        self.feeding = feeding
        self.clock = clock
        # "is not None", not "or": an empty ledger is falsy (it has a length), and the daemon's
        # own — with the configured window and the credits rebuilt at start-up — was replaced.
        self.echoes = echoes if echoes is not None else EchoLedger(window_ms=600_000)
        self.suppressor = Suppressor()
        self._summary: asyncio.TimerHandle | None = None

    # --- feed requests ---------------------------------------------------------------------

    def request_feed_nowait(self, command: FeedCommand) -> asyncio.Future[Event]:
        """Decide and queue in one step (see the module docstring for why it must not await)."""
        now = self.clock.now_ms()
        event_id = new_event_id()
        request = self._request(command, event_id, now)
        outcome = decide(request, self.state, self.limits, now)
        if outcome is not request:
            log.info(  # rate-limited by the suppressor for presses (see press_nowait)
                "feed refused (%s): %s from %s",
                getattr(outcome, "reason", "?"),
                "+".join(request.bowls),
                command.button or command.origin,
            )
        return self._append(outcome, command.origin, now, event_id)

    def _request(self, command: FeedCommand, event_id: str, now_ms: int) -> FeedRequested:
        return FeedRequested(
            request_id=command.request_id or event_id,
            bowls=command.bowls,
            portion_ms=command.portion_ms or self.feeding.portion_ms,
            expires_at_ms=command.expires_at_ms or now_ms + self.feeding.expiry_s * 1000,
            origin=command.origin,
            button=command.button,
            click_type=command.click_type,
            schedule=command.schedule,
            meal_at_ms=command.meal_at_ms,
        )

    def reject_nowait(self, command: FeedCommand, reason: RejectReason) -> asyncio.Future[Event]:
        """Journal a request the input itself refuses (a scheduled meal that was missed,
        skipped or paused): the same request fields as a feed, with the reason."""
        now = self.clock.now_ms()
        event_id = new_event_id()
        request = self._request(command, event_id, now)
        rejected = FeedRejected.of(request, reason.value, RefusedBy.GATEWAY)
        return self._append(rejected, command.origin, now, event_id)

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

    def press_nowait(self, button: str, click: ClickType) -> asyncio.Future[Event] | None:
        """A press from a button that nobody waits on (GPIO, MQTT): like :meth:`click_nowait`,
        but a press the policy refuses again within the suppressor's window is only counted
        (None), and the counts are journaled as one InputsSuppressed when the window ends. A
        stuck or flooding button then costs a row per window, not one per press; an accepted
        press is never suppressed."""
        bowls = self.feeding.bowls_for(click)
        probe = FeedRequested(
            request_id=new_event_id(),
            bowls=bowls,
            portion_ms=self.feeding.portion_ms,
            expires_at_ms=self.clock.now_ms() + self.feeding.expiry_s * 1000,
            origin=Origin.BUTTON,
            button=button,
            click_type=click,
        )
        outcome = decide(probe, self.state, self.limits, self.clock.now_ms())
        if isinstance(outcome, FeedRejected):
            key = f"button:{button}:{outcome.reason}"
            if not self.suppressor.admit(key, self.clock.monotonic_ms()):
                self._summary_later()
                return None
        return self.click_nowait(button, click)

    def _summary_later(self) -> None:
        if self._summary is None:
            delay_s = self.suppressor.window_ms / 1000
            self._summary = asyncio.get_running_loop().call_later(delay_s, self.flush_summary)

    def flush_summary(self) -> None:
        """Journal what the suppressor counted since the last summary (nothing if nothing)."""
        if self._summary is not None:
            self._summary.cancel()  # called early (at shutdown): the timer has nothing left
        self._summary = None
        counts = self.suppressor.take_counts()
        if counts:
            log.warning(
                "suppressed %d refused presses in %d s: %s",
                sum(counts.values()),
                self.suppressor.window_ms // 1000,
                counts,
            )
            self.record_nowait(
                InputsSuppressed(counts, self.suppressor.window_ms), Origin.GATEWAY
            ).add_done_callback(_consume)

    def remote_command_nowait(self, command: RemoteCommand) -> asyncio.Future[Event]:
        """A feed command from the cloud: an echo of our own press, or a real request.

        An echo (docs/architecture.md, "Cloud") is journaled as rejected with reason ``echo``
        and never fed; anything else goes through the same policy as a press, deduplicated by
        its id.
        """
        bowls = command.bowls or self.feeding.bowls_for(command.click)
        feed = FeedCommand(
            bowls=bowls,
            origin=Origin.CLOUD,
            click_type=command.click,
            request_id=command.request_id,
            portion_ms=command.portion_ms,
            expires_at_ms=command.expires_at_ms,
        )
        now = self.clock.now_ms()
        if (
            command.request_id is None
            and command.reported_ms is not None
            and self.echoes.take(command.click, command.reported_ms // 1000, now)
        ):
            event_id = new_event_id()
            request = self._request(feed, event_id, now)
            log.info(
                "cloud command %s at %d s is an echo of our own press",
                command.click,
                command.reported_ms // 1000,
            )
            rejected = FeedRejected.of(request, RejectReason.ECHO.value, RefusedBy.GATEWAY)
            return self._append(rejected, Origin.CLOUD, now, event_id)
        return self.request_feed_nowait(feed)

    def expect_echoes(self, seqs: Sequence[int]) -> int:
        """Leave an echo credit for each button event among ``seqs``: ``fmfb replay`` is about
        to send them to EventBridge, where a rule like the published one may turn each into a
        command. Returns how many credits were left."""
        now = self.clock.now_ms()
        left = 0
        for seq in seqs:
            event = self.journal.reader.get(seq)
            click = None if event is None else click_type_of(event)
            if event is not None and click is not None:
                self.echoes.forwarded(click, event.occurred_at_ms, now)
                left += 1
        return left

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


def _consume(future: asyncio.Future[Event]) -> None:
    """Nobody awaits a summary: its failure is logged, not left unretrieved."""
    if not future.cancelled() and future.exception() is not None:
        log.error("could not journal a summary: %s", future.exception())


def fold_startup_state(
    reports: Sequence[Event], events: Sequence[Event], *, window_ms: int, now_ms: int
) -> GatewayState:
    """The working state from what the journal checked at open (``Journal.startup_events``):
    the feeder's last reports, then the recent events in seq order — a set-aside
    predecessor's included, so a press inside the gap after a set-aside is still refused."""
    state = GatewayState(window_ms)
    for event in reports:
        state.apply_event(event)
    since = now_ms - window_ms
    for event in events:
        if event.occurred_at_ms >= since:
            state.apply_event(event)
    return state


def rebuild_echoes(journal: JournalReader, echoes: EchoLedger, *, now_ms: int) -> int:
    """Leave an echo credit for each button event within the echo window that may have reached
    EventBridge, so an echo arriving after a restart is still one. Returns how many.

    Not only those up to the EventBridge sink's saved cursor: a batch in flight when the
    gateway stopped was delivered but its cursor never saved, and its echo can arrive before
    the sink sends it again. Such an event gets a second credit when it is sent again — right,
    since EventBridge then has it twice and may echo twice.
    """
    left = 0
    for event in journal.recent(since_ms=now_ms - echoes.window_ms):
        click = click_type_of(event)
        if click is not None:
            echoes.forwarded(click, event.occurred_at_ms, now_ms)
            left += 1
    return left
