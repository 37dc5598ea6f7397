"""A reconnecting session with the local broker, shared by everything that speaks MQTT.

``MqttLink.run(session)`` connects, runs ``session(client)`` until the link drops, waits a
jittered back-off and connects again, forever. A session holds no state that must survive a
reconnect: what matters lives in the journal (cursors), so a dropped link only ever means
"send again from the cursor".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections import deque
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
from gateway.wire import MAX_PACKET_BYTES

log = logging.getLogger(__name__)

Session = Callable[["LinkClient"], Awaitable[None]]

# How long the broker keeps a persistent session (subscriptions and queued QoS 1 messages)
# while we are away: long enough to ride out a daemon restart or an upgrade.
SESSION_EXPIRY_S = 86_400

# MQTT 5 "Session taken over": the broker dropped us because another client connected with
# our client id (a second gateway with the same id, or a copy of its config).
SESSION_TAKEN_OVER = 0x8E
TAKEOVER_MESSAGE = "another client uses this id"
# Sessions the broker ended while staying up, this many within the window: a clash.
CLASH_DROPS = 3
CLASH_WINDOW_S = 60.0
# Two gateways with one id knock each other off at every reconnect; backing off far longer
# than after an outage lets one of them keep the session instead of a fight at full speed.
TAKEOVER_BACKOFF_MIN_S = 5.0
TAKEOVER_BACKOFF_MAX_S = 120.0
# While the broker's port refuses connections, look again this often: a local broker that is
# back is used within this, not after the back-off's ceiling.
PORT_PROBE_INTERVAL_S = 0.2
PORT_PROBE_TIMEOUT_S = 0.5

T = TypeVar("T")


class _AbandonedAnswer(logging.Filter):
    """aiomqtt logs a SUBACK or UNSUBACK that comes for a request it no longer waits for at
    ERROR, with a KeyError's traceback. That happens when a stop cancels a subscribe while the
    broker's answer is on its way, and nothing is wrong then; a traceback in the daemon's log
    would say otherwise. Such a record is kept as one DEBUG line (so, usually, not shown)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith("Unexpected message ID"):
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


