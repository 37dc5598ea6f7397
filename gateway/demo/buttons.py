"""Pressing the demo's two buttons as a person (or a smart button) would.

- The GPIO button: the daemon reads pin 17 of the gpiozero ``MockFactory`` the demo handed it;
  the demo drives that pin through gpiozero's own API (``factory.pin(17).drive_low()``), never
  through the daemon's objects.
- The MQTT button: a zigbee2mqtt-style ``{"action": ...}`` published at QoS 1 to the button's
  topic on the broker, from a short-lived client of its own.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import aiomqtt

from gateway.events import ClickType

TAP_S = 0.05
# A bare payload per click, as a zigbee2mqtt button sends them.
MQTT_ACTIONS = {ClickType.SINGLE: "single", ClickType.DOUBLE: "double", ClickType.LONG: "hold"}


class GpioButton:
    """A push button between a mock pin and ground (pull-up: pressed is low)."""

    def __init__(self, factory: Any, pin: int, *, double_click_ms: int, hold_ms: int) -> None:
        self.factory = factory
        self.pin = pin
        self.double_click_ms = double_click_ms
        self.hold_ms = hold_ms
        # One click at a time: two overlapping presses would make one odd click of both.
        self._lock = asyncio.Lock()

    async def press(self, click: ClickType) -> None:
        pin = self.factory.pin(self.pin)  # the same pin object the daemon's Button reads
        async with self._lock:
            if click is ClickType.LONG:
                pin.drive_low()
                await asyncio.sleep(self.hold_ms / 1000 + 0.2)
                pin.drive_high()
            else:
                for tap in range(2 if click is ClickType.DOUBLE else 1):
                    if tap:
                        await asyncio.sleep(TAP_S)
                    pin.drive_low()
                    await asyncio.sleep(TAP_S)
                    pin.drive_high()
            # Let the classifier finish this click before the next one starts: a person's
            # pause, not a wait for the daemon (the caller waits for the journal for that).
            await asyncio.sleep(self.double_click_ms / 1000 + 0.1)


class MqttButton:
    """A smart button on the broker."""

    def __init__(self, host: str, port: int, topic: str) -> None:
        self.host = host
        self.port = port
        self.topic = topic

    async def press(self, click: ClickType) -> None:
        # A client per press, in this loop: paho's publish.single() logs "Client is not
        # connected" at ERROR on every call (its loop_forever runs once more after the
        # disconnect in its own on_publish), which the demo printed for every MQTT press.
        async with aiomqtt.Client(
            self.host, self.port, identifier=f"fmfb-demo-press-{os.getpid()}"
        ) as client:
            payload = json.dumps({"action": MQTT_ACTIONS[click]})
            await client.publish(self.topic, payload, qos=1)  # returns on the PUBACK
