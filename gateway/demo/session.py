"""A running demo: the gateway in this loop, the steps and keys that drive it, and what the
live view and the plain lines show.

The gateway is driven only through its public interfaces: ``status()`` (typed), ``ready`` and
``stop()`` (through ``gateway.devstack.daemon``), the journal file opened read-only, the mock
pins of the pin factory handed to it, and the MQTT button's topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TextIO

from gpiozero.pins.mock import MockFactory

from gateway.clock import SystemClock
from gateway.config import Config
from gateway.demo import DemoError
from gateway.demo.buttons import GpioButton, MqttButton
from gateway.demo.script import Step, parse_script
from gateway.demo.stack import (
    DOUBLE_CLICK_MS,
    GPIO_PIN,
    HOLD_MS,
    MQTT_BUTTON_TOPIC,
    Stack,
)
from gateway.demo.track import Tracker, delivery_report
from gateway.demo.view import CursesScreen, FeederRow, Snapshot, event_line, render, status_line
from gateway.devstack.daemon import InProcessDaemon
from gateway.events import ClickType
from gateway.journal import JournalReader
from gateway.status import GatewayStatus, SinkStatus

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 20.0
PRESS_TIMEOUT_S = 15.0
DRAINED_STEADY_S = 1.0
FOLLOW_S = 0.05
FRAME_S = 0.1
# Keys of the live view: a press on a button, or a change of the "internet".
KEY_PRESSES = {
    "1": (ClickType.SINGLE, "gpio"),
    "2": (ClickType.DOUBLE, "gpio"),
    "3": (ClickType.LONG, "gpio"),
    "s": (ClickType.SINGLE, "mqtt"),
    "d": (ClickType.DOUBLE, "mqtt"),
    "l": (ClickType.LONG, "mqtt"),
}
TYPED_HELP = (
    "no live view (stdout is not a terminal): type steps and Enter, e.g. press SINGLE, "
    "press DOUBLE mqtt, cut, restore, wait drained, status, quit (Ctrl-D ends too)"
)


class Demo:
    def __init__(self, config: Config, stack: Stack, out: TextIO) -> None:
        self.config = config
        self.stack = stack
        self.out = out
        factory = MockFactory()
        self.runner = InProcessDaemon(
            config,
            pin_factory=factory,
            ready_timeout_s=START_TIMEOUT_S,
            stop_timeout_s=STOP_TIMEOUT_S,
            clock=TrustedClock(),
        )
        self.buttons: dict[str, GpioButton | MqttButton] = {
            "gpio": GpioButton(factory, GPIO_PIN, double_click_ms=DOUBLE_CLICK_MS, hold_ms=HOLD_MS),
            "mqtt": MqttButton(config.broker.host, config.broker.port, MQTT_BUTTON_TOPIC),
        }
        self.tracker = Tracker()
        self.reader: JournalReader | None = None
        self.message = ""
        self.plain = True
        self.eb_start = 0  # the EventBridge cursor when the demo started
        self._quit = False
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- output ----------------------------------------------------------------------------

    def say(self, line: str) -> None:
        self.message = line
        if self.plain:
            print(line, file=self.out, flush=True)

    def status(self) -> GatewayStatus:
        return self.runner.daemon.status()

    def sink(self, name: str) -> SinkStatus:
        found = self.status().sink(name)
        if found is None:
            raise DemoError(f"no sink {name!r}")
        return found

    def snapshot(self) -> Snapshot:
        st = self.status()
        distinct, in_order, _ = delivery_report(self.stack.received(), 0, -1)
        # Online as the gateway's journal says; food and motor runs from the (simulated)
        # feeder itself, which knows its level before it first reports a change.
        level, runs = self.stack.feeder_view()
        feeder = FeederRow(
            online=st.feeder.online,
            food_level=st.feeder.food_level if level is None else level,
            runs=runs,
        )
        return Snapshot(
            journal_seq=st.journal.seq,
            events=list(self.tracker.rows),
            sinks=st.sinks,
            feeder=feeder,
            internet_up=self.stack.internet_up,
            sqs_received=len(distinct),
            sqs_in_order=in_order,
            message=self.message,
            state_dir=str(self.config.state_dir),
            schedule=_detail(st, "schedule"),
            alerts=_detail(st, "alerts"),
        )

    # --- the journal -----------------------------------------------------------------------

    def follow(self) -> None:
        """Take what the journal gained since the last call (read-only, as `fmfb journal`)."""
        if self.reader is None:
            return
        while events := self.reader.read_after(self.tracker.seen, 100):
            for event in events:
                row = self.tracker.add(event)
                if self.plain:
                    print(event_line(row), file=self.out, flush=True)

    async def _follow_loop(self) -> None:
        while True:
            self.follow()
            await asyncio.sleep(FOLLOW_S)

    # --- steps -----------------------------------------------------------------------------

    async def run_step(self, step: Step) -> bool:
        if step.verb == "press":
            assert step.click is not None
            return await self._step_press(step.click, step.via)
        if step.verb == "cut":
            self.stack.cut()
            self.say("internet CUT: the EventBridge sink can no longer reach the AWS emulator")
        elif step.verb == "restore":
            self.stack.restore()
            self.say("internet RESTORED: the backlog drains in seq order")
        elif step.verb == "drained":
            return await self._step_drained(step.seconds)
        elif step.verb == "wait":
            await asyncio.sleep(step.seconds)
        self.say(status_line(self.snapshot()))
        return True

    async def _step_press(self, click: ClickType, via: str) -> bool:
        before = self.tracker.seen
        where = "the GPIO button (mock pin)" if via == "gpio" else "the MQTT button"
        self.say(f"press {click.value} on {where}")
        await self.buttons[via].press(click)
        deadline = time.monotonic() + PRESS_TIMEOUT_S
        while time.monotonic() < deadline:
            self.follow()
            event = self.tracker.journaled_click(before, click.value)
            if event is not None:
                self.say(f"pressed {click.value}: journaled seq {event.seq} {event.type.value}")
                self.say(status_line(self.snapshot()))
                return True
            await asyncio.sleep(FOLLOW_S)
        self.say(f"FAILED: press {click.value} was not journaled within {PRESS_TIMEOUT_S:.0f}s")
        return False

    def _drained(self) -> tuple[bool, str]:
        self.follow()
        st = self.status()
        last = st.journal.seq
        distinct, in_order, complete = delivery_report(
            self.stack.received(), self.eb_start + 1, last
        )
        ok = (
            all(s.backlog == 0 for s in st.sinks)
            and not self.tracker.unsettled
            and complete
            and in_order
        )
        detail = (
            f"journal seq {last}; "
            + "; ".join(f"{s.name} cursor {s.cursor} backlog {s.backlog}" for s in st.sinks)
            + f"; {len(self.tracker.unsettled)} feed(s) awaiting the feeder"
            + f"; SQS target received {len(distinct)} event(s)"
            + (", in seq order" if in_order else ", OUT OF ORDER")
        )
        return ok, detail

    async def _step_drained(self, limit_s: float) -> bool:
        self.say(f"waiting (up to {limit_s:.0f}s) for every sink to catch up")
        deadline = time.monotonic() + limit_s
        steady_since: float | None = None
        detail = ""
        while time.monotonic() < deadline:
            ok, detail = self._drained()
            now = time.monotonic()
            if not ok:
                steady_since = None
            elif steady_since is None:
                steady_since = now
            elif now - steady_since >= DRAINED_STEADY_S:
                self.say(f"drained: {detail}")
                return True
            await asyncio.sleep(0.1)
        self.say(f"FAILED: not drained within {limit_s:.0f}s: {detail}")
        return False

    def report_deliveries(self) -> None:
        distinct, in_order, _ = delivery_report(self.stack.received(), 0, -1)
        self.plain = True  # the live view is closed by now
        self.say(
            f"sqs seqs: {' '.join(map(str, distinct)) or '-'} "
            f"({len(distinct)} events, {'in seq order' if in_order else 'OUT OF ORDER'})"
        )

    # --- running ---------------------------------------------------------------------------

    async def run(self, steps: Sequence[Step] | None, interactive: bool) -> int:
        """``steps``: run them; None: take keys (``interactive``: the live view) or steps typed
        line by line. The exit status: 0 when every step succeeded."""
        self.plain = not interactive
        await self.runner.start()
        code = 0
        try:
            self.reader = JournalReader.open(self.config.journal_file)
            self.eb_start = self.sink("eventbridge").cursor
            await self._settle()
            self.follow()
            if steps is not None:
                code = await self._scripted(steps)
            elif interactive:
                code = await self._interactive()
            else:
                code = await self._typed()
        finally:
            self.report_deliveries()
            for task in self._tasks:
                task.cancel()
            code = await self._stop_gateway(code)
            if self.reader is not None:
                self.reader.close()
        return code

    async def _stop_gateway(self, code: int) -> int:
        try:
            await self.runner.stop()
        except Exception as e:
            self.say(f"the gateway failed: {e!r}")
            return 1
        return code

    async def _settle(self) -> None:
        """Ready means the journal is open and the inputs are starting: wait (briefly) for the
        MQTT button's subscription and the feeder sink's link, so a first press is not lost."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            st = self.status()
            buttons, feeder = st.input("mqtt-buttons"), st.sink("feeder")
            linked = buttons is None or bool(buttons.connected)
            if linked and feeder is not None and feeder.connected:
                # The status says connected, not subscribed; the subscription follows the
                # connection at once.
                await asyncio.sleep(0.3)
                return
            await asyncio.sleep(FOLLOW_S)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _scripted(self, steps: Sequence[Step]) -> int:
        self._spawn(self._follow_loop())
        self.say(status_line(self.snapshot()))
        return await self._run_steps(steps, stop_on_failure=True)

    async def _run_steps(self, steps: Sequence[Step], *, stop_on_failure: bool) -> int:
        """0: all done (or quit); 1: a step failed (with ``stop_on_failure``) or the gateway
        stopped (SIGTERM, Ctrl-C) first. ``self._quit`` is set on quit."""
        for step in steps:
            if step.verb == "quit":
                self.say("quit")
                self._quit = True
                return 0
            if self.runner.exited:
                self.say("stopped before the script ended")
                return 1
            self.say(f"step: {step.text}")
            running = asyncio.create_task(self.run_step(step))
            exited = asyncio.create_task(self.runner.wait_exited())
            await asyncio.wait({running, exited}, return_when=asyncio.FIRST_COMPLETED)
            exited.cancel()
            if not running.done():  # Ctrl-C or SIGTERM: the gateway stopped
                running.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await running
                self.say(f"interrupted during: {step.text}")
                return 1
            if not running.result() and stop_on_failure:
                return 1
        return 0

    async def _typed(self) -> int:
        """Steps typed on the terminal, line by line, while the output goes elsewhere (a pipe,
        a file): the live view cannot draw there."""
        self._spawn(self._follow_loop())
        self.say(TYPED_HELP)
        self.say(status_line(self.snapshot()))
        lines = _stdin_lines()
        while not self._quit:
            line = asyncio.create_task(lines.get())
            exited = asyncio.create_task(self.runner.wait_exited())
            await asyncio.wait({line, exited}, return_when=asyncio.FIRST_COMPLETED)
            exited.cancel()
            if not line.done():
                line.cancel()
                self.say("the gateway stopped")
                return 1
            text = line.result()
            if text is None:  # end of input
                return 0
            try:
                steps = parse_script(text)
            except DemoError as e:
                self.say(str(e))
                continue
            if await self._run_steps(steps, stop_on_failure=False) and not self._quit:
                return 1
        return 0

    async def _interactive(self) -> int:
        actions: dict[str, Callable[[], None]] = {"c": self._key_cut, "r": self._key_restore}
        self.message = "press a key"
        with contextlib.ExitStack() as exits:
            try:
                screen = exits.enter_context(CursesScreen())
            except Exception as e:  # curses.error: a terminal curses cannot drive
                self.plain = True
                self.say(f"the live view cannot start ({e})")
                return await self._typed()
            while not self._quit and not self.runner.exited:
                for pressed in screen.read_keys():
                    key = pressed.lower()
                    if key == "q":
                        self.message = "quitting: stopping the gateway, feeder, broker, AWS"
                        self._quit = True
                    elif key in KEY_PRESSES:
                        self._spawn(self._key_press(*KEY_PRESSES[key]))
                    elif key in actions:
                        actions[key]()
                self.follow()
                width, height = screen.size()
                screen.draw(render(self.snapshot(), width, height))
                await asyncio.sleep(FRAME_S)
            screen.draw(render(self.snapshot(), *screen.size()))
        return 0

    async def _key_press(self, click: ClickType, via: str) -> None:
        where = "GPIO" if via == "gpio" else "MQTT"
        self.message = f"pressing {click.value} on the {where} button"
        try:
            await self.buttons[via].press(click)
        except Exception as e:
            self.message = f"press failed: {e}"
        else:
            self.message = f"pressed {click.value} on the {where} button"

    def _key_cut(self) -> None:
        self.stack.cut()
        self.message = "internet CUT: watch the eventbridge backlog grow"

    def _key_restore(self) -> None:
        self.stack.restore()
        self.message = "internet RESTORED: the backlog drains, in order"


class TrustedClock(SystemClock):
    """This machine's clock, taken as synchronised: a demo runs on a desktop or in a
    container that may not say so, and its meal is due in a minute. (On a Pi the gateway asks
    the kernel; the tests show that an unsynchronised clock fires nothing.)"""

    def synced(self) -> bool:
        return True


def _detail(status: GatewayStatus, name: str) -> str:
    part = status.input(name)
    return "" if part is None or part.detail is None else part.detail


def _stdin_lines() -> asyncio.Queue[str | None]:
    """Lines of stdin as they are typed (None at the end), read on a daemon thread: a blocking
    read must neither stall the loop nor keep the process alive at exit."""
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()

    def read() -> None:
        # The loop is closed when the demo ends before the input does: nothing to hand over.
        with contextlib.suppress(RuntimeError):
            for line in sys.stdin:
                loop.call_soon_threadsafe(lines.put_nowait, line)
            loop.call_soon_threadsafe(lines.put_nowait, None)

    threading.Thread(target=read, name="demo-stdin", daemon=True).start()
    return lines
