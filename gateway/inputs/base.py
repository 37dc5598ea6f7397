"""What every input is (docs/architecture.md, "Inputs").

An input turns something outside — GPIO pins, MQTT buttons, the control socket — into calls
on the :class:`~gateway.intake.Intake`, the one door into the journal. A schedule, Home
Assistant or anything else that asks for feeds is one more of these.

- ``open()``: claim what the input needs (pins, a socket). An error here stops the start-up
  before systemd hears READY, so a second gateway on the same socket never runs half-started.
- ``run()``: take input until cancelled; must survive its link going down.
- ``close()``: stop taking input (idempotent). The daemon closes every input before it
  journals GatewayStopped, so nothing is accepted after the ledger says it stopped.
- ``status()``: an :class:`~gateway.status.InputStatus`.
"""

from __future__ import annotations

from typing import Protocol

from gateway.status import InputStatus

__all__ = ["Input", "InputStatus"]


class Input(Protocol):
    name: str

    async def open(self) -> None: ...

    async def run(self) -> None: ...

    async def close(self) -> None: ...

    def status(self) -> InputStatus: ...
