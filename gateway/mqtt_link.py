"""A reconnecting session with the local broker, shared by everything that speaks MQTT.

``MqttLink.run(session)`` connects, runs ``session(client)`` until the link drops, waits a
jittered back-off and connects again, forever. A session holds no state that must survive a
reconnect: what matters lives in the journal (cursors), so a dropped link only ever means
"send again from the cursor".
"""

from __future__ import annotations

import asyncio
import logging
import math
import ssl
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.backoff import Backoff
from gateway.config import BrokerConfig

log = logging.getLogger(__name__)

Session = Callable[[aiomqtt.Client], Awaitable[None]]

# How long the broker keeps a persistent session (subscriptions and queued QoS 1 messages)
# while we are away: long enough to ride out a daemon restart or an upgrade.
SESSION_EXPIRY_S = 86_400

T = TypeVar("T")


def mqtt_properties(packet_type: int) -> Properties:
    """MQTT 5 properties for one packet type (paho's constructor is untyped)."""
    return Properties(packet_type)  # type: ignore[no-untyped-call]


def _first_error(group: BaseExceptionGroup[aiomqtt.MqttError]) -> aiomqtt.MqttError:
    """The first MQTT error in a (possibly nested) exception group."""
    first = group.exceptions[0]
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    return first


class _Client(aiomqtt.Client):
    """aiomqtt's client, waiting with ``asyncio.timeout`` instead of ``asyncio.wait_for``.

    Every broker round trip (CONNACK, SUBACK, PUBACK, the DISCONNECT) goes through
    ``_wait_for``. On Python 3.11 ``asyncio.wait_for`` returns normally when a cancellation
    lands just as the broker's answer arrives, swallowing it: a daemon told to stop as a
    PUBACK or SUBACK came in kept that session running and never stopped.
    """

    async def _wait_for(self, fut: Awaitable[T], timeout: float | None) -> T:  # noqa: ASYNC109 - aiomqtt's own signature
        if timeout is None:
            timeout = self.timeout
        try:
            async with asyncio.timeout(None if timeout == math.inf else timeout):
                return await fut
        except TimeoutError:
            raise aiomqtt.MqttError("Operation timed out") from None


class MqttLink:
    def __init__(
        self, broker: BrokerConfig, client_id: str, *, persistent_session: bool = True
    ) -> None:
        self.broker = broker
        self.client_id = client_id
        self.persistent_session = persistent_session
        self.connected = False
        self.last_error: str | None = None
        self.connects = 0
        self._backoff = Backoff(broker.reconnect_min_s, broker.reconnect_max_s)

    def _client(self) -> aiomqtt.Client:
        props = mqtt_properties(PacketTypes.CONNECT)
        if self.persistent_session:
            props.SessionExpiryInterval = SESSION_EXPIRY_S
        tls_params = None
        if self.broker.tls is not None:
            tls = self.broker.tls
            tls_params = aiomqtt.TLSParameters(
                ca_certs=str(tls.ca_file),
                certfile=str(tls.cert_file) if tls.cert_file else None,
                keyfile=str(tls.key_file) if tls.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        return _Client(
            self.broker.host,
            self.broker.port,
            username=self.broker.username,
            password=self.broker.password,
            identifier=self.client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            # A persistent session: the broker queues the feeder's QoS 1 reports while the
            # gateway restarts, and they arrive when it is back.
            clean_start=not self.persistent_session,
            properties=props,
            keepalive=self.broker.keepalive_s,
            tls_params=tls_params,
            timeout=10,
        )

    async def run(self, session: Session) -> None:
        """Connect and run ``session`` forever, reconnecting with back-off. Never returns."""
        while True:
            try:
                async with self._client() as client:
                    self.connected = True
                    self.connects += 1
                    self.last_error = None
                    self._backoff.reset()
                    log.info(
                        "%s connected to %s:%d", self.client_id, self.broker.host, self.broker.port
                    )
                    await session(client)
            # except*: a session that runs its loops in a TaskGroup raises the lost link wrapped
            # in an ExceptionGroup; a plain except would let it end the daemon.
            except* aiomqtt.MqttError as group:
                e = _first_error(group)
                if self.connected or self.last_error != str(e):
                    log.warning("%s: broker link lost: %s", self.client_id, e)
                self.last_error = str(e)
            finally:
                self.connected = False
            await asyncio.sleep(self._backoff.next_delay())


def message_bytes(message: aiomqtt.Message) -> bytes:
    """A received message's payload as bytes (aiomqtt types it loosely)."""
    payload = message.payload
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    return b"" if payload is None else str(payload).encode()
