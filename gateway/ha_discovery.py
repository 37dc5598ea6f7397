"""Home Assistant MQTT discovery, pure: our topics and the retained ``config`` messages that make
the feeder and its gateway one device in Home Assistant (docs/architecture.md, "Home
Assistant").

Discovery topics are ``<prefix>/<component>/<node_id>/<object_id>/config``; every entity has a
``unique_id`` and the same ``device`` block (so Home Assistant groups them), and is available
while the gateway's own availability topic says ``online`` (its last will says ``offline``).
The feeder's availability is a binary sensor of its own, read from the feeder's retained
topic.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gateway.events import AlertKind, Bowl, ClickType

FEED_CHOICES = {"left": (Bowl.LEFT,), "right": (Bowl.RIGHT,), "both": (Bowl.LEFT, Bowl.RIGHT)}
SKIP_PAYLOAD = "PRESS"
PORTION_MIN_MS = 500
PORTION_MAX_MS = 120_000
TRIGGER_TYPES = {
    ClickType.SINGLE: "button_short_press",
    ClickType.DOUBLE: "button_double_press",
    ClickType.LONG: "button_long_press",
}


def node_id_of(gateway_id: str) -> str:
    """Home Assistant's node ids are ``[a-zA-Z0-9_-]``: anything else becomes ``_``."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", gateway_id) or "fmfb"


@dataclass(frozen=True, slots=True)
class HomeTopics:
    """Every topic the gateway uses with Home Assistant, under one base (``fmfb/<id>``)."""

    base: str
    feeder_availability: str

    @classmethod
    def of(cls, base_topic: str, gateway_id: str, feeder_availability: str) -> HomeTopics:
        """``base_topic`` with "{gateway_id}" replaced (by the id as a node id)."""
        base = base_topic.replace("{gateway_id}", node_id_of(gateway_id))
        return cls(base=base, feeder_availability=feeder_availability)

    @property
    def availability(self) -> str:
        return f"{self.base}/gateway/availability"

    @property
    def feed(self) -> str:
        return f"{self.base}/cmd/feed"

    @property
    def skip(self) -> str:
        return f"{self.base}/cmd/skip"

    @property
    def portion_set(self) -> str:
        return f"{self.base}/cmd/portion"

    @property
    def portion(self) -> str:
        return f"{self.base}/state/portion"

    @property
    def food_level(self) -> str:
        return f"{self.base}/state/food_level"

    @property
    def next_meal(self) -> str:
        return f"{self.base}/state/next_meal"

    @property
    def alerts(self) -> str:
        return f"{self.base}/alerts"

    def last_fed(self, bowl: Bowl) -> str:
        return f"{self.base}/state/{bowl.value}/last_fed"

    def fed_today(self, bowl: Bowl) -> str:
        return f"{self.base}/state/{bowl.value}/fed_today"

    def backlog(self, sink: str) -> str:
        return f"{self.base}/state/backlog/{sink}"

    def alert(self, kind: AlertKind) -> str:
        return f"{self.base}/alerts/{kind.value}"

    def button(self, name: str) -> str:
        return f"{self.base}/button/{name}/action"


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    node_id: str
    name: str
    version: str
    prefix: str = "homeassistant"


def discovery(
    device: DeviceInfo,
    topics: HomeTopics,
    *,
    buttons: Iterable[str],
    sinks: Iterable[str],
) -> list[tuple[str, dict[str, Any]]]:
    """Every discovery message: (topic, payload), in a stable order."""
    node = device.node_id
    block = {
        "identifiers": [f"fmfb_{node}"],
        "name": device.name,
        "manufacturer": "feedmyfurbabies",
        "model": "Cat feeder (ESP32) with Raspberry Pi gateway",
        "sw_version": device.version,
    }
    origin = {"name": "feedmyfurbabies", "sw_version": device.version}
    out: list[tuple[str, dict[str, Any]]] = []

    def entity(component: str, object_id: str, name: str, **keys: Any) -> None:
        payload: dict[str, Any] = {
            "name": name,
            "unique_id": f"fmfb_{node}_{object_id}",
            "device": block,
            "origin": origin,
        }
        if component != "device_automation" and "availability_topic" not in keys:
            payload["availability_topic"] = topics.availability
        payload.update({k: v for k, v in keys.items() if v is not None})
        out.append((f"{device.prefix}/{component}/{node}/{object_id}/config", payload))

    for choice in FEED_CHOICES:
        entity(
            "button",
            f"feed_{choice}",
            f"Feed {choice}",
            command_topic=topics.feed,
            payload_press=choice,
            icon="mdi:bowl-mix",
        )
    entity(
        "button",
        "skip_next_meal",
        "Skip next meal",
        command_topic=topics.skip,
        payload_press=SKIP_PAYLOAD,
        icon="mdi:debug-step-over",
    )
    entity(
        "number",
        "portion",
        "Portion",
        command_topic=topics.portion_set,
        state_topic=topics.portion,
        min=PORTION_MIN_MS,
        max=PORTION_MAX_MS,
        step=500,
        mode="box",
        unit_of_measurement="ms",
        icon="mdi:timer-sand",
    )
    entity(
        "sensor",
        "food_level",
        "Food level",
        state_topic=topics.food_level,
        unit_of_measurement="%",
        state_class="measurement",
        icon="mdi:food-drumstick",
    )
    entity(
        "binary_sensor",
        "feeder_online",
        "Feeder online",
        state_topic=topics.feeder_availability,
        payload_on="online",
        payload_off="offline",
        device_class="connectivity",
    )
    entity(
        "binary_sensor",
        "gateway_online",
        "Gateway online",
        state_topic=topics.availability,
        payload_on="online",
        payload_off="offline",
        device_class="connectivity",
        # Its own state is the availability topic: it must show "off", not "unavailable".
        availability_topic=None,
    )
    for bowl in Bowl:
        entity(
            "sensor",
            f"last_fed_{bowl.value}",
            f"Last fed {bowl.value}",
            state_topic=topics.last_fed(bowl),
            device_class="timestamp",
        )
        entity(
            "sensor",
            f"fed_today_{bowl.value}",
            f"Feeds today {bowl.value}",
            state_topic=topics.fed_today(bowl),
            state_class="measurement",
            icon="mdi:counter",
        )
    entity(
        "sensor",
        "next_meal",
        "Next meal",
        state_topic=topics.next_meal,
        device_class="timestamp",
    )
    for sink in sinks:
        entity(
            "sensor",
            f"backlog_{sink.replace('-', '_')}",
            f"Backlog {sink}",
            state_topic=topics.backlog(sink),
            unit_of_measurement="events",
            state_class="measurement",
            entity_category="diagnostic",
        )
    for kind in AlertKind:
        entity(
            "binary_sensor",
            f"alert_{kind.value.replace('-', '_')}",
            f"Alert {kind.value.replace('-', ' ')}",
            state_topic=topics.alert(kind),
            payload_on="ON",
            payload_off="OFF",
            device_class="problem",
        )
    for button in buttons:
        for click, trigger in TRIGGER_TYPES.items():
            object_id = f"{node_id_of(button)}_{click.value.lower()}"
            out.append(
                (
                    f"{device.prefix}/device_automation/{node}/{object_id}/config",
                    {
                        "automation_type": "trigger",
                        "topic": topics.button(button),
                        "payload": click.value,
                        "type": trigger,
                        "subtype": button,
                        "device": block,
                        "origin": origin,
                    },
                )
            )
    return out
