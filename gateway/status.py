"""What the running gateway reports about itself: typed, so the CLI, the demo, systemd's STATUS
line and metrics read the same fields, and the control socket sends them as one JSON object.

Every part that runs (a sink, an input) answers ``status()`` with one of these frozen records;
:class:`GatewayStatus` gathers them. ``as_json()`` is the control socket's wire form and
``from_json()`` reads it back (in the CLI), so the two can never drift apart.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass(frozen=True, slots=True)
class SinkStatus:
    """One sink: where its cursor is, what is left, and how its link is."""

    name: str
    connected: bool
    cursor: int
    backlog: int
    last_error: str | None = None
    delivered: int = 0  # events acknowledged since start (a re-send counts again)
    dead_lettered: int = 0
    passed_over: int = 0  # not of the sink's event types
    last_success_ms: int | None = None  # wall clock of the last acknowledged delivery
    oldest_pending_ms: int | None = None  # recorded time of the first event past the cursor


@dataclass(frozen=True, slots=True)
class InputStatus:
    """One input: a GPIO bank, an MQTT link, the control socket, remote commands."""

    name: str
    connected: bool | None  # None: has no link (GPIO, the control socket)
    last_error: str | None = None
    received: int = 0  # inputs handed to the intake since start
    detail: str | None = None  # what the input is doing, in words (the schedule: next meal)


@dataclass(frozen=True, slots=True)
class JournalStatus:
    path: str | None
    seq: int
    durable_seq: int
    disk_failing: bool
    held: int
    last_error: str | None = None
    spilled: int = 0  # held events also in the spill file (durable without the journal)
    alert: str | None = None  # e.g. a journal set aside at start-up
    size_bytes: int = 0  # the database and its WAL
    # Commit durations: a count per bucket of gateway.latency.COMMIT_BUCKETS_S (not
    # cumulative; one more, above every bound, at the end), and their sum in seconds.
    commit_counts: tuple[int, ...] = ()
    commit_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class FeederStatus:
    online: bool | None
    food_level: int | None
    # Accepted feeds per bowl in the policy's rolling cap period (what the cap counts).
    feeds_in_period: dict[str, int] = field(default_factory=dict)
    cap_per_bowl: int | None = None
    cap_period_s: int | None = None


@dataclass(frozen=True, slots=True)
class GatewayStatus:
    version: str
    gateway_id: str
    pid: int
    journal: JournalStatus
    feeder: FeederStatus
    sinks: tuple[SinkStatus, ...] = ()
    inputs: tuple[InputStatus, ...] = ()
    bad_inputs: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GatewayStatus:
        """The status as the control socket sent it (unknown keys from a newer daemon ignored)."""

        def pick(kind: type[Any], raw: dict[str, Any]) -> Any:
            names = {f.name for f in fields(kind)}
            # JSON has no tuples: a list comes back as the tuple it was.
            return kind(
                **{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items() if k in names}
            )

        return cls(
            version=str(data["version"]),
            gateway_id=str(data["gateway_id"]),
            pid=int(data["pid"]),
            journal=pick(JournalStatus, data["journal"]),
            feeder=pick(FeederStatus, data["feeder"]),
            sinks=tuple(pick(SinkStatus, s) for s in data.get("sinks", [])),
            inputs=tuple(pick(InputStatus, i) for i in data.get("inputs", [])),
            bad_inputs=dict(data.get("bad_inputs", {})),
        )

    def sink(self, name: str) -> SinkStatus | None:
        return next((s for s in self.sinks if s.name == name), None)

    def input(self, name: str) -> InputStatus | None:
        return next((i for i in self.inputs if i.name == name), None)
