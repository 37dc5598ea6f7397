"""What every sink is (docs/architecture.md, "Sinks").

A sink is built from a :class:`SinkContext` (the daemon's shared parts) and its own config
section, owns a :class:`~gateway.sinks.follower.Follower` (its cursor and everything around
it), and provides:

- ``name``: its cursor's name in the journal (stable across versions);
- ``run()``: deliver forever (cancelled at shutdown; must survive its link going down);
- ``status()``: a :class:`~gateway.status.SinkStatus` for the status line, metrics and
  ``fmfb journal pending``.

Sinks are found by config section name in :mod:`gateway.sinks.registry`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gateway.clock import Clock
from gateway.config import Config
from gateway.counters import InputCounters
from gateway.intake import Intake
from gateway.journal import Journal
from gateway.status import SinkStatus

__all__ = ["Sink", "SinkContext", "SinkStatus"]


@dataclass(frozen=True, slots=True)
class SinkContext:
    """The daemon's parts a sink may use: nothing else reaches it."""

    config: Config
    journal: Journal
    intake: Intake
    clock: Clock
    counters: InputCounters


class Sink(Protocol):
    name: str

    async def run(self) -> None: ...

    def status(self) -> SinkStatus: ...
