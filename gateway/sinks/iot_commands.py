"""Remote feed commands from IoT Core: the input that rides on the IoT Core sink's connection.

One MQTT session per IoT thing carries both directions, so the sink owns the connection and
hands every message on ``command_topic`` to :class:`RemoteCommands`. Each goes through
:func:`gateway.wire.decode_remote_command` to :meth:`gateway.intake.Intake.remote_command_nowait`,
which journals exactly one event: a request, or a rejection (``duplicate``, ``echo``, the
caps) — never a second feed for the same id. Input that cannot be understood is counted
(``iot:<topic>``) and dropped, never journaled.

Journal first, for cloud input too: a command's PUBACK is sent only once its event is in the
journal (durable, or held while the disk refuses writes), so a daemon that dies in between gets
the command again (with an awscrt that offers manual acknowledgement; an older one acknowledges
on receipt). The subscription is made again whenever the broker has lost the session (the SDK
does not do it).

Everything here runs on the event loop; the sink hands SDK callbacks over with
``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Final

from gateway.backoff import Backoff
from gateway.counters import InputCounters
from gateway.errors import PayloadError
from gateway.intake import Intake
from gateway.status import InputStatus
from gateway.wire import decode_remote_command

log = logging.getLogger("gateway.sinks.iot_core")

FLUSH_TIMEOUT_S: Final = 1.0
FAILURE_CODE: Final = 0x80  # MQTT 5 reason codes from 0x80 up are failures


def retrieve(future: asyncio.Future[Any]) -> None:
    """Mark an SDK future's exception as seen (it is handled, or moot, where it is awaited)."""
    if not future.cancelled():
        future.exception()


def describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


SESSION_TAKEN_OVER: Final = 0x8E


def describe_disconnect(data: Any) -> str:
    """Why the SDK's client lost its link: a takeover by another client with our id is named
    as such (so status and the log say it), anything else by its exception."""
    packet = getattr(data, "disconnect_packet", None)
    code = getattr(getattr(packet, "reason_code", None), "value", None)
    if code == SESSION_TAKEN_OVER:
        return "another client uses this id: the broker handed our session to it (0x8E)"
    return describe(data.exception)


class RemoteCommands:
    name = "iot-commands"

    def __init__(self, topic: str, intake: Intake, counters: InputCounters, retry: Backoff) -> None:
        self.topic = topic
        self.intake = intake
        self.counters = counters
        self.client: Any = None  # the sink's awsiotsdk client, once built
        self.stopping = False
        self.received = 0
        self.bad = 0
        self.subscribed = False  # the command topic, by this process, on this session
        self.last_error: str | None = None
        self._retry = retry
        self._need_subscribe = asyncio.Event()
        self._acks_unflushed = 0

    def status(self, connected: bool) -> InputStatus:
        return InputStatus(self.name, connected and self.subscribed, self.last_error, self.received)

    def connected(self, session_present: bool) -> None:
        """The link is up. The broker forgot our subscription with the session, and the SDK
        does not subscribe again by itself. On a resumed session it is still there — unless
        this process never made it (a changed command topic must not wait for the session to
        expire)."""
        if not session_present or not self.subscribed:
            self.subscribed = False
            self._need_subscribe.set()

    def received_message(self, topic: str, payload: bytes, ack_handle: Any) -> None:
        if self.stopping:
            return  # not taken in, not acknowledged: the broker sends it to the next run
        self.received += 1
        try:
            command = decode_remote_command(payload)
        except PayloadError as e:
            self.bad += 1
            self.counters.bad_input(f"iot:{topic}", e, payload)
            self._acknowledge(ack_handle)  # nothing will ever make it readable: no redelivery
            return
        try:
            future = self.intake.remote_command_nowait(command)
        except Exception:
            log.exception("iot-core: command from %s could not be taken in", topic)
            self._acknowledge(ack_handle)
            return
        future.add_done_callback(lambda _f: self._acknowledge(ack_handle))

    def _acknowledge(self, handle: Any) -> None:
        client = self.client
        if handle is None or client is None or self.stopping:
            return
        try:
            client.invoke_publish_acknowledgement(handle)
        except Exception as e:  # the link dropped meanwhile: the broker sends it again
            log.debug("iot-core: PUBACK for a command not sent: %s", e)
        else:
            self._acks_unflushed += 1

    async def subscribe_loop(self, is_connected: Any) -> None:
        """Subscribe whenever the link asks for it; ``is_connected()`` says if it is up."""
        from awscrt import mqtt5  # noqa: PLC0415 - only when the IoT Core sink runs

        while True:
            await self._need_subscribe.wait()
            self._need_subscribe.clear()
            if not is_connected():
                continue  # the next connection asks again
            packet = mqtt5.SubscribePacket(
                subscriptions=[mqtt5.Subscription(self.topic, mqtt5.QoS.AT_LEAST_ONCE)]
            )
            error = await self._subscribe(packet)
            if error is not None:
                self.last_error = f"subscribe to {self.topic}: {error}"
                log.warning("iot-core: %s", self.last_error)
                await asyncio.sleep(self._retry.next_delay())
                self._need_subscribe.set()
                continue
            self.subscribed = True
            self.last_error = None
            self._retry.reset()
            log.info("iot-core: listening for commands on %s", self.topic)

    async def _subscribe(self, packet: Any) -> str | None:
        """Subscribe; None when granted, else what went wrong."""
        try:
            # Shielded: cancelling the wrapper would cancel the SDK's own future, which it then
            # fails to complete from its thread.
            subscribed = asyncio.wrap_future(self.client.subscribe(packet))
            subscribed.add_done_callback(retrieve)
            suback = await asyncio.shield(subscribed)
        except Exception as e:  # an AwsCrtError: the link dropped, or the client refused it
            return describe(e)
        refused = [c for c in suback.reason_codes or () if int(c) >= FAILURE_CODE]
        if refused:
            return "refused: " + ", ".join(getattr(c, "name", str(c)) for c in refused)
        return None

    async def flush_acknowledgements(self, flush_topic: str) -> None:
        """Let the PUBACKs of commands just journaled reach the broker before the DISCONNECT.

        Without this a stop right after a command was journaled can cut its PUBACK off, and
        the next run gets the command again (harmless — a duplicate id is rejected, the gap
        rule stops an id-less one — but needless). The client sends in order, so the answer to
        an UNSUBSCRIBE of a filter never used comes back only after the broker read them.
        """
        if not self._acks_unflushed or self.client is None:
            return
        from awscrt import mqtt5  # noqa: PLC0415

        packet = mqtt5.UnsubscribePacket(topic_filters=[flush_topic])
        with contextlib.suppress(Exception):
            async with asyncio.timeout(FLUSH_TIMEOUT_S):
                done = asyncio.wrap_future(self.client.unsubscribe(packet))
                done.add_done_callback(retrieve)
                await asyncio.shield(done)
        self._acks_unflushed = 0
