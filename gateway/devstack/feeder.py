"""A simulated cat feeder: the firmware's own logic on the host, against a real MQTT broker.

The feeder's decisions — decoding a ``cat-feeder/action`` message, refusing a served or expired
request, capping a portion, planning the motors — live in ``firmware/feeder_logic.py``, a module
with no hardware imports that the ESP32-C3 runs under MicroPython. This simulator runs that SAME
module under CPython and replaces only the hardware: the MQTT client is paho-mqtt (MQTT 5), the
motors are a list of recorded runs, the flash that holds the dedupe memory is a file, and the
food level is a number that drops as the motors turn. So what the tests and the demo see the
feeder do is what the firmware would decide.

It speaks docs/architecture.md's "Local MQTT topics" as the device does:

- a persistent session (fixed client id, ``clean_start=False``, a session expiry), so requests
  published while it was away are queued by the broker and arrive when it is back;
- a retained last will ``offline`` on ``cat-feeder/availability``, and a retained ``online``
  on every connect;
- ``cat-feeder/action`` subscribed at QoS 1; each message is handed to the logic;
- the acknowledgement (``served`` / ``refused`` with a reason) on ``cat-feeder/dispensed`` at
  QoS 1, and ``{"food_capacity": N}`` on ``cat-feeder/states`` whenever the level changes.

Why the dedupe memory is written before the PUBACK: paho acknowledges a QoS 1 message when
``on_message`` returns. The decision and the memory file are both done by then, so a broker that
redelivers (the PUBACK was lost, the simulator restarted) meets a memory that already holds the
id, and the request is refused as a duplicate instead of feeding twice. The motor run itself and
the acknowledgement happen on a worker thread, in order, so a long (unscaled) run never blocks
paho's network thread and its keepalive.

Motors take simulated time: a run of ``ms`` milliseconds sleeps ``ms * time_scale`` real
milliseconds (``time_scale=0.001`` by default: 10 s of motor take 10 ms). The food level drops
by ``food_per_motor_ms`` per millisecond per running motor, from 100, never below 0.

Thread safety: every public property and method may be called from any thread. ``wait_until``
blocks on a condition that is notified on every change, for tests and the demo.

The parts are here (the logic adapter, the values it records, the simulated flash); the
simulator itself is :class:`gateway.devstack.feeder_sim.FeederSim`.
"""

from __future__ import annotations

import importlib
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

DEFAULT_CLIENT_ID: Final = "cat-feeder-sim"
LOGIC_MODULE: Final = "firmware.feeder_logic"
START_TIMEOUT: Final = 10.0
STOP_TIMEOUT: Final = 10.0
FULL: Final = 100

# MQTT 5 DISCONNECT reason 0x04: "Disconnect with Will Message" — the broker publishes the
# will as if the connection had been lost, which is what a feeder losing power looks like.
DISCONNECT_WITH_WILL: Final = 4


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class SimTopics:
    action: str = "cat-feeder/action"
    dispensed: str = "cat-feeder/dispensed"
    states: str = "cat-feeder/states"
    availability: str = "cat-feeder/availability"


@dataclass(frozen=True, slots=True)
class MotorRun:
    """One simulated dispense: the request it served (None for an old-format message), the
    bowls whose motors turned, and for how long (simulated ms)."""

    request_id: str | None
    bowls: tuple[str, ...]
    ms: int


@dataclass(frozen=True, slots=True)
class LogicOutcome:
    """What the logic decided for one message, in the simulator's terms."""

    status: str  # "served" | "refused" | "ignored"
    reason: str | None
    request_id: str | None
    run: MotorRun | None
    ack: bytes | None
    persist: bool


@dataclass
class Work:
    run: MotorRun | None
    ack: bytes | None


# --- the firmware's logic, behind one small adapter ------------------------------------------


class FeederLogic:
    """The adapter between the simulator and ``firmware.feeder_logic``.

    The module is imported by name (not statically), so mypy checks the gateway strictly
    without following into MicroPython-flavoured, unannotated code; this class is the one place
    that knows the firmware's API (see its module docstring): ``Feeder(config, memory_blob)``,
    ``handle(payload, now_ms, clock_synced) -> Decision`` with ``.status``, ``.reason``,
    ``.request_id``, ``.run`` (a list of (bowl, ms) run together), ``.ack`` (bytes or None)
    and ``.persist``; ``memory_blob()``; and the module's ``states_payload(level)``.
    """

    def __init__(self, config: Mapping[str, Any] | None, memory_blob: str | None) -> None:
        self.module: Any = importlib.import_module(LOGIC_MODULE)
        self.feeder: Any = self.module.Feeder(dict(config or {}), memory_blob)

    def handle(self, payload: bytes, now_ms: int, clock_synced: bool) -> LogicOutcome:
        decision = self.feeder.handle(payload, now_ms, clock_synced)
        request_id = decision.request_id
        pairs = [(str(bowl), int(ms)) for bowl, ms in decision.run if int(ms) > 0]
        run = None
        if pairs:
            # The motors of one request run together: the run lasts as long as the longest.
            run = MotorRun(
                request_id=request_id,
                bowls=tuple(bowl for bowl, _ in pairs),
                ms=max(ms for _, ms in pairs),
            )
        ack = decision.ack
        return LogicOutcome(
            status=str(decision.status),
            reason=None if decision.reason is None else str(decision.reason),
            request_id=None if request_id is None else str(request_id),
            run=run,
            ack=None if ack is None else bytes(ack),
            persist=bool(decision.persist),
        )

    def memory_blob(self) -> str:
        return str(self.feeder.memory_blob())

    def states_payload(self, level: int) -> bytes:
        return bytes(self.module.states_payload(level))


@dataclass
class SimStats:
    received: int = 0
    received_ids: list[str | None] = field(default_factory=list)
    redelivered: int = 0
    duplicates_refused: int = 0
    refused: list[tuple[str | None, str]] = field(default_factory=list)
    ignored: int = 0
    decisions: list[LogicOutcome] = field(default_factory=list)
    acks_sent: list[bytes] = field(default_factory=list)
    acks_dropped: list[bytes] = field(default_factory=list)
    logic_errors: int = 0
    connects: int = 0
    subscribed: int = 0


def message_id(payload: bytes) -> str | None:
    try:
        body = json.loads(payload)
    except ValueError:
        return None
    if isinstance(body, dict) and isinstance(body.get("id"), str):
        return str(body["id"])
    return None


def load_flash(path: Path | None) -> str | None:
    """The dedupe memory the simulated flash holds (None: none yet, or no flash)."""
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def save_flash(path: Path | None, blob: str) -> None:
    """Write the dedupe memory as the firmware does: whole, synced, then renamed over."""
    if path is None:
        return
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(blob)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