# aiomqtt's own logger (its default, named here so that the filter is on the one it uses);
# paho logs through it too.
AIOMQTT_LOG = logging.getLogger("mqtt")
AIOMQTT_LOG.addFilter(_AbandonedAnswer())


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
        self._takeover_backoff = Backoff(TAKEOVER_BACKOFF_MIN_S, TAKEOVER_BACKOFF_MAX_S)
        self.takeovers = 0
        self._taken_over = False  # the last disconnect was a takeover (reported once per streak)
        self._drops: deque[float] = deque()  # loop times of sessions ended by a running broker

    def _client(self) -> aiomqtt.Client:
        props = mqtt_properties(PacketTypes.CONNECT)
        # Announced so the broker never sends us more than a decoder will look at: a payload
        # that would only be refused is then never read into memory at all (the broker drops
        # it for this client), whatever its size.
        props.MaximumPacketSize = MAX_PACKET_BYTES
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
            logger=AIOMQTT_LOG,
        )

    async def run(self, session: Session) -> None:
        """Connect and run ``session`` forever, reconnecting with back-off. Never returns."""
        while True:
            before = _cancel_requests()
            taken_over = False
            error: aiomqtt.MqttError | None = None
            unreadable: str | None = None
            try:
                async with self._client() as raw:
                    raise_if_swallowed(before)  # the CONNACK is in hand, unless the stop came
                    client = LinkClient(raw)
                    self.connected = True
                    self.connects += 1
                    if not self._taken_over:
                        # A takeover stays in status while connected: the other client is
                        # likely to take the session back at its next attempt.
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
                error = _first_error(group)
            # A credentials file that cannot be read is retried like a refused connection:
            # the installer may write it after the daemon started.
            except* ConfigError as group:
                unreadable = str(group.exceptions[0])
            finally:
                was_connected, self.connected = self.connected, False
            raise_if_swallowed(before)  # one that came with the DISCONNECT's answer
            if unreadable is not None:
                self._note_failure(unreadable, was_connected=False)
            if error is not None:
                taken_over = _is_takeover(error) or (
                    was_connected and await self._dropped_while_broker_up()
                )
                if taken_over:
                    self._on_takeover(error)
                else:
                    self._note_failure(str(error), was_connected=was_connected)
            if taken_over:
                await asyncio.sleep(self._takeover_backoff.next_delay())
            else:
                self._taken_over = False
                self._takeover_backoff.reset()
                await self._wait_to_reconnect(self._backoff.next_delay())

    def _note_failure(self, error: str, *, was_connected: bool) -> None:
        """Log a drop once, and a failure to connect once per distinct error: "lost" only for a
        link that was up, and always with where it was going."""
        where = f"{self.broker.host}:{self.broker.port}"
        if was_connected:
            log.warning("%s: broker link to %s lost: %s", self.client_id, where, error)
        elif self.last_error != error:
            log.warning("%s: cannot connect to the broker at %s: %s", self.client_id, where, error)
        self.last_error = error

    async def _dropped_while_broker_up(self) -> bool:
        """Count a session the broker ended while it stayed up; True when that happened
        ``CLASH_DROPS`` times within ``CLASH_WINDOW_S``. Mosquitto 2.0 closes a taken-over
        session without a DISCONNECT (no reason code 0x8E reaches the client), so a second
        client with our id shows only as this: dropped again and again by a broker that is
        running. A broker restart closes its port, and is not counted."""
        if not await port_accepts(self.broker.host, self.broker.port):
            return False
        now = asyncio.get_running_loop().time()
        self._drops.append(now)
        while self._drops and self._drops[0] < now - CLASH_WINDOW_S:
            self._drops.popleft()
        return len(self._drops) >= CLASH_DROPS

    def _on_takeover(self, error: aiomqtt.MqttError) -> None:
        """Another client uses our id. Say it loudly once per streak, not at every fight."""
        self.takeovers += 1
        self.last_error = f"{TAKEOVER_MESSAGE} ({self.client_id}): {error}"
        if not self._taken_over:
            log.error(
                "%s: the broker at %s:%d keeps ending this session while it is up: another "
                "client connected with this client id and took the session over (a second "
                "gateway with the same gateway_id?); backing off",
                self.client_id,
                self.broker.host,
                self.broker.port,
            )
        self._taken_over = True

    async def _wait_to_reconnect(self, delay_s: float) -> None:
        """Sleep out the back-off, but end it as soon as a broker that refused connections
        accepts one again: a broker restart costs its own downtime plus at most a probe
        interval, not the back-off's ceiling. A broker that is up but refused us (auth, a
        protocol error) gets the full back-off: the port being open says nothing new."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + delay_s
        if await port_accepts(self.broker.host, self.broker.port):
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            return
        while (left := deadline - loop.time()) > 0:
            await asyncio.sleep(min(PORT_PROBE_INTERVAL_S, left))
            if await port_accepts(self.broker.host, self.broker.port):
                return


async def port_accepts(host: str, port: int) -> bool:
    """Whether a TCP connection to host:port is accepted now (closed at once)."""
    try:
        async with asyncio.timeout(PORT_PROBE_TIMEOUT_S):
            _, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def _is_takeover(error: BaseException) -> bool:
    """Whether the broker ended the session with "Session taken over". aiomqtt raises a plain
    "Disconnected during message iteration" from inside ``messages``, chained (``from``) to
    the error that carries the broker's reason code: so the chain is searched."""
    seen: BaseException | None = error
    for _ in range(5):  # a short chain; bounded in case of a cycle
        if seen is None:
            return False
        rc = getattr(seen, "rc", None)
        if getattr(rc, "value", rc) == SESSION_TAKEN_OVER:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def message_bytes(message: aiomqtt.Message) -> bytes:
    """A received message's payload as bytes (aiomqtt types it loosely)."""
    payload = message.payload
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    return b"" if payload is None else str(payload).encode()
