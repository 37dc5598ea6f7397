"""A paho-mqtt 2.x client (MQTT v5) that stands where the feeder or a button would.

``Probe`` connects on its own network thread, subscribes again after every reconnect, and
records each message it receives under a lock; tests wait on what was recorded with a
timeout. ``persistent=True`` keeps a broker-side session (clean_start False, a session expiry)
so that QoS 1 messages published while the probe is away are queued for it — with a persistent
broker, across a broker restart too.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from waiting import wait_for

TIMEOUT = 15.0


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    duplicate: bool
    message_expiry_s: int | None

    def json(self) -> Any:
        return json.loads(self.payload)


class Probe:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        subscribe: Sequence[str] = (),
        client_id: str | None = None,
        persistent: bool = False,
    ) -> None:
        self.host = host
        self.port = port
        self.topics = list(subscribe)
        self.persistent = persistent
        self.client_id = client_id or f"probe-{uuid.uuid4().hex[:10]}"
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5
        )
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self._lock = threading.Lock()
        self._messages: list[Received] = []
        self._connects = 0
        self._subscribed = 0
        self._pending_subscribe: set[int] = set()

    # --- callbacks (paho's network thread) -----------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            return
        with self._lock:
            self._connects += 1
        if self.topics:
            # Subscribe on every connect: a non-persistent broker forgets subscriptions.
            _rc, mid = client.subscribe([(t, 1) for t in self.topics])
            with self._lock:
                self._pending_subscribe.add(mid)

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, mid: int, codes: Any, _p: Any) -> None:
        if any(code.is_failure for code in codes):
            return
        with self._lock:
            self._pending_subscribe.discard(mid)
            self._subscribed += 1

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        props = message.properties
        expiry = getattr(props, "MessageExpiryInterval", None) if props is not None else None
        received = Received(
            topic=message.topic,
            payload=bytes(message.payload),
            qos=message.qos,
            retain=bool(message.retain),
            duplicate=bool(message.dup),
            message_expiry_s=expiry,
        )
        with self._lock:
            self._messages.append(received)

    # --- use ------------------------------------------------------------------------------------

    def start(self, timeout: float = TIMEOUT) -> Probe:
        """Connect, start the network thread, and return once subscribed."""
        properties = None
        if self.persistent:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = 3600
        self.client.connect(
            self.host,
            self.port,
            keepalive=5,
            clean_start=not self.persistent,
            properties=properties,
        )
        self.client.loop_start()
        want = 1 if self.topics else 0
        wait_for(
            lambda: self.connects >= 1 and self._subscribed >= want,
            timeout=timeout,
            what=f"probe {self.client_id} to connect and subscribe",
        )
        return self

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Probe:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def connects(self) -> int:
        with self._lock:
            return self._connects

    def subscribed_since(self, connects: int) -> bool:
        """True once a connection after the ``connects``-th one has its subscription back."""
        with self._lock:
            return self._connects > connects and not self._pending_subscribe

    def messages(self, topic: str | None = None) -> list[Received]:
        with self._lock:
            return [m for m in self._messages if topic is None or m.topic == topic]

    def wait_messages(
        self,
        predicate: Callable[[list[Received]], bool],
        *,
        topic: str | None = None,
        timeout: float = TIMEOUT,
        what: str = "messages",
    ) -> list[Received]:
        """Wait until ``predicate(messages so far)`` holds; return the messages."""
        seen: list[Received] = []

        def holds() -> bool:
            seen[:] = self.messages(topic)
            return predicate(seen)

        wait_for(holds, timeout=timeout, what=what)
        return list(seen)

    def publish(
        self, topic: str, payload: bytes | str, *, qos: int = 1, timeout: float = TIMEOUT
    ) -> None:
        """Publish and return once the broker has it (PUBACK for QoS 1)."""
        info = self.client.publish(topic, payload, qos=qos)
        info.wait_for_publish(timeout=timeout)
        assert info.is_published(), f"publish to {topic} not acknowledged within {timeout}s"
