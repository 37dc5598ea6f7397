"""The alert watch: folds the journal into :class:`~gateway.alerts.AlertFacts` as it grows,
asks :func:`~gateway.alerts.desired` what should be active, and journals the difference as
``AlertRaised`` / ``AlertCleared`` through the intake (docs/architecture.md, "Alerts").

It has the input's shape (``open``, ``run``, ``close``, ``status``): what it journals is
something it noticed, like a press. Being events, alerts then reach every sink: EventBridge
sends them (the cloud routes them to email or a phone), Home Assistant's publisher shows them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import time
from zoneinfo import ZoneInfo

from gateway.alerts import AlertFacts, AlertRules, desired, transitions
from gateway.clock import Clock
from gateway.events import AlertRaised, Bowl, Event, EventType, Origin
from gateway.home_config import AlertsConfig, parse_hhmm
from gateway.intake import Intake
from gateway.journal import EventFilter, JournalReader
from gateway.status import InputStatus

log = logging.getLogger(__name__)

READ_BATCH = 1000
ALERT_TYPES = frozenset({EventType.ALERT_RAISED, EventType.ALERT_CLEARED})


def rules_of(settings: AlertsConfig) -> AlertRules:
    by: dict[Bowl, time] = {n.bowl: parse_hhmm(n.by) for n in settings.not_fed_by}
    return AlertRules(
        food_low_percent=settings.food_low_percent,
        food_clear_margin=settings.food_clear_margin,
        feeder_offline_ms=settings.feeder_offline_min * 60_000,
        sink_backlog_ms=settings.sink_backlog_min * 60_000,
        not_fed_by=by,
    )


class AlertWatch:
    name = "alerts"

    def __init__(
        self,
        settings: AlertsConfig,
        zone: ZoneInfo,
        intake: Intake,
        clock: Clock,
        *,
        history: Iterable[Event],
        journal_failing: Callable[[], bool],
        oldest_unsent_ms: Callable[[], Mapping[str, int | None]],
    ) -> None:
        """``history``: events to fold before watching (the daemon passes the open alerts'
        history and the feeder's last reports); the watch then reads what comes after."""
        self.rules = rules_of(settings)
        self.every_s = settings.check_every_s
        self.zone = zone
        self.intake = intake
        self.clock = clock
        self.facts = AlertFacts.fold(history)
        self.facts.seq = max(self.facts.seq, intake.journal.visible_seq)
        self.journal_failing = journal_failing
        self.oldest_unsent_ms = oldest_unsent_ms
        self.raised = 0

    async def open(self) -> None:
        pass

    async def run(self) -> None:
        journal = self.intake.journal
        while True:
            self.check()
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
            # lands as the journal wakes it, and the daemon would never stop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.every_s):
                    await journal.wait_beyond(self.facts.seq)

    async def close(self) -> None:
        pass

    def status(self) -> InputStatus:
        open_alerts = ", ".join(f"{k}{':' + s if s else ''}" for k, s in sorted(self.facts.active))
        return InputStatus(
            self.name, None, received=self.raised, detail=open_alerts or "no open alerts"
        )

    def check(self) -> list[asyncio.Future[Event]]:
        """Fold what is new, then journal the alerts that change (one step, no await)."""
        journal = self.intake.journal
        while True:
            events = journal.read_visible(self.facts.seq, READ_BATCH)
            for event in events:
                # This watch is the only source of alert events and applies its own at once;
                # reading them back could reopen one cleared in the same commit window.
                if event.type not in ALERT_TYPES:
                    self.facts.apply(event)
                self.facts.seq = event.seq
            if len(events) < READ_BATCH:
                break
        want = desired(
            self.facts,
            self.rules,
            self.zone,
            self.clock.now_ms(),
            clock_synced=self.clock.synced(),
            journal_failing=self.journal_failing(),
            oldest_unsent_ms=self.oldest_unsent_ms(),
        )
        futures = []
        for payload in transitions(self.facts.active, want):
            if isinstance(payload, AlertRaised):
                self.raised += 1
                self.facts.active[(payload.kind, payload.subject)] = payload.message
                log.warning("alert: %s %s", payload.kind.value, payload.message)
            else:
                self.facts.active.pop((payload.kind, payload.subject), None)
                log.info("alert cleared: %s %s", payload.kind.value, payload.subject)
            futures.append(self.intake.record_nowait(payload, Origin.GATEWAY))
        return futures


HOME_MEMORY_MS = 2 * 86_400_000


def home_history(journal: JournalReader, now_ms: int) -> list[Event]:
    """What a restart must fold to know the home's state, in seq order: every alert event,
    the feeder's last reports and last feed outcome, and the last two days (feeds today)."""
    found: dict[int, Event] = {}
    for types in (
        [EventType.FOOD_LEVEL_CHANGED],
        [EventType.FEEDER_ONLINE, EventType.FEEDER_OFFLINE],
        [EventType.FEED_UNCONFIRMED, EventType.FEED_DISPENSED],
    ):
        last = journal.last_of_types(types)
        if last is not None:
            found[last.seq] = last
    alerts = EventFilter(types=tuple(t.value for t in ALERT_TYPES))
    for event in journal.query(alerts):
        found[event.seq] = event
    for event in journal.recent(since_ms=now_ms - HOME_MEMORY_MS):
        found[event.seq] = event
    return [found[seq] for seq in sorted(found)]
