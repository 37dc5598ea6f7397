"""The follower: everything a sink does that is not delivering (docs/architecture.md, "Sinks").

A sink owns a cursor in the journal — the highest seq it has finished with: delivered,
deliberately passed over (not one of its event types) or dead-lettered. It reads ``seq >
cursor`` in order, finishes each event, and only then moves the cursor. So delivery is at least
once and in order, and a sink that cannot deliver stays where it is: offline is the normal
case, not an error path.

:class:`Follower` is that part, once for every sink: the cursor (registered at the beginning
or the tail the first time), reading in order (durable events only, unless the sink must act
on held ones too), the type filter, moving over a finished prefix (also when acknowledgements
come out of order), dead letters, the link state with its outage back-off and log lines, the
counters and the typed :class:`~gateway.status.SinkStatus`.

:func:`follow` is the loop for a sink that delivers a batch at a time and is told how much of
it was accepted (the JSONL file, the local feeder). The cloud sinks, which pipeline their
deliveries, drive a follower's pieces themselves.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from gateway.backoff import Backoff
from gateway.config import SinkSettings
from gateway.events import Event, EventDeadLettered, EventType, Origin
from gateway.sinks.base import SinkContext
from gateway.status import SinkStatus
from gateway.stored_event import StoredEvent

log = logging.getLogger(__name__)

MAX_ERROR_CHARS = 500


def short_error(text: str) -> str:
    """One line, at most MAX_ERROR_CHARS: for the status line, the log and dead letters."""
    text = " ".join(text.split())
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of a batch handed to a sink's ``deliver``.

    The first ``accepted`` events were taken. If that is not all of them, ``error`` says why
    the next one was not; ``permanent`` means that event can never be delivered (it is
    dead-lettered and passed over), otherwise the link is down and the sink waits it out.
    """

    accepted: int
    error: str | None = None
    permanent: bool = False


Deliver = Callable[[Sequence[Event]], Awaitable[Outcome]]


