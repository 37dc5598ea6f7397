"""Each alert raised once and cleared once through its real trigger: the daemon in this loop,
a real Mosquitto, a feeder played by an MQTT client (food reports, acknowledgements, its
last will), and a FixedClock the test moves (the offline duration, the ack timeout, the
not-fed-by deadline)."""

from __future__ import annotations

import json
import socket
from datetime import date, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
import pytest
from inprocess import journaled
from mqtt_probe import Publisher, until

from gateway.alert_watch import AlertWatch
from gateway.clock import FixedClock
from gateway.config import Config, parse_config
from gateway.daemon import Daemon
from gateway.devstack.daemon import running
from gateway.events import (
    AlertCleared,
    AlertKind,
    AlertRaised,
    Bowl,
    EventType,
    FeedRequested,
    Origin,
)
from gateway.intake import FeedCommand
from gateway.schedule import meal_instant

LONDON = ZoneInfo("Europe/London")
MINUTE = 60_000
STATES = "cat-feeder/states"
DISPENSED = "cat-feeder/dispensed"
AVAILABILITY = "cat-feeder/availability"


def make_config(tmp_path: Path, broker: Any) -> Config:
    return parse_config(
        {
            "gateway_id": "gw-alerts",
            "state_dir": str(tmp_path / "state"),
            "broker": {
                "host": broker.host,
                "port": broker.port,
                "reconnect_min_s": 0.05,
                "reconnect_max_s": 0.3,
            },
            "feeding": {"portion_ms": 1500, "expiry_s": 600, "ack_timeout_s": 1},
            "policy": {"min_gap_s": 0},
            "buttons": {"pin_factory": "mock", "gpio": [], "mqtt": []},
            "scheduling": {"time_zone": "Europe/London"},
            "alerts": {
                "feeder_offline_min": 10,
                "not_fed_by": [{"bowl": "right", "by": "08:00"}],
                "check_every_s": 0.02,
            },
        }
    )


def alerts(daemon: Daemon) -> list[AlertRaised | AlertCleared]:
    events = journaled(daemon, EventType.ALERT_RAISED, EventType.ALERT_CLEARED)
    return [e.payload for e in events]  # type: ignore[misc]


def count(daemon: Daemon, cls: type, kind: AlertKind) -> int:
    return sum(1 for a in alerts(daemon) if isinstance(a, cls) and a.kind is kind)


async def seen(daemon: Daemon, cls: type, kind: AlertKind) -> None:
    await until(lambda: count(daemon, cls, kind) >= 1, what=f"{cls.__name__} {kind}")


async def checked(daemon: Daemon) -> None:
    """Until the alert watch has looked again (a journal append wakes it)."""
    watch = next(p for p in daemon.inputs if isinstance(p, AlertWatch))
    assert daemon.journal is not None
    target = daemon.journal.visible_seq
    await until(lambda: watch.facts.seq >= target, what="the alert watch to catch up")


class Feeder:
    """The feeder's MQTT side: a retained availability with a last will, and its reports."""

    def __init__(self, broker: Any) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="feeder-sim")
        self.client.will_set(AVAILABILITY, b"offline", qos=1, retain=True)
        self.client.connect(broker.host, broker.port, keepalive=60)
        self.client.loop_start()
        self.client.publish(AVAILABILITY, b"online", qos=1, retain=True).wait_for_publish(5)

    def die(self) -> None:
        """Vanish without a DISCONNECT, so the broker sends the last will."""
        sock = self.client.socket()
        self.client.loop_stop()
        assert isinstance(sock, socket.socket)
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()


