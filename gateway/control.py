"""The control socket: how ``fmfb feed``, ``fmfb press`` and ``fmfb status`` reach the daemon.

A Unix stream socket in the state directory (mode 0660: the service user and its group). One
JSON object per line in, one JSON object per line out::

    {"op": "feed", "bowls": ["left"], "portion_ms": 5000}   -> {"ok": true, "event": {...}}
    {"op": "press", "button": "kitchen", "click": "SINGLE"} -> {"ok": true, "event": {...}}
    {"op": "status"}                                        -> {"ok": true, "status": {...}}
    {"op": "expect-echoes", "seqs": [12, 13]}               -> {"ok": true, "credits": 1}
    {"op": "skip", "schedule": "breakfast"}  (or none: any) -> {"ok": true, "event": {...}}
    {"op": "pause", "until_ms": 1800000000000}  (0 resumes) -> {"ok": true, "event": {...}}
    {"op": "next-meal"}                                     -> {"ok": true, "meal": {...}|null}
    anything malformed                                      -> {"ok": false, "error": "..."}

The answer to a feed or press comes once its event is durable (or held, if the disk refused
it), so the CLI reports what the ledger says, including a rejection and its reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from gateway.counters import InputCounters
from gateway.errors import ControlError, PayloadError, ScheduleError
from gateway.events import (
    ClickType,
    Event,
    FeedRejected,
    Origin,
    RejectReason,
    optional,
    parse_bowls,
    parse_enum,
    require,
)
from gateway.inputs.schedule import ScheduleInput
from gateway.intake import FeedCommand, Intake
from gateway.policy import next_allowed_ms
from gateway.schedule import Meal
from gateway.status import GatewayStatus, InputStatus

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 4096
MAX_ECHO_SEQS = 100


class ControlServer:
    name = "control-socket"

    def __init__(
        self,
        path: Path,
        intake: Intake,
        buttons: set[str],
        status: Callable[[], GatewayStatus],
        counters: InputCounters,
        *,
        schedule: ScheduleInput | None = None,
    ) -> None:
        self.path = path
        self.schedule = schedule
        self.intake = intake
        self.buttons = buttons
        self.gateway_status = status
        self.counters = counters
        self._server: asyncio.Server | None = None
        self.received = 0

    def status(self) -> InputStatus:
        return InputStatus(self.name, None, received=self.received)

    async def run(self) -> None:
        await asyncio.Future()  # the server answers on its own; see open()

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_socket():
            # A socket left by a daemon that was killed. If another daemon still answers on
            # it, refuse to start rather than steal it.
            if _answers(self.path):
                raise ControlError(f"another gateway is already running on {self.path}")
            self.path.unlink()
        self._server = await asyncio.start_unix_server(
            self._serve, path=str(self.path), limit=MAX_REQUEST_BYTES
        )
        self.path.chmod(0o660)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                line = await asyncio.wait_for(reader.readline(), timeout=10)
                answer = await self._handle(line)
            except (ValueError, asyncio.LimitOverrunError) as e:
                answer = {"ok": False, "error": f"request too long or unreadable: {e}"}
            except TimeoutError:
                answer = {"ok": False, "error": "no request within 10 s"}
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, OSError) as e:
            log.debug("control client went away: %s", e)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _handle(self, line: bytes) -> dict[str, Any]:
        try:
            return await self._dispatch(json.loads(line))
        except json.JSONDecodeError as e:
            error = PayloadError("", f"not JSON: {e.msg}")
            self.counters.bad_input("control", error, line)
            return {"ok": False, "error": str(error)}
        except PayloadError as e:
            self.counters.bad_input("control", e, line)
            return {"ok": False, "error": str(e)}

    async def _dispatch(self, request: Any) -> dict[str, Any]:
        if not isinstance(request, dict):
            raise PayloadError("", "expected a JSON object")
        op = require(request, "op", str)
        if op == "status":
            return {"ok": True, "status": self.gateway_status().as_json()}
        if op == "feed":
            self.received += 1
            command = FeedCommand(
                bowls=parse_bowls(require(request, "bowls", list)),
                origin=Origin.CLI,
                portion_ms=_portion(request),
            )
            event = await self.intake.request_feed(command)
            return self._feed_answer(event)
        if op == "press":
            self.received += 1
            button = require(request, "button", str)
            if button not in self.buttons:
                known = ", ".join(sorted(self.buttons)) or "none configured"
                raise PayloadError("button", f"no button {button!r} (known: {known})")
            click = parse_enum(ClickType, "click", require(request, "click", str).upper())
            event = await self.intake.click_nowait(button, click)
            return self._feed_answer(event)
        if op == "expect-echoes":
            seqs = require(request, "seqs", list)
            if len(seqs) > MAX_ECHO_SEQS or not all(
                isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in seqs
            ):
                raise PayloadError("seqs", f"a list of at most {MAX_ECHO_SEQS} positive seqs")
            return {"ok": True, "credits": self.intake.expect_echoes(seqs)}
        if op in SCHEDULE_OPS:
            return await self._schedule_op(op, request)
        raise PayloadError(
            "op",
            f"unknown operation {op!r} (feed, press, status, expect-echoes, skip, pause, "
            "next-meal)",
        )

    async def _schedule_op(self, op: str, request: Mapping[str, Any]) -> dict[str, Any]:
        """Skip next, pause until, next meal: journaled like any change (gateway/schedule.py)."""
        if self.schedule is None:
            return {"ok": False, "error": "no [[schedule]] is configured"}
        try:
            if op == "next-meal":
                meal = self.schedule.next_meal()
                return {"ok": True, "meal": None if meal is None else meal_json(meal)}
            self.received += 1
            if op == "skip":
                future = self.schedule.skip_next(optional(request, "schedule", str), Origin.CLI)
            else:
                until = optional(request, "until_ms", int)
                if until is None or until < 0:
                    raise PayloadError("until_ms", "a time in epoch milliseconds (0 resumes)")
                future = self.schedule.pause_until(until, Origin.CLI)
        except ScheduleError as e:
            return {"ok": False, "error": str(e)}
        event = await future
        return {"ok": True, "event": event.to_dict(), "held": event.held}

    def _feed_answer(self, event: Event) -> dict[str, Any]:
        answer: dict[str, Any] = {"ok": True, "event": event.to_dict(), "held": event.held}
        payload = event.payload
        if isinstance(payload, FeedRejected) and payload.reason in _LIMIT_REASONS:
            # A person refused by a limit wants to know when to try again.
            intake = self.intake
            answer["next_allowed_at_ms"] = next_allowed_ms(
                payload.bowls, intake.state, intake.limits, intake.clock.now_ms()
            )
        return answer


SCHEDULE_OPS = frozenset({"skip", "pause", "next-meal"})


def meal_json(meal: Meal) -> dict[str, Any]:
    return {
        "schedule": meal.schedule,
        "day": meal.day.isoformat(),
        "at_ms": meal.at_ms,
        "bowls": [b.value for b in meal.bowls],
    }


_LIMIT_REASONS = frozenset({RejectReason.TOO_SOON.value, RejectReason.CAP.value})


def _portion(request: Mapping[str, Any]) -> int | None:
    portion: int | None = optional(request, "portion_ms", int)
    if portion is not None and not 0 < portion <= 120_000:
        raise PayloadError("portion_ms", "must be between 1 and 120000")
    return portion


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        try:
            s.connect(str(path))
        except OSError:
            return False
        return True


def call(path: Path, request: Mapping[str, Any], timeout_s: float = 15.0) -> dict[str, Any]:
    """Send one request to the daemon and return its answer (the CLI side; blocking)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout_s)
        try:
            s.connect(str(path))
        except FileNotFoundError:
            raise ControlError(
                f"no gateway is running (no control socket at {path}); start it with `fmfb run`"
            ) from None
        except OSError as e:
            raise ControlError(f"cannot reach the gateway at {path}: {e.strerror or e}") from e
        s.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        try:
            while not data.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except TimeoutError:
            raise ControlError(f"the gateway did not answer within {timeout_s:g} s") from None
    if not data:
        raise ControlError("the gateway closed the connection without answering")
    answer: dict[str, Any] = json.loads(data)
    return answer
