"""A simulated cat feeder: the firmware's own logic on the host, against a real MQTT broker.

What it is and why it behaves as it does is in :mod:`gateway.devstack.feeder`'s docstring.
``python -m gateway.devstack.feeder_cli --host H --port P`` runs one for people.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.devstack.feeder import (
    DEFAULT_CLIENT_ID,
    DISCONNECT_WITH_WILL,
    FULL,
    START_TIMEOUT,
    STOP_TIMEOUT,
    FeederLogic,
    LogicOutcome,
    MotorRun,
    SimStats,
    SimTopics,
    Work,
    load_flash,
    message_id,
    save_flash,
    wall_clock_ms,
)

__all__ = ["FeederSim", "LogicOutcome", "MotorRun", "SimTopics"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class FeederSim:
    """A feeder on the broker at ``host:port``; see the module docstring.

    ``logic_config`` is the firmware's device configuration (limits, caps); ``memory_path`` is
    the simulated flash that keeps the dedupe memory across restarts (None: memory only in RAM).
    ``drop_acks`` makes it decide and run the motors but never acknowledge (the gateway then
    journals FeedUnconfirmed). ``clock_synced`` is what the logic is told about the clock.

    Use: ``start()`` / ``stop()`` (or ``with``), ``go_offline()`` / ``go_online()``, the
    ``drop_acks`` and ``clock_synced`` switches, ``refill()``. Look: ``runs`` (finished
    :class:`MotorRun` s), ``runs_for(id)``, ``runs_per_bowl()``, ``current_run``,
    ``food_level``, ``received`` / ``received_ids`` (every action message that arrived),
    ``duplicates_refused``, ``refused``, ``ignored``, ``decisions``, ``acks_sent`` /
    ``acks_dropped``, ``online``, ``connects``, ``idle()``; ``wait_until(predicate)`` blocks
    until a predicate on these holds (keep predicates to the simulator's own state: they run
    under its lock). ``start()`` blocks until subscribed: from a coroutine, call it in a thread.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str = DEFAULT_CLIENT_ID,
        memory_path: Path | str | None = None,
        logic_config: Mapping[str, Any] | None = None,
        topics: SimTopics | None = None,
        time_scale: float = 0.001,
        food_per_motor_ms: float = 0.0005,
        food_level: float = FULL,
        clock_synced: bool = True,
        drop_acks: bool = False,
        session_expiry_s: int = 3600,
        keepalive_s: int = 5,
        now_ms: Callable[[], int] = wall_clock_ms,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        if time_scale < 0:
            raise ValueError("time_scale must not be negative")
        if food_per_motor_ms < 0:
            raise ValueError("food_per_motor_ms must not be negative")
        self.host = host
        self.port = port
        self.client_id = client_id
        self.topics = topics or SimTopics()
        self.memory_path = None if memory_path is None else Path(memory_path)
        self.time_scale = time_scale
        self.food_per_motor_ms = food_per_motor_ms
        self.session_expiry_s = session_expiry_s
        self.keepalive_s = keepalive_s
        self.now_ms = now_ms
        self._cond = threading.Condition(threading.RLock())
        self._clock_synced = clock_synced
        self._drop_acks = drop_acks
        self._food = max(0.0, min(float(FULL), float(food_level)))
        self._published_level: int | None = None
        self._runs: list[MotorRun] = []
        self._current_run: MotorRun | None = None
        self._stats = SimStats()
        self._online = False
        self._started = False
        self._work: queue.Queue[Work | None] = queue.Queue()
        self._pending = 0  # work queued and not yet finished
        self._worker: threading.Thread | None = None
        self.logic = FeederLogic(logic_config, load_flash(self.memory_path))

        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.will_set(self.topics.availability, b"offline", qos=1, retain=True)
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT, *, wait: bool = True) -> Self:
        """Connect (in the background, retrying) and, with ``wait``, return once subscribed."""
        with self._cond:
            if self._started:
                raise RuntimeError("feeder simulator already started")
            self._started = True
        self._worker = threading.Thread(target=self._work_loop, name="feeder-sim-motors")
        self._worker.daemon = True
        self._worker.start()
        self._connect(timeout, wait=wait)
        return self

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Finish the motor runs under way, then go away as a powered-off feeder does (the
        broker publishes the ``offline`` will). Safe to call twice.

        A message that arrives during the stop itself is decided and remembered but not run:
        the same as a feeder losing power just after deciding, which its memory then refuses
        to feed twice (the gateway journals it FeedUnconfirmed)."""
        with self._cond:
            if not self._started:
                return
            self._started = False
        self._work.put(None)
        if self._worker is not None:
            self._worker.join(timeout)
        self._disconnect_with_will()
        with self._cond:
            self._cond.notify_all()

    def go_offline(self) -> None:
        """Drop off the broker (the ``offline`` will fires); the session keeps queuing."""
        self._disconnect_with_will()

    def go_online(self, timeout: float = START_TIMEOUT, *, wait: bool = True) -> None:
        """Come back on the same persistent session: what was queued arrives."""
        self._connect(timeout, wait=wait)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _connect(self, timeout: float, *, wait: bool) -> None:
        with self._cond:
            subscribed = self._stats.subscribed
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = self.session_expiry_s
        self.client.connect_async(
            self.host,
            self.port,
            keepalive=self.keepalive_s,
            clean_start=False,
            properties=properties,
        )
        self.client.loop_start()
        if wait:
            self.wait_until(
                lambda: self._stats.subscribed > subscribed,
                timeout,
                what=f"feeder simulator {self.client_id} to connect and subscribe",
            )

    def _disconnect_with_will(self) -> None:
        reason = ReasonCode(PacketTypes.DISCONNECT, identifier=DISCONNECT_WITH_WILL)
        self.client.disconnect(reasoncode=reason)
        self.client.loop_stop()
        with self._cond:
            self._online = False
            self._cond.notify_all()

    # --- paho callbacks (its network thread) ---------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, _u: Any, _flags: Any, reason: ReasonCode, _p: Any
    ) -> None:
        if reason.is_failure:
            log.warning("feeder simulator: broker refused the connection: %s", reason)
            return
        client.publish(self.topics.availability, b"online", qos=1, retain=True)
        # Subscribe on every connect: cheap, and right even if the broker lost the session.
        client.subscribe([(self.topics.action, 1)])
        with self._cond:
            self._online = True
            self._stats.connects += 1
            self._published_level = None  # tell a (possibly new) gateway the level again
            self._cond.notify_all()
        self._publish_level()

    def _on_disconnect(
        self, _c: mqtt.Client, _u: Any, _flags: Any, reason: ReasonCode, _p: Any
    ) -> None:
        log.info("feeder simulator disconnected: %s", reason)
        with self._cond:
            self._online = False
            self._cond.notify_all()

    def _on_subscribe(
        self, _c: mqtt.Client, _u: Any, _mid: int, codes: list[ReasonCode], _p: Any
    ) -> None:
        if any(code.is_failure for code in codes):
            log.warning("feeder simulator: subscription refused: %s", codes)
            return
        with self._cond:
            self._stats.subscribed += 1
            self._cond.notify_all()

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic != self.topics.action:
            return
        payload = bytes(message.payload)
        with self._cond:
            synced = self._clock_synced
        try:
            outcome = self.logic.handle(payload, self.now_ms(), synced)
            if outcome.persist:
                # Remember before the PUBACK (sent when this callback returns): see the
                # module docstring.
                save_flash(self.memory_path, self.logic.memory_blob())
        except Exception:
            # The logic promises never to raise on a payload; if it does anyway, the simulator
            # says so and carries on, as the firmware's main loop would.
            log.exception("feeder logic failed on %r", payload[:200])
            with self._cond:
                self._note_received(payload, message.dup)
                self._stats.logic_errors += 1
                self._cond.notify_all()
            return
        with self._cond:
            self._note_received(payload, message.dup)
            self._stats.decisions.append(outcome)
            if outcome.status == "refused":
                self._stats.refused.append((outcome.request_id, outcome.reason or "refused"))
                if outcome.reason == "duplicate":
                    self._stats.duplicates_refused += 1
            elif outcome.status == "ignored":
                self._stats.ignored += 1
            if outcome.run is not None or outcome.ack is not None:
                self._pending += 1
            self._cond.notify_all()
        if outcome.run is not None or outcome.ack is not None:
            self._work.put(Work(run=outcome.run, ack=outcome.ack))

    def _note_received(self, payload: bytes, dup: bool) -> None:
        self._stats.received += 1
        self._stats.received_ids.append(message_id(payload))
        if dup:
            self._stats.redelivered += 1

    # --- motors and reports (worker thread) ----------------------------------------------------

    def _work_loop(self) -> None:
        while True:
            work = self._work.get()
            if work is None:
                return
            try:
                if work.run is not None:
                    self._run_motors(work.run)
                if work.ack is not None:
                    self._acknowledge(work.ack)
                if work.run is not None:
                    self._publish_level()
            except Exception:
                log.exception("feeder simulator: motor/report step failed")
            finally:
                with self._cond:
                    self._pending -= 1
                    self._cond.notify_all()

    def _run_motors(self, run: MotorRun) -> None:
        with self._cond:
            self._current_run = run
            self._cond.notify_all()
        real_s = run.ms * self.time_scale / 1000
        if real_s > 0:
            time.sleep(real_s)  # the motors turning, scaled
        with self._cond:
            self._current_run = None
            self._runs.append(run)
            drop = self.food_per_motor_ms * run.ms * len(run.bowls)
            self._food = max(0.0, self._food - drop)
            self._cond.notify_all()
        log.info("motors ran: %s for %d ms (request %s)", run.bowls, run.ms, run.request_id)

    def _acknowledge(self, ack: bytes) -> None:
        with self._cond:
            dropping = self._drop_acks
            (self._stats.acks_dropped if dropping else self._stats.acks_sent).append(ack)
            self._cond.notify_all()
        if not dropping:
            self.client.publish(self.topics.dispensed, ack, qos=1)

    def _publish_level(self) -> None:
        with self._cond:
            level = self.food_level
            if level == self._published_level or not self._online:
                return
            self._published_level = level
        self.client.publish(self.topics.states, self.logic.states_payload(level), qos=1)

    # --- what tests and the demo look at -------------------------------------------------------

    @property
    def runs(self) -> list[MotorRun]:
        with self._cond:
            return list(self._runs)

    def runs_for(self, request_id: str) -> list[MotorRun]:
        with self._cond:
            return [r for r in self._runs if r.request_id == request_id]

    def runs_per_bowl(self) -> dict[str, int]:
        """Finished motor runs per bowl."""
        counts: dict[str, int] = {}
        with self._cond:
            for run in self._runs:
                for bowl in run.bowls:
                    counts[bowl] = counts.get(bowl, 0) + 1
        return counts

    @property
    def current_run(self) -> MotorRun | None:
        """The run whose motors are turning right now, if any (it is in ``runs`` once done)."""
        with self._cond:
            return self._current_run

    @property
    def food_level(self) -> int:
        """The level as reported: whole percent, rounded down."""
        with self._cond:
            return int(self._food)

    def refill(self, level: int = FULL) -> None:
        with self._cond:
            self._food = float(max(0, min(FULL, level)))
            self._cond.notify_all()
        self._publish_level()

    @property
    def received(self) -> int:
        """Action messages that reached the simulator (duplicates and garbage included)."""
        with self._cond:
            return self._stats.received

    @property
    def received_ids(self) -> list[str | None]:
        """The ``id`` of each action message received, in order (None: no readable id)."""
        with self._cond:
            return list(self._stats.received_ids)

    @property
    def redelivered(self) -> int:
        """Messages the broker flagged as redeliveries (DUP)."""
        with self._cond:
            return self._stats.redelivered

    @property
    def duplicates_refused(self) -> int:
        with self._cond:
            return self._stats.duplicates_refused

    @property
    def refused(self) -> list[tuple[str | None, str]]:
        """(request id, reason) for each refusal the logic decided."""
        with self._cond:
            return list(self._stats.refused)

    @property
    def acks_sent(self) -> list[dict[str, Any]]:
        with self._cond:
            return [json.loads(a) for a in self._stats.acks_sent]

    @property
    def acks_dropped(self) -> list[dict[str, Any]]:
        with self._cond:
            return [json.loads(a) for a in self._stats.acks_dropped]

    @property
    def ignored(self) -> int:
        """Messages the logic ignored: malformed, with no id to answer to."""
        with self._cond:
            return self._stats.ignored

    @property
    def decisions(self) -> list[LogicOutcome]:
        """Every decision the logic made, in order."""
        with self._cond:
            return list(self._stats.decisions)

    @property
    def logic_errors(self) -> int:
        with self._cond:
            return self._stats.logic_errors

    @property
    def connects(self) -> int:
        with self._cond:
            return self._stats.connects

    @property
    def online(self) -> bool:
        with self._cond:
            return self._online

    @property
    def drop_acks(self) -> bool:
        with self._cond:
            return self._drop_acks

    @drop_acks.setter
    def drop_acks(self, value: bool) -> None:
        with self._cond:
            self._drop_acks = value

    @property
    def clock_synced(self) -> bool:
        with self._cond:
            return self._clock_synced

    @clock_synced.setter
    def clock_synced(self, value: bool) -> None:
        with self._cond:
            self._clock_synced = value

    def idle(self) -> bool:
        """True when no received message is still waiting for its motors or acknowledgement."""
        with self._cond:
            return self._pending == 0

    def wait_until(
        self, predicate: Callable[[], T], timeout: float = START_TIMEOUT, what: str = "condition"
    ) -> T:
        """Block until ``predicate()`` is truthy (re-checked on every change); return it.

        AssertionError naming ``what`` on timeout.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                result = predicate()
                if result:
                    return result
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}")
                self._cond.wait(min(left, 0.25))

    def __repr__(self) -> str:
        state = "online" if self.online else "offline"
        return f"FeederSim({self.client_id}@{self.host}:{self.port}, {state})"
