"""MQTT probes for tests: a recording subscriber and a publisher (paho-mqtt 2.x, MQTT v5).

Both run paho's network loop on its own thread, so they work the same beside a daemon that
runs in the test's event loop. The subscriber records every message under a lock; tests wait
on what it saw with :meth:`Subscriber.wait` (blocking) or :meth:`Subscriber.wait_async` (from
a coroutine, without blocking the loop the daemon runs on). :func:`until` is the coroutine
counterpart of ``waiting.wait_for`` for conditions on the daemon's own state.

``start()`` returns only once the broker has acknowledged the connection and (for the
subscriber) every subscription, so a test never publishes into a subscription that is not
there yet.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeVar

import paho.mqtt.client as mqtt

T = TypeVar("T")

TIMEOUT = 10.0


@dataclass(frozen=True)
class Received:
    """One message as the subscriber got it."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    message_expiry_s: int | None  # the MQTT 5 Message Expiry Interval, if the message had one

    def json(self) -> Any:
        return json.loads(self.payload)


async def until(predicate: Callable[[], T], within: float = TIMEOUT, what: str = "condition") -> T:
    """Poll ``predicate`` on the running loop until it is truthy; return its value.

    Unlike ``waiting.wait_for`` it yields to the loop between polls, so a daemon running in
    the same loop makes progress meanwhile. AssertionError naming ``what`` on timeout.
    """
    deadline = time.monotonic() + within
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {within:.1f}s waiting for {what}")
        await asyncio.sleep(0.01)


class _Client:
    def __init__(self, host: str, port: int, client_id: str | None, prefix: str) -> None:
        self.host = host
        self.port = port
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id or f"{prefix}-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        self._connected = threading.Event()
        self._connect_error: str | None = None
        self.client.on_connect = self._on_connect

    def _on_connect(self, _c: mqtt.Client, _u: Any, _flags: Any, code: Any, _p: Any) -> None:
        if code.is_failure:
            self._connect_error = str(code)
        self._connected.set()

    def _connect(self, timeout: float) -> None:
        self.client.connect(self.host, self.port, clean_start=True, keepalive=30)
        self.client.loop_start()
        if not self._connected.wait(timeout):
            self.stop()
            raise AssertionError(f"MQTT probe did not connect to {self.host}:{self.port}")
        if self._connect_error is not None:
            self.stop()
            raise AssertionError(f"MQTT probe refused by the broker: {self._connect_error}")

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class Subscriber(_Client):
    """Subscribes to ``topics`` (QoS 1) and records every message, thread-safely."""

    def __init__(
        self, host: str, port: int, topics: Sequence[str], client_id: str | None = None
    ) -> None:
        super().__init__(host, port, client_id, "probe-sub")
        self.topics = list(topics)
        self._cond = threading.Condition()
        self._messages: list[Received] = []
        self._subscribed = threading.Event()
        self._suback_error: str | None = None
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    @classmethod
    def on(cls, broker: Any, *topics: str) -> Subscriber:
        """A started subscriber on a ``gateway.devstack.mosquitto`` broker."""
        return cls(broker.host, broker.port, topics).start()

    def start(self, timeout: float = TIMEOUT) -> Self:
        self._connect(timeout)
        self.client.subscribe([(topic, 1) for topic in self.topics])
        if not self._subscribed.wait(timeout):
            self.stop()
            raise AssertionError(f"no SUBACK for {self.topics}")
        if self._suback_error is not None:
            self.stop()
            raise AssertionError(f"subscription refused: {self._suback_error}")
        return self

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, codes: Any, _p: Any) -> None:
        failed = [str(code) for code in codes if code.is_failure]
        if failed:
            self._suback_error = ", ".join(failed)
        self._subscribed.set()

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        props = message.properties
        expiry = getattr(props, "MessageExpiryInterval", None) if props is not None else None
        received = Received(
            topic=message.topic,
            payload=bytes(message.payload),
            qos=message.qos,
            retain=bool(message.retain),
            message_expiry_s=expiry,
        )
        with self._cond:
            self._messages.append(received)
            self._cond.notify_all()

    # --- reading ---------------------------------------------------------------------------

    def messages(self, topic: str | None = None) -> list[Received]:
        """A snapshot of what arrived so far (on ``topic`` only, if given), in arrival order."""
        with self._cond:
            return [m for m in self._messages if topic is None or m.topic == topic]

    def json_on(self, topic: str) -> list[Any]:
        return [m.json() for m in self.messages(topic)]

    def wait(
        self,
        predicate: Callable[[list[Received]], T],
        timeout: float = TIMEOUT,
        what: str = "a message",
    ) -> T:
        """Block until ``predicate(messages so far)`` is truthy; return its value."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                result = predicate(list(self._messages))
                if result:
                    return result
                left = deadline - time.monotonic()
                if left <= 0:
                    shown = [(m.topic, m.payload[:120]) for m in self._messages]
                    raise AssertionError(
                        f"timed out after {timeout:.1f}s waiting for {what}; got {shown}"
                    )
                self._cond.wait(left)

    async def wait_async(
        self,
        predicate: Callable[[list[Received]], T],
        within: float = TIMEOUT,
        what: str = "a message",
    ) -> T:
        """:meth:`wait` from a coroutine: the loop (and a daemon on it) keeps running."""
        return await asyncio.to_thread(self.wait, predicate, within, what)

    async def wait_count(self, topic: str, count: int, within: float = TIMEOUT) -> list[Received]:
        """Wait until at least ``count`` messages arrived on ``topic``; return them all."""
        return await self.wait_async(
            lambda ms: (on := [m for m in ms if m.topic == topic]) and len(on) >= count and on,
            within,
            f"{count} message(s) on {topic}",
        )


class Publisher(_Client):
    """Publishes and waits for the broker's acknowledgement (PUBACK at QoS 1)."""

    def __init__(self, host: str, port: int, client_id: str | None = None) -> None:
        super().__init__(host, port, client_id, "probe-pub")

    @classmethod
    def on(cls, broker: Any) -> Publisher:
        return cls(broker.host, broker.port).start()

    def start(self, timeout: float = TIMEOUT) -> Self:
        self._connect(timeout)
        return self

    def publish(
        self,
        topic: str,
        payload: bytes | str | dict[str, Any] | list[Any],
        *,
        qos: int = 1,
        retain: bool = False,
        timeout: float = TIMEOUT,
    ) -> None:
        if isinstance(payload, dict | list):
            payload = json.dumps(payload)
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise AssertionError(f"publish to {topic} was not acknowledged")

    def publish_all(self, topic: str, payloads: Iterable[bytes | str], **kw: Any) -> None:
        for payload in payloads:
            self.publish(topic, payload, **kw)
