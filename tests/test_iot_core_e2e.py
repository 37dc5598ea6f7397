"""End to end with IoT Core: the daemon as a real subprocess (``fmfb run``) with a
``[sinks.iot_core]`` section, a local Mosquitto for the feeder and buttons, and a Mosquitto with
mTLS standing in for IoT Core.

The cloud is a paho client with its own client certificate on the TLS broker: it watches the
gateway's events topic and sends feed commands. The feeder is a plain probe on the local broker.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_process import HIGH_CAPS, DaemonProcess
from e2e_probe import Probe
from test_iot_core_sink import COMMANDS, Cloud, first_arrivals, tls_of
from waiting import wait_for

from gateway.devstack.mosquitto import Mosquitto
from gateway.devstack.pki import Pki, make_pki
from gateway.wire import rfc3339_ms

pytestmark = pytest.mark.e2e

ACTION = "cat-feeder/action"
TIMEOUT = 20.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def tls_broker(pki: Pki) -> Iterator[Mosquitto]:
    with Mosquitto(tls=tls_of(pki)) as broker:
        yield broker


@pytest.fixture
def daemon(broker: Mosquitto, tls_broker: Mosquitto, pki: Pki, tmp_path: Path) -> Iterator[Any]:
    iot_core = {
        "endpoint": "localhost",
        "port": tls_broker.port,
        "cert_file": str(pki.client_cert),
        "key_file": str(pki.client_key),
        "ca_file": str(pki.ca),
        "metrics": False,
        "publish_rate_per_s": 50.0,
    }
    with DaemonProcess(
        broker.port,
        workdir=tmp_path / "gw",
        policy=HIGH_CAPS,
        extra_config={"sinks": {"iot_core": iot_core}},
    ) as d:
        yield d


def events_topic(daemon: DaemonProcess) -> str:
    return f"feedmyfurbabies/{daemon.gateway_id}/events"


def wait_iot_connected(daemon: DaemonProcess) -> None:
    wait_for(
        lambda: daemon.sink_status("iot-core")["connected"],
        timeout=TIMEOUT,
        what="the IoT Core sink to connect",
    )


def wait_commands_subscribed(daemon: DaemonProcess, cloud: Cloud) -> None:
    """Prove the daemon listens for commands without journaling one: a payload that is not a
    command is counted (never journaled) under "iot:<topic>:..."; once the status shows it,
    the next command reaches the daemon."""
    prefix = f"iot:{COMMANDS}:"

    def counted() -> bool:
        cloud.publish(COMMANDS, b"\x01 not a command")
        return any(k.startswith(prefix) for k in daemon.status()["bad_inputs"])

    wait_for(counted, timeout=TIMEOUT, interval=0.05, what="the daemon's command subscription")


def wait_button_subscribed(daemon: DaemonProcess, presser: Probe) -> None:
    prefix = f"button:{daemon.button_name}:"

    def counted() -> bool:
        presser.publish(daemon.button_topic, b"\x01 not a press")
        return any(k.startswith(prefix) for k in daemon.status()["bad_inputs"])

    wait_for(counted, timeout=TIMEOUT, interval=0.05, what="the daemon's button subscription")


def test_a_press_reaches_the_cloud_on_the_events_topic(
    broker: Mosquitto, tls_broker: Mosquitto, pki: Pki, daemon: DaemonProcess
) -> None:
    topic = events_topic(daemon)
    with (
        Cloud(tls_broker, pki, [topic]).start() as cloud,
        Probe(broker.host, broker.port) as presser,
    ):
        daemon.start()
        daemon.wait_feeder_connected()
        wait_iot_connected(daemon)
        wait_button_subscribed(daemon, presser)

        presser.publish(daemon.button_topic, b'{"action":"single"}')
        wait_for(
            lambda: any(b["type"] == "FeedRequested" for b in cloud.bodies(topic)),
            timeout=TIMEOUT,
            what="the press on the events topic",
        )
        assert daemon.stop() == 0

    bodies = first_arrivals(cloud.bodies(topic))
    stored = daemon.events()
    # Hydrated from the beginning, in seq order, each with its chain hash.
    published = {b["seq"]: b for b in bodies}
    assert sorted(published) == list(range(1, len(published) + 1))
    for event in stored:
        if event.seq in published:
            assert published[event.seq]["event-id"] == event.event_id
            assert published[event.seq]["chain-hash"] == event.hash
    assert bodies[0]["type"] == "GatewayStarted"
    [press] = [b for b in bodies if b["type"] == "FeedRequested"]
    assert press["click-type"] == "SINGLE"
    assert press["origin"] == "button"
    assert press["button"] == daemon.button_name
    assert press["gateway-id"] == daemon.gateway_id
    assert press["bowls"] == ["left"]
    assert type(press["occurred-at-ms"]) is int


def test_a_cloud_command_feeds_end_to_end(
    broker: Mosquitto, tls_broker: Mosquitto, pki: Pki, daemon: DaemonProcess
) -> None:
    topic = events_topic(daemon)
    command = {
        "event": "DOUBLE",
        "reportedTime": rfc3339_ms(time.time_ns() // 1_000_000),
        "id": "e2e-cloud-command",
    }
    with (
        Cloud(tls_broker, pki, [topic]).start() as cloud,
        Probe(broker.host, broker.port, subscribe=[ACTION]) as feeder,
    ):
        daemon.start()
        daemon.wait_feeder_connected()
        wait_iot_connected(daemon)
        wait_commands_subscribed(daemon, cloud)
        assert daemon.events(["FeedRequested", "FeedRejected"]) == []

        cloud.publish(COMMANDS, command)
        (action,) = feeder.wait_messages(lambda ms: len(ms) >= 1, what="the feeder's action")
        # The request is an event too: it goes back up to the cloud.
        wait_for(
            lambda: any(b.get("request_id") == command["id"] for b in cloud.bodies(topic)),
            timeout=TIMEOUT,
            what="the request on the events topic",
        )
        assert daemon.stop() == 0

    body = action.json()
    assert body["id"] == "e2e-cloud-command"
    assert body["event"] == "DOUBLE"
    assert body["bowls"] == ["right"]
    [request] = daemon.events(["FeedRequested"])
    assert request.origin.value == "cloud"
    assert request.payload.to_dict()["request_id"] == "e2e-cloud-command"
    [published] = [b for b in cloud.bodies(topic) if b.get("request_id") == command["id"]]
    assert published["origin"] == "cloud"
    assert published["event-id"] == request.event_id
