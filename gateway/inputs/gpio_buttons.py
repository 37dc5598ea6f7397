"""GPIO buttons: gpiozero edges → the pure click classifier → feed commands.

gpiozero calls back on its own threads (the pin driver's on a Pi; the driving thread with the
mock factory), so each edge is stamped with the monotonic clock where it happened and handed
to the event loop with ``call_soon_threadsafe``; the classifier and the intake only ever run on
the loop. Debouncing is the classifier's (gpiozero's ``bounce_time`` is not applied by its mock,
so doing it ourselves makes the Pi and the tests behave the same).

``asyncio``'s loop clock is ``time.monotonic``, the same clock the edges are stamped with, so
classifier deadlines map straight onto ``loop.call_at``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from gateway.classifier import ClickClassifier, ClickTimings
from gateway.config import ClassifierConfig, GpioButtonConfig
from gateway.events import ClickType
from gateway.intake import Intake
from gateway.status import InputStatus

log = logging.getLogger(__name__)


def on_raspberry_pi() -> bool:
    try:
        return "raspberry pi" in Path("/proc/device-tree/model").read_text().lower()
    except OSError:
        return False


def make_pin_factory(kind: str) -> Any:
    """gpiozero's real pins on a Pi (kind "auto"), its MockFactory elsewhere or when asked."""
    if kind == "auto" and on_raspberry_pi():
        return None  # gpiozero picks the best real factory itself
    from gpiozero.pins.mock import MockFactory  # noqa: PLC0415 - only without real pins

    return MockFactory()


class _Wired:
    def __init__(self, name: str, device: Any, classifier: ClickClassifier) -> None:
        self.name = name
        self.device = device
        self.classifier = classifier
        self.timer: asyncio.TimerHandle | None = None


class GpioButtons:
    name = "gpio-buttons"

    def __init__(
        self,
        buttons: list[GpioButtonConfig],
        timings: ClassifierConfig,
        intake: Intake,
        pin_factory: Any = "auto",
    ) -> None:
        # pin_factory: "auto" or "mock" (config), or a gpiozero factory object handed in by the
        # embedding program (the demo drives a MockFactory's pins through gpiozero's own API).
        self.configs = buttons
        self.timings = timings
        self.intake = intake
        self.factory_kind = pin_factory
        self.factory: Any = None
        self.buttons: dict[str, _Wired] = {}
        self.received = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    async def open(self) -> None:
        """Create the gpiozero buttons (a pin that is taken or missing fails the start-up)."""
        if not self.configs:
            return
        from gpiozero import Button  # noqa: PLC0415 - gpiozero only when buttons exist

        self._loop = asyncio.get_running_loop()
        kind = self.factory_kind
        self.factory = make_pin_factory(kind) if isinstance(kind, str) else kind
        for cfg in self.configs:
            classifier = ClickClassifier(
                ClickTimings(
                    double_click_ms=self.timings.double_click_ms,
                    hold_ms=self.timings.hold_ms,
                    bounce_ms=cfg.bounce_ms,
                )
            )
            device = Button(
                cfg.pin, pull_up=cfg.pull_up, bounce_time=None, pin_factory=self.factory
            )
            wired = _Wired(cfg.name, device, classifier)
            device.when_pressed = self._edge_callback(wired, pressed=True)
            device.when_released = self._edge_callback(wired, pressed=False)
            self.buttons[cfg.name] = wired
            log.info("GPIO button %r on pin %s", cfg.name, cfg.pin)

    async def run(self) -> None:
        # gpiozero calls back on its own threads; there is nothing to do here but stay.
        await asyncio.Future()

    def status(self) -> InputStatus:
        return InputStatus(self.name, None, received=self.received)

    async def close(self) -> None:
        for wired in self.buttons.values():
            if wired.timer is not None:
                wired.timer.cancel()
            wired.device.close()
        self.buttons.clear()

    def _edge_callback(self, wired: _Wired, *, pressed: bool) -> Any:
        loop = self._loop
        assert loop is not None

        def on_edge() -> None:  # runs on a gpiozero thread
            t_ms = time.monotonic_ns() // 1_000_000
            loop.call_soon_threadsafe(self._edge, wired, pressed, t_ms)

        return on_edge

    def _edge(self, wired: _Wired, pressed: bool, t_ms: int) -> None:
        clf = wired.classifier
        self._emit(wired, clf.press(t_ms) if pressed else clf.release(t_ms))
        self._schedule(wired)

    def _tick(self, wired: _Wired) -> None:
        wired.timer = None
        self._emit(wired, wired.classifier.tick(time.monotonic_ns() // 1_000_000))
        self._schedule(wired)

    def _schedule(self, wired: _Wired) -> None:
        if wired.timer is not None:
            wired.timer.cancel()
            wired.timer = None
        deadline = wired.classifier.next_deadline()
        if deadline is not None and self._loop is not None:
            wired.timer = self._loop.call_at(deadline / 1000, self._tick, wired)

    def _emit(self, wired: _Wired, click: ClickType | None) -> None:
        if click is None:
            return
        log.info("button %r: %s", wired.name, click.value)
        self.received += 1
        self.intake.press_nowait(wired.name, click)
