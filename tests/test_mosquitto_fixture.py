"""The broker fixture is a real Mosquitto: QoS 1 gets through, and with persistence a
persistent session's queued message survives a restart."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from waiting import wait_for

from gateway.devstack.mosquitto import Mosquitto

TIMEOUT = 10.0


class Client:
    """A paho 2.x MQTT v5 client that records what it sees, for tests."""

    def __init__(self, broker: Mosquitto, client_id: str | None = None) -> None:
        self.broker = broker
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id or f"test-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.received = threading.Event()
        self.messages: list[mqtt.MQTTMessage] = []
        self.session_present: bool | None = None
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    def _on_connect(self, _c: mqtt.Client, _u: Any, flags: Any, reason_code: Any, _p: Any) -> None:
        if not reason_code.is_failure:
            self.session_present = bool(flags.session_present)
            self.connected.set()

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, codes: Any, _p: Any) -> None:
        assert all(not code.is_failure for code in codes), codes
        self.subscribed.set()

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        self.messages.append(message)
        self.received.set()

    def connect(self, *, clean_start: bool = True, session_expiry: int | None = None) -> None:
        properties = None
        if session_expiry is not None:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = session_expiry
        self.connected.clear()
        self.client.connect(
            self.broker.host,
            self.broker.port,
            clean_start=clean_start,
            properties=properties,
        )
        self.client.loop_start()
        assert self.connected.wait(TIMEOUT), f"no CONNACK from {self.broker}"

    def subscribe(self, topic: str, qos: int = 1) -> None:
        self.subscribed.clear()
        self.client.subscribe(topic, qos=qos)
        assert self.subscribed.wait(TIMEOUT), f"no SUBACK for {topic}"

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        info = self.client.publish(topic, payload, qos=qos)
        info.wait_for_publish(timeout=TIMEOUT)
        assert info.is_published(), f"no PUBACK for {topic}"

    def disconnect(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_qos1_round_trip(broker: Mosquitto) -> None:
    assert broker.port != 1883
    subscriber = Client(broker)
    publisher = Client(broker)
    try:
        subscriber.connect()
        subscriber.subscribe("fixture/test")
        publisher.connect()
        publisher.publish("fixture/test", b"hello", qos=1)

        assert subscriber.received.wait(TIMEOUT), "QoS 1 message never arrived"
        [message] = subscriber.messages
        assert message.topic == "fixture/test"
        assert message.payload == b"hello"
        assert message.qos == 1
    finally:
        subscriber.disconnect()
        publisher.disconnect()


def test_session_broker_is_shared_and_running(broker_session: Mosquitto) -> None:
    assert broker_session.running
    client = Client(broker_session)
    try:
        client.connect()
    finally:
        client.disconnect()


def test_kill_and_restart_keep_the_port(broker: Mosquitto) -> None:
    port = broker.port
    first_pid = broker.pid
    broker.kill()
    assert not broker.running
    broker.restart()
    assert broker.running
    assert broker.port == port
    assert broker.pid != first_pid
    client = Client(broker)
    try:
        client.connect()
    finally:
        client.disconnect()


def test_persistent_session_queue_survives_restart() -> None:
    with Mosquitto(persistent=True) as broker:
        feeder = Client(broker, client_id="fixture-feeder")
        feeder.connect(clean_start=False, session_expiry=3600)
        assert feeder.session_present is False
        feeder.subscribe("cat-feeder/action", qos=1)
        feeder.disconnect()

        # Queued for the offline persistent session: the broker's PUBACK says it has it.
        publisher = Client(broker)
        publisher.connect()
        publisher.publish("cat-feeder/action", b'{"event": "SINGLE"}', qos=1)
        publisher.disconnect()

        port, pid = broker.port, broker.pid
        broker.restart()
        assert broker.port == port
        assert broker.pid != pid
        wait_for(
            lambda: "Saving in-memory database" in broker.log_text(),
            what="mosquitto to log that it saved its database on shutdown",
        )

        feeder = Client(broker, client_id="fixture-feeder")
        try:
            feeder.connect(clean_start=False, session_expiry=3600)
            assert feeder.session_present is True, "the persistent session did not survive"
            assert feeder.received.wait(TIMEOUT), "queued QoS 1 message lost over the restart"
            [message] = feeder.messages
            assert message.topic == "cat-feeder/action"
            assert message.payload == b'{"event": "SINGLE"}'
            assert message.qos == 1
        finally:
            feeder.disconnect()
