"""A reconnecting session with the local broker, shared by everything that speaks MQTT.

``MqttLink.run(session)`` connects, runs ``session(client)`` until the link drops, waits a
jittered back-off and connects again, forever. A session holds no state that must survive a
reconnect: what matters lives in the journal (cursors), so a dropped link only ever means
"send again from the cursor".
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway.backoff import Backoff
from gateway.config import BrokerConfig
from gateway.errors import ConfigError
from gateway.redact import register_secret

log = logging.getLogger(__name__)

Session = Callable[["LinkClient"], Awaitable[None]]

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


async def honour_cancellation(operation: Awaitable[T]) -> T:
    """Await an aiomqtt round trip, and raise a cancellation it swallowed.

    aiomqtt waits for every broker answer (CONNACK, SUBACK, PUBACK, the DISCONNECT) with
    ``asyncio.wait_for``. On Python 3.11 ``wait_for`` returns normally when a cancellation
    lands just as the answer arrives, so a daemon told to stop as a PUBACK came in kept its
    session running and never stopped. A cancellation request is still counted on the task
    (``Task.cancelling()``): one more after the call than before means it was swallowed, and
    we raise it. (Before and after, not "any": 3.11's TaskGroup leaves a count behind when a
    child fails, so only the change says anything.) Public asyncio only: aiomqtt's internals
    are free to change.
    """
    before = _cancel_requests()
    result = await operation
    raise_if_swallowed(before)
    return result


def _cancel_requests() -> int:
    task = asyncio.current_task()
    return 0 if task is None else task.cancelling()


def raise_if_swallowed(before: int) -> None:
    """Raise CancelledError if this task was asked to stop since ``before`` and an await
    swallowed it."""
    if _cancel_requests() > before:
        raise asyncio.CancelledError


class LinkClient:
    """What a session may do with the broker: subscribe, publish, read messages."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self._client = client

    async def subscribe(
        self, topics: list[tuple[str, int]], *, retain_as_published: bool = False
    ) -> None:
        """``retain_as_published``: keep the retain flag on messages forwarded live too (MQTT 5
        clears it by default), so a receiver can refuse every retained message, not only the
        ones the broker replays on subscribing."""
        request: list[tuple[str, int]] | list[tuple[str, SubscribeOptions]] = topics
        if retain_as_published:
            request = [
                (topic, SubscribeOptions(qos=qos, retainAsPublished=True)) for topic, qos in topics
            ]
        await honour_cancellation(self._client.subscribe(request))

    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int,
        properties: Properties | None = None,
        retain: bool = False,
    ) -> None:
        await honour_cancellation(
            self._client.publish(topic, payload, qos=qos, properties=properties, retain=retain)
        )

    @property
    def messages(self) -> AsyncIterator[aiomqtt.Message]:
        return self._client.messages


class MqttLink:
    def __init__(
        self,
        broker: BrokerConfig,
        client_id: str,
        *,
        persistent_session: bool = True,
        will: tuple[str, bytes] | None = None,
    ) -> None:
        """``will``: (topic, payload) the broker publishes, retained, if this link drops
        without saying goodbye (Home Assistant's "gateway online" reads it)."""
        self.broker = broker
        self.will = will
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
        # Read at each connect, never kept on the link or logged.
        username, password = self.broker.credentials(self.client_id)
        register_secret(password)
        return aiomqtt.Client(
            self.broker.host,
            self.broker.port,
            username=username,
            password=password,
            identifier=self.client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            # A persistent session: the broker queues the feeder's QoS 1 reports while the
            # gateway restarts, and they arrive when it is back.
            clean_start=not self.persistent_session,
            properties=props,
            keepalive=self.broker.keepalive_s,
            tls_params=tls_params,
            timeout=10,
            will=None if self.will is None else aiomqtt.Will(*self.will, qos=1, retain=True),
        )

    async def run(self, session: Session) -> None:
        """Connect and run ``session`` forever, reconnecting with back-off. Never returns."""
        while True:
            before = _cancel_requests()
            try:
                async with self._client() as raw:
                    raise_if_swallowed(before)  # the CONNACK is in hand, unless the stop came
                    client = LinkClient(raw)
                    self.connected = True
                    self.connects += 1
                    self.last_error = None
                    self._backoff.reset()
                    log.info(
                        "%s connected to %s:%d", self.client_id, self.broker.host, self.broker.port
                    )
                    try:
                        await session(client)
                    finally:
                        before = _cancel_requests()  # the DISCONNECT's wait is next
            # except*: a session that runs its loops in a TaskGroup raises the lost link wrapped
            # in an ExceptionGroup; a plain except would let it end the daemon.
            except* aiomqtt.MqttError as group:
                self._note_failure(str(_first_error(group)))
            # A credentials file that cannot be read is retried like a refused connection:
            # the installer may write it after the daemon started.
            except* ConfigError as group:
                self._note_failure(str(group.exceptions[0]))
            finally:
                self.connected = False
            raise_if_swallowed(before)  # one that came with the DISCONNECT's answer
            await asyncio.sleep(self._backoff.next_delay())

    def _note_failure(self, error: str) -> None:
        """Log a drop once, and a failure to connect once per distinct error: "lost" only for a
        link that was up, and always with where it was going."""
        where = f"{self.broker.host}:{self.broker.port}"
        if self.connected:
            log.warning("%s: broker link to %s lost: %s", self.client_id, where, error)
        elif self.last_error != error:
            log.warning("%s: cannot connect to the broker at %s: %s", self.client_id, where, error)
        self.last_error = error


def message_bytes(message: aiomqtt.Message) -> bytes:
    """A received message's payload as bytes (aiomqtt types it loosely)."""
    payload = message.payload
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    return b"" if payload is None else str(payload).encode()
