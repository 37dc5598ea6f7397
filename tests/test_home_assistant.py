"""Home Assistant: discovery validated against HA's schemas (tests/ha_schema.py), then a test
that plays Home Assistant's part with a real MQTT client against a real Mosquitto — it reads
the discovery, presses the feed button, sees the feed journaled and the state topics change,
announces "online" to get discovery again, and sees the state right after a restart."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from ha_schema import TOPIC, validate
from inprocess import journaled
from mqtt_probe import Publisher, Subscriber, until
from pydantic import ValidationError

from gateway.clock import FixedClock
from gateway.config import Config, parse_config
from gateway.devstack.daemon import running
from gateway.events import EventType, FeedRequested, MealSkipped, Origin
from gateway.ha_discovery import DeviceInfo, HomeTopics, discovery
from gateway.inputs.home_assistant import HomeAssistantCommands
from gateway.sinks.home_assistant import HomeAssistantPublisher

BASE = "fmfb/gw-ha"
ACTION = "cat-feeder/action"
DISPENSED = "cat-feeder/dispensed"
BUTTON_TOPIC = "test/hall/action"


def all_discovery() -> list[tuple[str, dict[str, Any]]]:
    topics = HomeTopics(BASE, "cat-feeder/availability")
    device = DeviceInfo("gw-ha", "Cat feeder gw-ha", "1.0")
    return discovery(device, topics, buttons=["hall", "kitchen"], sinks=["eventbridge", "iot-core"])


@pytest.mark.parametrize("item", all_discovery(), ids=lambda i: i[0])
def test_every_discovery_payload_passes_home_assistants_schema(item):
    topic, payload = item
    assert re.match(TOPIC, topic), topic
    validate(topic, payload)


def test_the_schema_refuses_what_home_assistant_refuses():
    topic, payload = all_discovery()[0]
    with pytest.raises(ValidationError):
        validate(topic, {**payload, "bogus_key": 1})
    with pytest.raises(ValidationError):
        validate(topic, {k: v for k, v in payload.items() if k != "command_topic"})


def test_one_device_unique_ids_and_every_entity_asked_for():
    items = all_discovery()
    ids = [p["unique_id"] for _, p in items if "unique_id" in p]
    assert len(ids) == len(set(ids))
    assert len({json.dumps(p["device"], sort_keys=True) for _, p in items}) == 1
    objects = {t.split("/")[3] for t, _ in items}
    for wanted in (
        "feed_left",
        "feed_right",
        "feed_both",
        "skip_next_meal",
        "portion",
        "food_level",
        "feeder_online",
        "gateway_online",
        "last_fed_left",
        "fed_today_right",
        "next_meal",
        "backlog_eventbridge",
        "backlog_iot_core",
        "alert_food_low",
        "hall_single",
        "kitchen_long",
    ):
        assert wanted in objects, wanted


# --- playing Home Assistant -------------------------------------------------------------------


def make_config(tmp_path: Path, broker: Any) -> Config:
    return parse_config(
        {
            "gateway_id": "gw-ha",
            "state_dir": str(tmp_path / "state"),
            "broker": {
                "host": broker.host,
                "port": broker.port,
                "reconnect_min_s": 0.05,
                "reconnect_max_s": 0.3,
            },
            "feeding": {"portion_ms": 1500, "expiry_s": 600, "ack_timeout_s": 600},
            "policy": {"min_gap_s": 0},
            "buttons": {"pin_factory": "mock", "mqtt": [{"name": "hall", "topic": BUTTON_TOPIC}]},
            "scheduling": {"time_zone": "Europe/London"},
            "schedule": [{"name": "dinner", "at": "18:00", "bowls": ["left", "right"]}],
            "home_assistant": {"enabled": True, "refresh_s": 0.2},
        }
    )


def retained_state(ha: Subscriber, topic: str) -> str | None:
    got = ha.messages(topic)
    return got[-1].payload.decode() if got else None


def discovery_of(ha: Subscriber) -> dict[str, dict[str, Any]]:
    return {m.topic: m.json() for m in ha.messages() if m.topic.startswith("homeassistant/")}


async def test_home_assistant_end_to_end(tmp_path, broker):
    config = make_config(tmp_path, broker)
    # A synchronised clock (a container's may not say so), so the schedule has a next meal.
    clock = FixedClock(time.time_ns() // 1_000_000)
    expected = len(
        discovery(
            DeviceInfo("gw-ha", "x", "x"),
            HomeTopics(BASE, "cat-feeder/availability"),
            buttons=["hall"],
            sinks=[],
        )
    )
    with (
        Subscriber.on(broker, "homeassistant/#", f"{BASE}/#") as ha,
        Subscriber.on(broker, ACTION) as feeder,
        Publisher.on(broker) as pub,
    ):
        async with running(config, clock=clock) as daemon:
            publisher = next(s for s in daemon.sinks if isinstance(s, HomeAssistantPublisher))
            await until(lambda: len(discovery_of(ha)) == expected, what="discovery")
            for topic, payload in discovery_of(ha).items():
                validate(topic, payload)
            assert retained_state(ha, f"{BASE}/gateway/availability") == "online"
            # HA sets the portion (kept retained), then presses "Feed left".
            number = discovery_of(ha)["homeassistant/number/gw-ha/portion/config"]
            pub.publish(number["command_topic"], "3000")
            await until(lambda: retained_state(ha, number["state_topic"]) == "3000", what="portion")
            button = discovery_of(ha)["homeassistant/button/gw-ha/feed_left/config"]
            pub.publish(button["command_topic"], button["payload_press"])
            [action] = await feeder.wait_count(ACTION, 1)
            request = action.json()
            assert request["bowls"] == ["left"]
            assert request["portion_ms"] == 3000
            [event] = journaled(daemon, EventType.FEED_REQUESTED)
            assert isinstance(event.payload, FeedRequested)
            assert event.payload.origin is Origin.HOME_ASSISTANT
            assert event.payload.request_id == event.event_id  # its own id, like `fmfb feed`
            # The feeder serves it: the state topics change.
            pub.publish(DISPENSED, json.dumps({"id": request["id"], "status": "served"}))
            last_fed = f"{BASE}/state/left/last_fed"
            await until(lambda: retained_state(ha, last_fed) not in (None, "unknown"), what="fed")
            stamp = retained_state(ha, last_fed)
            assert stamp is not None and datetime.fromisoformat(stamp).tzinfo is not None
            assert retained_state(ha, f"{BASE}/state/left/fed_today") == "1"
            next_meal = retained_state(ha, f"{BASE}/state/next_meal")
            assert next_meal is not None and datetime.fromisoformat(next_meal).tzinfo is not None
            # A low food report: the level sensor, and the alert, retained and in HA.
            pub.publish("cat-feeder/states", json.dumps({"food_capacity": 8}))
            alert = f"{BASE}/alerts/food-low"
            await until(lambda: retained_state(ha, alert) == "ON", what="the food-low alert")
            assert retained_state(ha, f"{BASE}/state/food_level") == "8"
            [open_alert] = json.loads(retained_state(ha, f"{BASE}/alerts") or "[]")
            assert open_alert["kind"] == "food-low"
            # A physical button's click is a device trigger.
            pub.publish(BUTTON_TOPIC, json.dumps({"action": "double"}))
            [click] = await ha.wait_count(f"{BASE}/button/hall/action", 1)
            assert click.payload == b"DOUBLE"
            assert not click.retain
            # Skip next meal from HA: journaled.
            skip = discovery_of(ha)["homeassistant/button/gw-ha/skip_next_meal/config"]
            pub.publish(skip["command_topic"], skip["payload_press"])
            await until(lambda: journaled(daemon, EventType.MEAL_SKIPPED), what="MealSkipped")
            [skipped] = journaled(daemon, EventType.MEAL_SKIPPED)
            assert isinstance(skipped.payload, MealSkipped)
            assert skipped.origin is Origin.HOME_ASSISTANT
            # HA restarts and says "online": discovery again.
            rounds = publisher.discoveries
            before = len([m for m in ha.messages() if m.topic.startswith("homeassistant/b")])
            pub.publish("homeassistant/status", "online")
            await until(lambda: publisher.discoveries > rounds, what="discovery again")
            await until(
                lambda: (
                    len([m for m in ha.messages() if m.topic.startswith("homeassistant/b")])
                    >= 2 * before
                ),
                what="the discovery messages again",
            )
        # Stopped: the gateway says it is offline.
        await until(
            lambda: retained_state(ha, f"{BASE}/gateway/availability") == "offline",
            what="gateway offline",
        )
    # After a restart a new Home Assistant client reads the same state (retained, refolded).
    with Subscriber.on(broker, f"{BASE}/#") as fresh:
        async with running(config, clock=clock) as again:
            commands = next(p for p in again.inputs if isinstance(p, HomeAssistantCommands))
            await until(lambda: commands.portion_ms == 3000, what="the portion read back")
            await until(
                lambda: retained_state(fresh, f"{BASE}/gateway/availability") == "online",
                what="gateway online again",
            )
            await until(lambda: retained_state(fresh, last_fed) == stamp, what="last fed kept")
            assert retained_state(fresh, f"{BASE}/state/left/fed_today") == "1"
