"""The daemon: builds the parts from config and runs one named task per concern.

Start-up order matters and is the whole of this module's logic:

1. open the journal (O(1): schema and chain tail), setting a damaged one aside if need be;
2. register the sinks' cursors, then fold the recent window into the working state;
3. journal ``GatewayStarted``; start the sinks and inputs; tell systemd READY;
4. on SIGTERM/SIGINT: stop taking input, journal ``GatewayStopped``, let the writer commit
   everything queued (cursors included), and exit 0.

The parts hold the behaviour; this file only wires them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway import __version__, redact
from gateway.alert_watch import AlertWatch, home_history
from gateway.clock import Clock, SteadyClock, SystemClock
from gateway.config import Config
from gateway.control import ControlServer
from gateway.counters import InputCounters
from gateway.echo import EchoLedger
from gateway.events import EventType, GatewayStarted, GatewayStopped, Origin
from gateway.inputs.base import Input
from gateway.inputs.gpio_buttons import GpioButtons
from gateway.inputs.mqtt_buttons import MqttButtons
from gateway.inputs.schedule import ScheduleInput
from gateway.intake import Intake, fold_startup_state, rebuild_echoes
from gateway.journal import Journal
from gateway.latency import CommitTimes
from gateway.notify import Notifier
from gateway.policy import Limits
from gateway.sinks.base import Sink, SinkContext
from gateway.sinks.registry import build_sinks
from gateway.status import FeederStatus, GatewayStatus, JournalStatus, SinkStatus

if TYPE_CHECKING:
    from gateway.metrics_export import MetricsExporter

log = logging.getLogger("gateway.daemon")

STATUS_EVERY_S = 5.0
SCHEDULE_MEMORY_MS = 8 * 86_400_000
CLOUD_SINKS = frozenset({"eventbridge", "iot-core"})  # whose backlog age raises an alert


class Daemon:
    def __init__(
        self, config: Config, *, clock: Clock | None = None, pin_factory: Any = None
    ) -> None:
        """``pin_factory``: a gpiozero pin factory to use instead of ``buttons.pin_factory``
        (an embedding program such as the demo passes a MockFactory and drives its pins)."""
        self.config = config
        self.pin_factory = pin_factory
        self.clock = clock or SystemClock()
        self.counters = InputCounters()
        self.notifier = Notifier()
        self.stopping = asyncio.Event()
        self.journal: Journal | None = None
        self.intake: Intake | None = None
        self.sinks: list[Sink] = []
        self.inputs: list[Input] = []
        self.ready = asyncio.Event()
        self.commit_times = CommitTimes()
        self.metrics: MetricsExporter | None = None

    # --- wiring ----------------------------------------------------------------------------

    def _build(self) -> None:
        cfg = self.config
        for notice in cfg.deprecated:
            log.warning("%s", notice)
        policy = cfg.policy
        limits = Limits(
            cap_per_bowl=policy.cap_per_bowl,
            cap_period_ms=policy.cap_period_s * 1000,
            min_gap_ms=policy.min_gap_s * 1000,
        )
        # The fold must remember every feed any rule can still look at; opening checks every
        # row of that window (and echoes'), so nothing read below can trip on a damaged row.
        window_ms = max(limits.cap_period_ms, limits.min_gap_ms, cfg.feeding.expiry_s * 1000)
        window_ms += 60_000
        checked_ms = max(window_ms, cfg.cloud.echo_window_s * 1000)
        journal = Journal.open_or_set_aside(
            cfg.journal_file, clock=self.clock, window_ms=checked_ms
        )
        journal.on_commit = self.commit_times.observe
        journal.start()
        self.journal = journal
        # Everything after this measures time on a clock that never goes back, not even below
        # the journal's newest event (docs/architecture.md, "Time").
        self.clock = SteadyClock(self.clock, floor_ms=self._newest_time(journal))
        now = self.clock.now_ms()
        state = fold_startup_state(*journal.startup_events(), window_ms=window_ms, now_ms=now)
        echoes = EchoLedger(cfg.cloud.echo_window_s * 1000)
        intake = Intake(journal, state, limits, cfg.feeding, self.clock, echoes=echoes)
        self.intake = intake
        context = SinkContext(cfg, journal, intake, self.clock, self.counters)
        self.sinks = build_sinks(context)
        if cfg.home_assistant.enabled:
            # Home Assistant's modules load only when it is on (one switch, not a sink section).
            from gateway.sinks.home_assistant import HomeAssistantPublisher  # noqa: PLC0415

            self.sinks.append(HomeAssistantPublisher(context))
        # Presses already sent to EventBridge may still echo back after a restart.
        rebuild_echoes(journal.reader, echoes, now_ms=now)
        self.inputs = self._inputs(intake)

    @staticmethod
    def _newest_time(journal: Journal) -> int:
        """The newest journaled event's recorded time (0 if none can be read)."""
        try:
            tail = journal.reader.get(journal.reader.last_seq())
        except sqlite3.Error:
            return 0  # a disk that refuses reads too: the wall clock alone, as before
        return 0 if tail is None else tail.occurred_at_ms

    def _inputs(self, intake: Intake) -> list[Input]:
        cfg = self.config
        inputs: list[Input] = []
        if cfg.buttons.gpio:
            inputs.append(
                GpioButtons(
                    cfg.buttons.gpio,
                    cfg.classifier,
                    intake,
                    self.pin_factory or cfg.buttons.pin_factory,
                )
            )
        if cfg.buttons.mqtt:
            inputs.append(
                MqttButtons(
                    cfg.buttons.mqtt,
                    cfg.broker,
                    f"fmfb-{cfg.gateway_id}-buttons",
                    intake,
                    self.counters,
                )
            )
        schedule = self._schedule(intake)
        if schedule is not None:
            inputs.append(schedule)
        if cfg.alerts.enabled:
            journal = intake.journal
            inputs.append(
                AlertWatch(
                    cfg.alerts,
                    cfg.scheduling.zone,
                    intake,
                    self.clock,
                    history=home_history(journal.reader, self.clock.now_ms()),
                    journal_failing=lambda: journal.health.failing,
                    oldest_unsent_ms=self._oldest_unsent_ms,
                )
            )
        if cfg.home_assistant.enabled:
            from gateway.ha_discovery import HomeTopics  # noqa: PLC0415 - see _build
            from gateway.inputs.home_assistant import HomeAssistantCommands  # noqa: PLC0415

            ha = cfg.home_assistant
            inputs.append(
                HomeAssistantCommands(
                    HomeTopics.of(ha.base_topic, cfg.gateway_id, cfg.topics.availability),
                    cfg.broker,
                    f"fmfb-{cfg.gateway_id}-ha-commands",
                    intake,
                    self.counters,
                    schedule=schedule,
                )
            )
        names = {b.name for b in cfg.buttons.gpio} | {b.name for b in cfg.buttons.mqtt}
        inputs.append(
            ControlServer(
                cfg.control_path, intake, names, self.status, self.counters, schedule=schedule
            )
        )
        return inputs

    def _schedule(self, intake: Intake) -> ScheduleInput | None:
        cfg = self.config
        if not cfg.schedule:
            return None
        journal = intake.journal
        # What a restart must remember: meals handled and skips of the last week, and the
        # last pause (which may be older).
        history = [e for e in [journal.reader.last_of_types([EventType.SCHEDULE_PAUSED])] if e]
        history += journal.reader.recent(since_ms=self.clock.now_ms() - SCHEDULE_MEMORY_MS)
        plans = [s.plan() for s in cfg.schedule]
        return ScheduleInput(plans, cfg.scheduling, intake, self.clock, history)

    def _oldest_unsent_ms(self) -> dict[str, int | None]:
        """Per cloud sink, when its oldest unsent event happened (None: nothing waits)."""
        journal = self.journal
        out: dict[str, int | None] = {}
        for sink in self.sinks:
            if journal is None or sink.name not in CLOUD_SINKS:
                continue
            cursor = sink.status().cursor
            oldest = journal.reader.get(cursor + 1) if cursor < journal.durable_seq else None
            out[sink.name] = None if oldest is None else oldest.occurred_at_ms
        return out

    # --- running ---------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        self._build()
        assert self.journal is not None
        assert self.intake is not None
        synced = self.clock.synced()
        started = await self.intake.record(
            GatewayStarted(__version__, synced, self.config.gateway_id), Origin.GATEWAY
        )
        log.info(
            "gateway %s started (journal %s, seq %d, clock %s)",
            __version__,
            self.journal.path,
            started.seq,
            "synchronised" if synced else "NOT synchronised",
        )
        try:
            for part in self.inputs:
                await part.open()
            async with asyncio.TaskGroup() as tasks:
                spawned = [
                    tasks.create_task(sink.run(), name=f"sink:{sink.name}") for sink in self.sinks
                ]
                spawned += [
                    tasks.create_task(part.run(), name=f"input:{part.name}") for part in self.inputs
                ]
                spawned.append(tasks.create_task(self._status_loop(), name="status"))
                metrics = self.config.metrics
                if metrics.port is not None or metrics.textfile is not None:
                    spawned.append(tasks.create_task(self._metrics(), name="metrics"))
                watchdog = self.notifier.watchdog_interval_s()
                if watchdog is not None:
                    spawned.append(
                        tasks.create_task(self._watchdog_loop(watchdog), name="watchdog")
                    )
                self.notifier.ready(self.status_line())
                self.ready.set()
                await self.stopping.wait()
                await self._close_inputs()
                for task in spawned:
                    task.cancel()
        finally:
            await self._shutdown()
        return 0

    async def _close_inputs(self) -> None:
        for part in self.inputs:
            try:
                await part.close()
            except Exception:  # one input failing to close must not keep the rest open
                log.exception("closing %s failed", part.name)

    def stop(self) -> None:
        """Ask the daemon to stop as on SIGTERM (``run()`` then returns 0)."""
        self.stopping.set()

    def _on_signal(self, sig: signal.Signals) -> None:
        if not self.stopping.is_set():
            log.info("%s: stopping", sig.name)
            self.notifier.stopping()
        self.stopping.set()

    async def _shutdown(self) -> None:
        await self._close_inputs()
        if self.intake is not None and self.journal is not None:
            # "error": a task died and took the daemon down (systemd will restart it).
            reason = "signal" if self.stopping.is_set() else "error"
            self.intake.flush_summary()  # presses counted in the last window are not lost
            stopped = self.intake.record_nowait(
                GatewayStopped(__version__, self.clock.synced(), reason), Origin.GATEWAY
            )
            await self.journal.aclose()  # commits everything queued, cursors included
            if stopped.done() and not stopped.result().held:
                log.info("gateway stopped cleanly at seq %d", stopped.result().seq)

    async def _metrics(self) -> None:
        # Imported here: prometheus_client loads only when metrics are configured.
        from gateway.metrics_export import MetricsExporter  # noqa: PLC0415

        self.metrics = MetricsExporter(self.config.metrics, self.status)
        await self.metrics.run()

    async def _status_loop(self) -> None:
        last = ""
        while True:
            line = self.status_line()
            if line != last:
                self.notifier.status(line)
                last = line
            await asyncio.sleep(STATUS_EVERY_S)

    async def _watchdog_loop(self, interval_s: float) -> None:
        # Pinged from the loop itself: a loop stuck in a blocking call stops the pings.
        while True:
            self.notifier.watchdog()
            await asyncio.sleep(interval_s)

    # --- status ----------------------------------------------------------------------------

    def status(self) -> GatewayStatus:
        journal = self.journal
        state = self.intake.state if self.intake else None
        counts, commit_s = self.commit_times.snapshot()
        policy = self.config.policy
        now = self.clock.now_ms()
        return GatewayStatus(
            version=__version__,
            gateway_id=self.config.gateway_id,
            pid=os.getpid(),
            journal=JournalStatus(
                path=str(journal.path) if journal else None,
                seq=journal.visible_seq if journal else 0,
                durable_seq=journal.durable_seq if journal else 0,
                disk_failing=journal.health.failing if journal else False,
                held=journal.health.held if journal else 0,
                last_error=journal.health.last_error if journal else None,
                spilled=journal.health.spilled if journal else 0,
                alert=journal.health.alert if journal else None,
                size_bytes=_size_on_disk(journal.path) if journal else 0,
                commit_counts=counts,
                commit_seconds=commit_s,
            ),
            feeder=FeederStatus(
                online=state.feeder_online if state else None,
                food_level=state.food_level if state else None,
                feeds_in_period={
                    bowl.value: sum(1 for t in times if now - policy.cap_period_s * 1000 < t)
                    for bowl, times in state.feeds.items()
                }
                if state
                else {},
                cap_per_bowl=policy.cap_per_bowl,
                cap_period_s=policy.cap_period_s,
            ),
            sinks=tuple(self._with_oldest(s.status()) for s in self.sinks),
            inputs=tuple(part.status() for part in self.inputs),
            bad_inputs=dict(self.counters.counts),
        )

    def _with_oldest(self, status: SinkStatus) -> SinkStatus:
        """The sink's status with the recorded time of the first event it has not finished
        (one primary-key read; none when there is no backlog or it is held in memory)."""
        if self.journal is None or status.backlog <= 0:
            return status
        try:
            first = self.journal.reader.get(status.cursor + 1)
        except sqlite3.Error:
            return status  # a failing disk must not take the status down with it
        if first is None:
            return status
        return dataclasses.replace(status, oldest_pending_ms=first.occurred_at_ms)

    def status_line(self) -> str:
        """One line for systemd's STATUS: what a person checking `systemctl status` needs."""
        journal = self.journal
        parts: list[str] = []
        if journal is not None:
            health = journal.health
            if health.alert:
                parts.append(f"JOURNAL ALERT: {health.alert}")
            if health.failing:
                parts.append(
                    f"JOURNAL FAILING ({health.held} held, {health.spilled} spilled): "
                    f"{health.last_error}"
                )
            parts.append(f"seq {journal.visible_seq}")
        for sink in self.sinks:
            st = sink.status()
            link = "online" if st.connected else "OFFLINE"
            parts.append(f"{st.name} {link} backlog {st.backlog}")
        state = self.intake.state if self.intake else None
        if state is not None and state.feeder_online is not None:
            level = "" if state.food_level is None else f" food {state.food_level}%"
            parts.append(f"feeder {'online' if state.feeder_online else 'offline'}{level}")
        if any(isinstance(p, ScheduleInput) and p.waiting_for_clock for p in self.inputs):
            parts.append("CLOCK NOT SYNCHRONISED: meals wait")
        bad = self.counters.total_bad
        if bad:
            parts.append(f"{bad} bad inputs")
        return " · ".join(parts)


def _size_on_disk(path: Path) -> int:
    """The journal's bytes: the database and its write-ahead log."""
    total = 0
    for suffix in ("", "-wal"):
        with contextlib.suppress(OSError):
            total += Path(f"{path}{suffix}").stat().st_size
    return total


def configure_logging(level: str) -> None:
    # stderr, no timestamps: journald adds its own, and a line per event is enough.
    logging.basicConfig(
        level=level,
        format="%(levelname)s %(name)s: %(message)s",
    )
    # At every level, DEBUG included (botocore's request headers): no secret is written.
    redact.install()


async def run_daemon(config: Config) -> int:
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    daemon = Daemon(config)
    with contextlib.suppress(asyncio.CancelledError):
        return await daemon.run()
    return 0