class Follower:
    def __init__(
        self,
        name: str,
        settings: SinkSettings,
        context: SinkContext,
        *,
        save_every_s: float = 0.0,
        durable_only: bool = True,
    ) -> None:
        """``name`` is the cursor's name in the journal: stable across versions.

        ``save_every_s``: while a backlog drains, the cursor is written at most this often
        (0: on every move); it is always written when the sink catches up, fails or stops.
        After a crash it may be a little behind what was delivered (a few events are sent
        again), never ahead.

        ``durable_only``: send only committed events. The cloud copies carry the chain hash,
        which a held event (the disk refusing writes) does not have yet; the feeder must not
        wait for the disk, so it reads held events too.
        """
        self.name = name
        self.settings = settings
        self.journal = journal = context.journal
        self.intake = context.intake
        self.clock = context.clock
        self.durable_only = durable_only
        self.save_every_s = save_every_s
        self.event_types: frozenset[EventType] | None = (
            None if settings.event_types is None else frozenset(settings.event_types)
        )
        start_at = 0 if settings.start == "beginning" else journal.visible_seq
        self.cursor = journal.register_cursor(name, start_at=start_at)
        self._saved_cursor = self.cursor
        self._saved_at_ms = 0
        self._done: set[int] = set()  # finished seqs above the cursor, not yet contiguous
        self.backoff = Backoff(settings.retry_min_s, settings.retry_max_s)
        self.connected = False
        self.last_error: str | None = None
        self._failing_since_ms: int | None = None
        self._failed_attempts = 0
        self.delivered = 0
        self.dead_lettered = 0
        self.passed_over = 0
        self.last_success_ms: int | None = None

    # --- reading ---------------------------------------------------------------------------

    def wants(self, event: Event) -> bool:
        return self.event_types is None or event.type in self.event_types

    @property
    def readable_seq(self) -> int:
        """The last seq this sink may read now."""
        return self.journal.durable_seq if self.durable_only else self.journal.visible_seq

    def read(self, after: int, limit: int, *, upto: int | None = None) -> list[Event]:
        """Up to ``limit`` readable events after ``after`` (and up to ``upto``), in order."""
        bound = self.readable_seq if upto is None else min(upto, self.readable_seq)
        if after >= bound:
            return []
        return self.journal.read_visible(after, limit, upto=bound)

    def read_stored(self, after: int, limit: int, *, upto: int | None = None) -> list[StoredEvent]:
        """:meth:`read`, undecoded (for a sink that copies events out as stored): durable
        events only, whatever ``durable_only`` says, since only those have a stored form."""
        return self.journal.read_stored(after, limit, upto=upto)

    async def wait_beyond(self, seq: int) -> None:
        """Until an event after ``seq`` is readable."""
        if self.durable_only:
            await self.journal.wait_durable(seq + 1)
        else:
            await self.journal.wait_beyond(seq)

    async def next_batch(self, limit: int) -> list[Event]:
        """The next readable events after the cursor, waiting for one if there are none."""
        while True:
            events = self.read(self.cursor, limit)
            if events:
                return events
            self.save()  # caught up: the cursor goes to disk now, not in save_every_s
            await self.wait_beyond(self.cursor)

    # --- moving the cursor -----------------------------------------------------------------

    def advance(self, seq: int) -> None:
        """Everything up to ``seq`` is finished."""
        if seq <= self.cursor:
            return
        self.cursor = seq
        self._done = {s for s in self._done if s > seq}
        self._maybe_save()

    def finish(self, seq: int) -> None:
        """``seq`` alone is finished: the cursor moves over the contiguous prefix only (an
        acknowledgement for 7 while 6 is still out must not move it past 6, or a crash would
        lose 6)."""
        if seq <= self.cursor:
            return
        self._done.add(seq)
        moved = self.cursor
        while moved + 1 in self._done:
            self._done.remove(moved + 1)
            moved += 1
        if moved > self.cursor:
            self.cursor = moved
            self._maybe_save()

    def finished(self, seq: int) -> bool:
        return seq <= self.cursor or seq in self._done

    def _maybe_save(self) -> None:
        if self.clock.monotonic_ms() - self._saved_at_ms >= self.save_every_s * 1000:
            self.save()

    def save(self) -> None:
        if self.cursor > self._saved_cursor:
            self.journal.save_cursor(self.name, self.cursor)
            self._saved_cursor = self.cursor
            self._saved_at_ms = self.clock.monotonic_ms()

    # --- outcomes --------------------------------------------------------------------------

    def succeeded(self, delivered: int = 1) -> None:
        """The other side took ``delivered`` events: the link works."""
        self.delivered += delivered
        self.last_success_ms = self.clock.now_ms()
        self.link_up()

    def dead_letter_nowait(self, event: Event, error: str) -> None:
        """Give up on an event that can never be delivered, so one bad event cannot stop the
        rest: recorded against this sink (written before or with the cursor that passes it)
        and journaled as EventDeadLettered, then finished."""
        error = short_error(error)
        log.error(
            "%s: giving up on seq %d (%s, event %s): %s",
            self.name,
            event.seq,
            event.type.value,
            event.event_id,
            error,
        )
        self.journal.add_dead_letter(self.name, event.seq, error)
        self.dead_lettered += 1
        # The ledger says so — except about a notice that could not be sent either, which
        # would only make another one like it.
        payload = event.payload
        if not (isinstance(payload, EventDeadLettered) and payload.sink == self.name):
            self.intake.record_nowait(
                EventDeadLettered(self.name, event.seq, event.event_id, error), Origin.GATEWAY
            )
        self.finish(event.seq)

    # --- the link --------------------------------------------------------------------------

    def link_up(self) -> None:
        if self._failing_since_ms is not None:
            log.warning(
                "%s reachable again after %.1f s (%d failed attempts); sending the backlog of %d",
                self.name,
                (self.clock.monotonic_ms() - self._failing_since_ms) / 1000,
                self._failed_attempts,
                self.backlog,
            )
        self._failing_since_ms = None
        self._failed_attempts = 0
        self.connected = True
        self.last_error = None
        self.backoff.reset()

    def link_down(self, error: str, *, connected: bool = False) -> None:
        """A delivery failed: say why, once per outage at WARNING (then at DEBUG)."""
        self.connected = connected
        self.last_error = short_error(error)
        self._failed_attempts += 1
        if self._failing_since_ms is None:
            self._failing_since_ms = self.clock.monotonic_ms()
            log.warning(
                "%s: %s; %d event(s) wait in the journal, retrying with back-off",
                self.name,
                self.last_error,
                self.backlog,
            )
        else:
            log.debug("%s still failing (%s); backlog %d", self.name, self.last_error, self.backlog)

    def retry_delay(self, backoff: Backoff | None = None) -> float:
        """How long to wait before the next attempt (the settings' back-off by default)."""
        return (backoff or self.backoff).next_delay()

    # --- status ----------------------------------------------------------------------------

    @property
    def backlog(self) -> int:
        return max(0, self.journal.visible_seq - self.cursor)

    def status(self) -> SinkStatus:
        return SinkStatus(
            name=self.name,
            connected=self.connected,
            cursor=self.cursor,
            backlog=self.backlog,
            last_error=self.last_error,
            delivered=self.delivered,
            dead_lettered=self.dead_lettered,
            passed_over=self.passed_over,
            last_success_ms=self.last_success_ms,
        )


async def follow(follower: Follower, deliver: Deliver, *, batch: int = 100) -> None:
    """Deliver from the cursor forever: a batch of wanted events at a time, the cursor moved
    over what was accepted (and the passed-over events among them), a permanently refused
    event dead-lettered, a failure waited out with the follower's back-off.

    An exception from ``deliver`` propagates: a sink whose link has its own reconnect loop
    (the local feeder's MQTT session) lets it end the session.
    """
    while True:
        events = await follower.next_batch(batch)
        wanted = [e for e in events if follower.wants(e)]
        outcome = await deliver(wanted) if wanted else Outcome(0)
        if outcome.accepted:
            follower.succeeded(outcome.accepted)
        stuck = wanted[outcome.accepted] if outcome.accepted < len(wanted) else None
        through = events[-1].seq if stuck is None else stuck.seq - 1
        follower.passed_over += sum(1 for e in events if e.seq <= through and not follower.wants(e))
        follower.advance(through)
        if stuck is None:
            continue
        error = outcome.error or "not accepted"
        if outcome.permanent:
            follower.dead_letter_nowait(stuck, error)
            continue
        follower.save()
        follower.link_down(error)
        await asyncio.sleep(follower.retry_delay())