async def test_every_alert_raised_once_and_cleared_once_by_its_trigger(tmp_path, broker):
    start = meal_instant(date(2026, 6, 1), time(7, 0), LONDON)
    clock = FixedClock(start)
    config = make_config(tmp_path, broker)
    with Publisher.on(broker) as pub:
        async with running(config, clock=clock) as daemon:
            assert daemon.intake is not None
            # The feeder comes online (retained): the gateway's subscriptions are in place.
            feeder = Feeder(broker)
            await until(lambda: daemon.intake.state.feeder_online is True, what="online")  # type: ignore[union-attr]
            # Food: 10% raises; 22% (inside the margin) does not clear; 30% does.
            pub.publish(STATES, json.dumps({"food_capacity": 10}))
            await seen(daemon, AlertRaised, AlertKind.FOOD_LOW)
            pub.publish(STATES, json.dumps({"food_capacity": 22}))
            await until(lambda: daemon.intake.state.food_level == 22, what="level 22")  # type: ignore[union-attr]
            await checked(daemon)
            assert count(daemon, AlertCleared, AlertKind.FOOD_LOW) == 0
            pub.publish(STATES, json.dumps({"food_capacity": 30}))
            await seen(daemon, AlertCleared, AlertKind.FOOD_LOW)

            # The feeder's last will: offline, then 10 minutes later the alert.
            feeder.die()
            await until(lambda: daemon.intake.state.feeder_online is False, what="last will")  # type: ignore[union-attr]
            await checked(daemon)
            assert count(daemon, AlertRaised, AlertKind.FEEDER_OFFLINE) == 0
            clock.advance(10 * MINUTE)
            await seen(daemon, AlertRaised, AlertKind.FEEDER_OFFLINE)
            Feeder(broker)  # back
            await seen(daemon, AlertCleared, AlertKind.FEEDER_OFFLINE)

            # A feed nobody acknowledges: the ack timeout (1 s by this clock) passes.
            event = await daemon.intake.request_feed(FeedCommand((Bowl.LEFT,), Origin.CLI))
            assert isinstance(event.payload, FeedRequested)
            sink = next(s for s in daemon.sinks if s.name == "feeder")
            await until(lambda: sink.status().cursor >= event.seq, what="the request sent")
            clock.advance(1000)
            await seen(daemon, AlertRaised, AlertKind.FEED_UNCONFIRMED)
            # The clock passes 08:00 with the right bowl unfed.
            clock.wall_ms = meal_instant(date(2026, 6, 1), time(8, 0), LONDON)
            await seen(daemon, AlertRaised, AlertKind.NOT_FED)
            # A feed of the right bowl, served: clears both.
            fed = await daemon.intake.request_feed(FeedCommand((Bowl.RIGHT,), Origin.CLI))
            served = {"id": fed.payload.request_id, "status": "served", "ran_ms": 1500}  # type: ignore[union-attr]
            pub.publish(DISPENSED, json.dumps(served))
            await seen(daemon, AlertCleared, AlertKind.FEED_UNCONFIRMED)
            await seen(daemon, AlertCleared, AlertKind.NOT_FED)
            await checked(daemon)
            for kind in (
                AlertKind.FOOD_LOW,
                AlertKind.FEEDER_OFFLINE,
                AlertKind.FEED_UNCONFIRMED,
                AlertKind.NOT_FED,
            ):
                assert count(daemon, AlertRaised, kind) == 1, kind
                assert count(daemon, AlertCleared, kind) == 1, kind
        # After a restart the fold knows nothing is open: nothing is raised or cleared again.
        before = len(alerts_in(config))
        async with running(config, clock=clock) as daemon:
            await checked(daemon)
            assert len(alerts(daemon)) == before


def alerts_in(config: Config) -> list[Any]:
    from gateway.journal import EventFilter, JournalReader  # noqa: PLC0415

    with JournalReader.open(config.journal_file) as reader:
        types = (EventType.ALERT_RAISED.value, EventType.ALERT_CLEARED.value)
        return list(reader.query(EventFilter(types=types)))


@pytest.mark.usefixtures("feeds")  # moto with the bus, the rule and its target
async def test_sink_backlog_alert_raised_by_age_and_cleared_by_delivery(
    tmp_path, broker, proxy, monkeypatch
):
    """A cut link to EventBridge (moto behind a fault proxy): the oldest unsent event ages
    past the threshold by the clock; restored, the backlog drains and the alert clears."""
    from gateway.devstack.aws import AWS_TEST_ENV  # noqa: PLC0415

    for key, value in AWS_TEST_ENV.items():
        monkeypatch.setenv(key, value)
    clock = FixedClock(meal_instant(date(2026, 6, 1), time(7, 0), LONDON))
    data = make_config(tmp_path, broker).model_dump(mode="json", exclude_none=True)
    data["alerts"] = {"sink_backlog_min": 30, "check_every_s": 0.02}
    data["sinks"] = {
        "eventbridge": {
            "endpoint_url": proxy.url,
            "max_attempts": 1,
            "timeout_s": 2.0,
            "retry_min_s": 0.05,
            "retry_max_s": 0.2,
        }
    }
    config = parse_config(data)
    proxy.refuse()
    async with running(config, clock=clock) as daemon:
        assert daemon.intake is not None
        await daemon.intake.request_feed(FeedCommand((Bowl.LEFT,), Origin.CLI))
        clock.advance(29 * MINUTE)
        await checked(daemon)
        assert count(daemon, AlertRaised, AlertKind.SINK_BACKLOG) == 0
        clock.advance(2 * MINUTE)
        await seen(daemon, AlertRaised, AlertKind.SINK_BACKLOG)
        [raised] = [a for a in alerts(daemon) if isinstance(a, AlertRaised)]
        assert raised.subject == "eventbridge"
        proxy.accept()
        await seen(daemon, AlertCleared, AlertKind.SINK_BACKLOG)
        await checked(daemon)
        assert count(daemon, AlertRaised, AlertKind.SINK_BACKLOG) == 1
        assert count(daemon, AlertCleared, AlertKind.SINK_BACKLOG) == 1
