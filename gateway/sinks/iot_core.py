"""The IoT Core sink: journal events → AWS IoT Core over MQTT 5 with mTLS, and remote feed
commands ← IoT Core's ``cat-feeder/action``.

Out: every durable event from the sink's cursor, in seq order, as the compact JSON of its cloud
detail (:func:`gateway.cloud_event.detail_json`), at QoS 1 on ``topic``, paced by
:class:`gateway.rate.Pacer` (IoT Core throttles a connection above about 100 publishes a
second) with at most ``MAX_IN_FLIGHT`` unacknowledged at once.

- The cursor moves over the contiguous prefix of finished events only: acknowledged by the
  broker (PUBACK), passed over by the type filter, or dead-lettered. An acknowledgement for
  seq 7 while seq 6 is still out does not move it.
- Held events (written before the disk failed and not yet durable) are not sent: the cloud copy
  carries each event's chain hash, which a held event does not have yet.
- Offline, the publishes already handed to the client wait in its in-memory queue and go again
  on reconnect; nothing new is handed over until the link is back. That queue dies with the
  process, so it is never the record of what was sent: the journal cursor is. After a restart,
  or after a publish fails, everything after the cursor that was not acknowledged is sent
  again — at least once, with ``event-id`` and ``seq`` for the receiver to drop duplicates.
- An event the broker can never take (larger than it accepts, refused as malformed) is
  dead-lettered: recorded against this sink, journaled as EventDeadLettered, and passed over,
  so one bad event cannot stop the rest.

In: commands on ``command_topic`` go to :class:`~gateway.sinks.iot_commands.RemoteCommands`
(each journaled once, acknowledged only once journaled). For that the session is persistent
and rejoined even on a fresh start, with an expiry of ``cloud.echo_window_s``: a command queued
while the gateway was away arrives when it is back, and no queued echo can outlive the credit
that recognises it (an echo older than the window would be taken as a real command and feed).

The SDK (awscrt) calls back on its own threads: every callback only hands over to the event
loop with ``call_soon_threadsafe``; its futures are awaited through ``asyncio.wrap_future``.
awsiotsdk and awscrt are imported only here, and only when the sink runs: the daemon imports
this module only when ``[sinks.iot_core]`` is configured, so feeding works without them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from functools import partial
from typing import Any, Final

from gateway.backoff import Backoff
from gateway.cloud_event import detail_json
from gateway.config import IotCoreConfig
from gateway.events import Event
from gateway.rate import Pacer
from gateway.sinks.base import SinkContext, SinkStatus
from gateway.sinks.follower import Follower
from gateway.sinks.iot_commands import FAILURE_CODE, RemoteCommands, describe, describe_disconnect
from gateway.wire import MAX_PACKET_BYTES

log = logging.getLogger(__name__)

READ_BATCH: Final = 100
MAX_IN_FLIGHT: Final = 16
"""Unacknowledged publishes at once: enough to keep a 100/s rate busy over a 100 ms round trip,
and under the receive maximum brokers grant (Mosquitto 20, IoT Core 100). It also bounds what
the client sends again at once after a reconnect, outside the pacer."""

KEEPALIVE_S: Final = 60  # the SDK's default is 20 minutes: far too long to notice a dead link
ACK_TIMEOUT_S: Final = 60  # a PUBACK that never comes fails the publish; it is sent again
RECONNECT_MIN_MS: Final = 250
RECONNECT_MAX_MS: Final = 30_000
STOP_TIMEOUT_S: Final = 5.0

_PAYLOAD_FORMAT_INVALID: Final = 0x99
# The client refused the packet itself (e.g. over the broker's maximum packet size): sending it
# again can never work.
_UNSENDABLE_ERRORS: Final = frozenset(
    {"AWS_ERROR_MQTT5_PACKET_VALIDATION", "AWS_ERROR_MQTT5_PUBLISH_OPTIONS_VALIDATION"}
)


def event_payload(event: Event, gateway_id: str) -> bytes:
    """What an event is published as: the compact JSON of its cloud detail, UTF-8."""
    return detail_json(event, gateway_id).encode("utf-8")


def events_topic(iot: IotCoreConfig, gateway_id: str) -> str:
    """The configured topic with ``{gateway_id}`` filled in (nothing else is a placeholder, so
    a brace anywhere else in a topic stays as written)."""
    return iot.topic.replace("{gateway_id}", gateway_id)


def client_options(iot: IotCoreConfig, client_id: str) -> dict[str, Any]:
    """The connection part of awsiotsdk's ``mtls_from_path`` keywords, from the config: the
    sink and ``fmfb replay --to iot-core`` both build their clients from this."""
    return {
        "endpoint": iot.endpoint,
        "port": iot.port,
        "cert_filepath": str(iot.cert_file),
        "pri_key_filepath": str(iot.key_file),
        # Without it the system store is used, and a private CA fails only after ~15 s.
        "ca_filepath": None if iot.ca_file is None else str(iot.ca_file),
        "client_id": client_id,
        "enable_metrics_collection": iot.metrics,
    }


class IotCoreSink:
    name = "iot-core"

    def __init__(
        self,
        context: SinkContext,
        settings: IotCoreConfig,
        *,
        pacer: Pacer | None = None,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        config = context.config
        self.config = config
        self.iot = settings
        self.journal = context.journal
        self.intake = context.intake
        self.clock = context.clock
        self.counters = context.counters
        self.gateway_id = config.gateway_id
        self.topic = events_topic(settings, config.gateway_id)
        self.command_topic = settings.command_topic
        self.client_id = settings.client_id or config.gateway_id
        self.pacer = pacer or Pacer(settings.publish_rate_per_s)
        self.max_in_flight = max_in_flight
        self.follower = Follower(self.name, settings, context)
        self.commands = RemoteCommands(
            settings.command_topic,
            context.intake,
            context.counters,
            Backoff(settings.retry_min_s, settings.retry_max_s),
        )
        # Figures beyond the follower's, for the tests and the benchmark.
        self.connects = 0
        self.sent = 0  # publishes handed to the client, sending again included

        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Any = None
        self._stopping = False
        self._online = asyncio.Event()
        self._stopped = asyncio.Event()
        self._settled = asyncio.Event()  # a publish was acknowledged or failed
        self._trouble = asyncio.Event()  # a publish failed: rewind to the cursor
        self._failure: str | None = None
        self._read_pos = self.cursor  # the last seq handed over or passed over
        self._in_flight: dict[int, Event] = {}

    # --- the Sink interface ----------------------------------------------------------------

    @property
    def cursor(self) -> int:
        return self.follower.cursor

    @property
    def connected(self) -> bool:
        return self.follower.connected

    @property
    def last_error(self) -> str | None:
        return self.follower.last_error

    @last_error.setter
    def last_error(self, error: str | None) -> None:
        self.follower.last_error = error

    @property
    def published(self) -> int:
        """Publishes the broker acknowledged."""
        return self.follower.delivered

    @property
    def dead_lettered(self) -> int:
        return self.follower.dead_lettered

    @property
    def commands_received(self) -> int:
        return self.commands.received

    @property
    def commands_bad(self) -> int:
        return self.commands.bad

    @property
    def subscribed(self) -> bool:
        return self.commands.subscribed

    def status(self) -> SinkStatus:
        return self.follower.status()

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            self._client = await self._set_up_client()
            self.commands.client = self._client
            log.info(
                "iot-core: connecting to %s:%d as %s (events on %s, commands on %s, %s)",
                self.iot.endpoint,
                self.iot.port,
                self.client_id,
                self.topic,
                self.command_topic,
                self.pacer,
            )
            self._client.start()
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._publish_loop(), name="iot-core-publish")
                tasks.create_task(
                    self.commands.subscribe_loop(lambda: self.connected),
                    name="iot-core-subscribe",
                )
        finally:
            await self._stop_client()

    # --- the client and its callbacks (SDK threads) ----------------------------------------

    async def _set_up_client(self) -> Any:
        """The MQTT client, once it can be built.

        A certificate that is missing or unreadable (not provisioned yet, a wrong path) or a
        missing awsiotsdk keeps this sink offline, says why in its status, and is tried again:
        it must not take the daemon down, because feeding does not depend on the cloud.
        """
        backoff = Backoff(self.iot.retry_min_s, self.iot.retry_max_s)
        while True:
            try:
                return self._new_client()
            except Exception as e:  # ImportError, OSError, AwsCrtError: all mean "not yet"
                error = self._set_up_error(e)
            if error != self.last_error:
                log.error("iot-core: %s; retrying, feeding goes on without it", error)
            self.last_error = error
            await asyncio.sleep(backoff.next_delay())

    def _set_up_error(self, error: Exception) -> str:
        if isinstance(error, ImportError):
            return (
                f"awsiotsdk is not installed ({error}): "
                "pip install 'feedmyfurbabies-gateway[cloud]'"
            )
        files = [("cert_file", self.iot.cert_file), ("key_file", self.iot.key_file)]
        if self.iot.ca_file is not None:
            files.append(("ca_file", self.iot.ca_file))
        missing = [f"{key} {path}" for key, path in files if not path.is_file()]
        if missing:
            return f"sinks.iot_core: not found: {', '.join(missing)}"
        return f"cannot set up the MQTT client: {describe(error)}"

    def _new_client(self) -> Any:
        from awsiot import mqtt5_client_builder  # noqa: PLC0415 - only when configured

        return mqtt5_client_builder.mtls_from_path(**self._client_options())

    def _client_options(self) -> dict[str, Any]:
        """What the client is built with (awsiotsdk's ``mtls_from_path`` keywords)."""
        from awscrt import mqtt5  # noqa: PLC0415 - only when an IoT Core sink is configured

        return {
            **client_options(self.iot, self.client_id),
            "keep_alive_interval_sec": KEEPALIVE_S,
            "ack_timeout_sec": ACK_TIMEOUT_S,
            "min_reconnect_delay_ms": RECONNECT_MIN_MS,
            "max_reconnect_delay_ms": RECONNECT_MAX_MS,
            # See the module docstring: rejoin even on a fresh start, expire with the echo window.
            "session_behavior": mqtt5.ClientSessionBehaviorType.REJOIN_ALWAYS,
            "session_expiry_interval_sec": self.config.cloud.echo_window_s,
            # The broker never sends more than a command decoder looks at (see gateway.wire).
            "maximum_packet_size": MAX_PACKET_BYTES,
            # QoS 1 publishes survive a disconnect in the client's queue (in memory only).
            "offline_queue_behavior": (
                mqtt5.ClientOperationQueueBehaviorType.FAIL_QOS0_PUBLISH_ON_DISCONNECT
            ),
            # The SDK's default, named because it matters: IoT Core's limits checked in the
            # client, and its own cap of 100 publishes/s (and 512 KB/s) under the pacer.
            "extended_validation_and_flow_control_options": (
                mqtt5.ExtendedValidationAndFlowControlOptions.AWS_IOT_CORE_DEFAULTS
            ),
            "on_publish_received": self._sdk_publish_received,
            "on_lifecycle_connection_success": self._sdk_connected,
            "on_lifecycle_connection_failure": self._sdk_connect_failed,
            "on_lifecycle_disconnection": self._sdk_disconnected,
            "on_lifecycle_stopped": self._sdk_stopped,
        }

    def _to_loop(self, callback: Callable[..., None], *args: Any) -> None:
        """Hand a callback from an SDK thread to the event loop: the only way in."""
        loop = self._loop
        if loop is None:
            return
        # The loop is closed: the daemon has stopped, and nothing is left to tell.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(callback, *args)

    def _sdk_connected(self, data: Any) -> None:
        self._to_loop(self._on_connected, bool(data.connack_packet.session_present))

    def _sdk_connect_failed(self, data: Any) -> None:
        self._to_loop(self._on_link_down, f"connect failed: {describe(data.exception)}")

    def _sdk_disconnected(self, data: Any) -> None:
        self._to_loop(self._on_link_down, f"disconnected: {describe_disconnect(data)}")

    def _sdk_stopped(self, _data: Any) -> None:
        self._to_loop(self._stopped.set)

    def _sdk_publish_received(self, data: Any) -> None:
        packet = data.publish_packet
        # Take the PUBACK into our own hands (QoS 1 only, and only on an awscrt that offers
        # it): it goes once the command's event is journaled.
        handle = None
        acquire = getattr(data, "acquire_publish_acknowledgement_control", None)
        if acquire is not None:
            with contextlib.suppress(RuntimeError):
                handle = acquire()
        payload = packet.payload
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        self._to_loop(
            self.commands.received_message, str(packet.topic), bytes(payload or b""), handle
        )

    # --- link state (event loop) -----------------------------------------------------------

    def _on_connected(self, session_present: bool) -> None:
        if self._stopping:
            return
        self.follower.link_up()
        self.connects += 1
        log.info(
            "iot-core: connected to %s:%d (session %s)",
            self.iot.endpoint,
            self.iot.port,
            "resumed" if session_present else "new",
        )
        self.commands.connected(session_present)
        self._online.set()

    def _on_link_down(self, error: str) -> None:
        was_connected = self.connected
        self.follower.connected = False
        self._online.clear()
        if self._stopping:
            return
        # Logged once per outage (and when the reason changes), not at every retry.
        if was_connected or self.last_error != error:
            log.warning(
                "iot-core: %s (%d in flight wait for the link)", error, len(self._in_flight)
            )
        self.last_error = error

    # --- journal → IoT Core (event loop) ---------------------------------------------------

    async def _publish_loop(self) -> None:
        while True:
            if self._failure is not None:
                await self._rewind()
            await self._online.wait()
            # Durable events only: stop at the first held one until the disk takes it.
            events = self.follower.read(self._read_pos, READ_BATCH)
            if not events:
                await self._wait_for_work()
                continue
            for event in events:
                if self._failure is not None:
                    break
                if self.follower.finished(event.seq) or event.seq in self._in_flight:
                    self._read_pos = event.seq  # acknowledged before a rewind
                    continue
                if not self.follower.wants(event):
                    self._read_pos = event.seq
                    self.follower.passed_over += 1
                    self.follower.finish(event.seq)
                    continue
                while len(self._in_flight) >= self.max_in_flight:
                    await self._wait_settled()
                await self._online.wait()
                delay = self.pacer.reserve(asyncio.get_running_loop().time())
                if delay > 0:
                    await asyncio.sleep(delay)
                if self._failure is not None:
                    break
                self._publish(event)
                self._read_pos = event.seq

    async def _wait_settled(self) -> None:
        self._settled.clear()
        await self._settled.wait()

    async def _wait_for_work(self) -> None:
        """Until an event past the read position is durable, or a publish failed."""
        durable = asyncio.ensure_future(self.follower.wait_beyond(self._read_pos))
        trouble = asyncio.ensure_future(self._trouble.wait())
        try:
            await asyncio.wait({durable, trouble}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            durable.cancel()
            trouble.cancel()

    async def _rewind(self) -> None:
        """After a failed publish: let the rest settle, back off, go back to the cursor.

        Everything after the cursor that was not acknowledged is sent again, in seq order; what
        was acknowledged meanwhile is skipped.
        """
        while self._in_flight:
            await self._wait_settled()
        delay = self.follower.retry_delay()
        log.warning(
            "iot-core: publish failed (%s); sending again from seq %d in %.1f s",
            self._failure,
            self.cursor + 1,
            delay,
        )
        await asyncio.sleep(delay)
        self._failure = None
        self._trouble.clear()
        self._read_pos = self.cursor

    def _publish(self, event: Event) -> None:
        from awscrt import mqtt5  # noqa: PLC0415 - see _new_client

        packet = mqtt5.PublishPacket(
            payload=event_payload(event, self.gateway_id),
            qos=mqtt5.QoS.AT_LEAST_ONCE,
            topic=self.topic,
            payload_format_indicator=mqtt5.PayloadFormatIndicator.AWS_MQTT5_PFI_UTF8,
            content_type="application/json",
        )
        self._in_flight[event.seq] = event
        self.sent += 1
        try:
            done = asyncio.wrap_future(self._client.publish(packet))
        except Exception as e:  # refused before it was queued
            del self._in_flight[event.seq]
            self._publish_failed(event, describe(e), unsendable=False)
            return
        done.add_done_callback(partial(self._on_publish_done, event))

    def _on_publish_done(self, event: Event, done: asyncio.Future[Any]) -> None:
        self._in_flight.pop(event.seq, None)
        self._settled.set()
        # Read the outcome first, even when stopping: an exception nobody retrieves is logged.
        error = None if done.cancelled() else done.exception()
        if self._stopping:
            return
        if done.cancelled():
            self._publish_failed(event, "cancelled", unsendable=False)
            return
        if error is not None:
            name = getattr(error, "name", "")
            self._publish_failed(event, describe(error), unsendable=name in _UNSENDABLE_ERRORS)
            return
        puback = done.result().puback
        code = None if puback is None else puback.reason_code
        if code is not None and int(code) >= FAILURE_CODE:
            reason = getattr(code, "name", str(code))
            if puback.reason_string:
                reason += f" ({puback.reason_string})"
            self._publish_failed(
                event, f"refused: {reason}", unsendable=int(code) == _PAYLOAD_FORMAT_INVALID
            )
            return
        # NO_MATCHING_SUBSCRIBERS (0x10) is a success: the broker took it.
        self.follower.succeeded()
        self.follower.finish(event.seq)

    def _publish_failed(self, event: Event, error: str, *, unsendable: bool) -> None:
        self.last_error = f"seq {event.seq}: {error}"
        if unsendable:
            self.follower.dead_letter_nowait(event, error)
            return
        if self._failure is None:
            self._failure = f"seq {event.seq}: {error}"
            self._trouble.set()

    # --- stopping --------------------------------------------------------------------------

    async def _stop_client(self) -> None:
        self._stopping = True
        self.commands.stopping = True
        client = self._client
        if client is None:
            return
        try:
            if self.connected:
                await self.commands.flush_acknowledgements(f"fmfb/{self.client_id}/flush")
        finally:
            self.follower.connected = False
            self._online.clear()
            client.stop()
            # Wait (briefly) for the SDK to say it stopped, so its threads are done with us.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_TIMEOUT_S):
                    await self._stopped.wait()
            self._client = None
