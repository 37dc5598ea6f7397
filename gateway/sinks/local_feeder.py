"""The local feeder sink: journaled feed requests → ``cat-feeder/action`` on the local broker.

It reads FeedRequested events from its cursor and publishes each at QoS 1 with an MQTT 5
message expiry, so the broker drops a request the feeder could only get stale. It also listens
to the feeder — acknowledgements, food level, availability — and journals what changed.

Why the cursor moves on the broker's PUBACK and not on the feeder's acknowledgement: a feeder
that is away must not block the gateway. Its persistent session and the message expiry decide
what reaches it; its acknowledgement is a separate event, and one that never comes becomes
FeedUnconfirmed after ``feeding.ack_timeout_s``.

Replays never come here: a replay reads the journal and sends to a cloud or file target; this
sink only ever reads live events from its own cursor, so a replayed request can never feed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
from collections.abc import Sequence
from typing import Final

from paho.mqtt.packettypes import PacketTypes

from gateway.config import FeederSinkConfig
from gateway.errors import PayloadError
from gateway.events import (
    Event,
    FeedRejected,
    FeedRequested,
    FeedUnconfirmed,
    Origin,
    RefusedBy,
    RejectReason,
)
from gateway.mqtt_link import LinkClient, MqttLink, message_bytes, mqtt_properties
from gateway.sinks.base import SinkContext, SinkStatus
from gateway.sinks.follower import Follower, Outcome, follow
from gateway.state import RequestStatus, acknowledgement_event, availability_event, food_level_event
from gateway.wire import (
    click_for_bowls,
    decode_availability,
    decode_dispensed,
    decode_states,
    encode_action,
    message_expiry_s,
)

log = logging.getLogger(__name__)

READ_BATCH: Final = 100


class LocalFeederSink:
    name = "feeder"

    def __init__(self, context: SinkContext, settings: FeederSinkConfig) -> None:
        config = context.config
        self.config = config
        self.topics = config.topics
        self.journal = context.journal
        self.intake = context.intake
        self.clock = context.clock
        self.counters = context.counters
        self.link = MqttLink(
            config.broker,
            config.broker.client_id or f"fmfb-{config.gateway_id}-feeder",
            persistent_session=True,
        )
        # Feeding never waits on the disk: a request held in memory (the disk refusing writes)
        # is sent too. The cursor is written on every move: each is a feed.
        self.follower = Follower(self.name, settings, context, durable_only=False)
        # request id -> monotonic ms by which the feeder should have answered.
        self._deadlines: dict[str, int] = {}
        self._deadline_changed = asyncio.Event()
        self.published = 0

    @property
    def cursor(self) -> int:
        return self.follower.cursor

    def status(self) -> SinkStatus:
        # The link is the MQTT session's, with its own reconnect loop.
        return dataclasses.replace(
            self.follower.status(), connected=self.link.connected, last_error=self.link.last_error
        )

    async def run(self) -> None:
        # Requests still unanswered from before a restart get a fresh deadline.
        timeout_ms = self.config.feeding.ack_timeout_s * 1000
        for record in self.intake.state.awaiting_ack():
            self._deadlines[record.request.request_id] = self.clock.monotonic_ms() + timeout_ms
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.link.run(self._session), name="feeder-link")
            tasks.create_task(self._watch_acknowledgements(), name="feeder-acks")

    async def _session(self, client: LinkClient) -> None:
        await client.subscribe(
            [(self.topics.dispensed, 1), (self.topics.states, 1), (self.topics.availability, 1)]
        )
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(
                follow(
                    self.follower, functools.partial(self._deliver_batch, client), batch=READ_BATCH
                ),
                name="feeder-publish",
            )
            tasks.create_task(self._receive_loop(client), name="feeder-receive")

    # --- journal → feeder ------------------------------------------------------------------

    async def _deliver_batch(self, client: LinkClient, events: Sequence[Event]) -> Outcome:
        """Publish each request in turn. The cursor moves over one only with the broker's
        PUBACK in hand; a lost link raises out of here and ends the session, which
        reconnects and sends from the cursor again."""
        for event in events:
            if isinstance(event.payload, FeedRequested):
                await self._deliver(client, event, event.payload)
            self.follower.advance(event.seq)  # a crash before this line sends it again
        return Outcome(len(events))

    async def _deliver(self, client: LinkClient, event: Event, request: FeedRequested) -> None:
        record = self.intake.state.requests.get(request.request_id)
        if record is not None and record.status is not RequestStatus.REQUESTED:
            return  # already answered (we are re-reading after a restart): not a command now
        now = self.clock.now_ms()
        if now >= request.expires_at_ms:
            # It waited in the journal (broker down) past its expiry: say so, never feed late.
            log.warning("request %s expired before it could be sent", request.request_id)
            await self.intake.record(
                FeedRejected.of(request, RejectReason.EXPIRED.value, RefusedBy.GATEWAY),
                Origin.GATEWAY,
            )
            return
        click = request.click_type or click_for_bowls(
            request.bowls, self.config.feeding.click_bowls()
        )
        props = mqtt_properties(PacketTypes.PUBLISH)
        props.MessageExpiryInterval = message_expiry_s(request.expires_at_ms, now)
        await client.publish(
            self.topics.action,
            encode_action(request, event=click, reported_time_ms=event.occurred_at_ms),
            qos=1,
            properties=props,
        )
        self.published += 1
        timeout_ms = self.config.feeding.ack_timeout_s * 1000
        self._deadlines[request.request_id] = self.clock.monotonic_ms() + timeout_ms
        self._deadline_changed.set()

    # --- feeder → journal ------------------------------------------------------------------

    async def _receive_loop(self, client: LinkClient) -> None:
        async for message in client.messages:
            topic = str(message.topic)
            payload = message_bytes(message)
            try:
                await self._on_report(topic, payload)
            except PayloadError as e:
                self.counters.bad_input(f"mqtt:{topic}", e, payload)

    async def _on_report(self, topic: str, payload: bytes) -> None:
        state = self.intake.state
        if topic == self.topics.dispensed:
            report = decode_dispensed(payload)
            answer = acknowledgement_event(state, report)
            if answer is None:
                self.counters.note("feeder:ack-unknown-or-repeated")
                return
            self._deadlines.pop(report.request_id, None)
            await self.intake.record(answer, Origin.FEEDER)
        elif topic == self.topics.states:
            level = decode_states(payload).food_capacity
            change = None if level is None else food_level_event(state, level)
            if change is not None:
                await self.intake.record(change, Origin.FEEDER)
        elif topic == self.topics.availability:
            availability = availability_event(state, decode_availability(payload))
            if availability is not None:
                await self.intake.record(availability, Origin.FEEDER)

    async def _watch_acknowledgements(self) -> None:
        """Journal FeedUnconfirmed for each request the feeder left unanswered too long."""
        while True:
            now = self.clock.monotonic_ms()
            for request_id, deadline in sorted(self._deadlines.items(), key=lambda kv: kv[1]):
                if deadline > now:
                    break
                del self._deadlines[request_id]
                record = self.intake.state.requests.get(request_id)
                if record is None or record.status is not RequestStatus.REQUESTED:
                    continue
                waited = self.config.feeding.ack_timeout_s * 1000
                log.warning("feeder did not acknowledge request %s in %d ms", request_id, waited)
                await self.intake.record(
                    FeedUnconfirmed(request_id, record.request.bowls, waited), Origin.GATEWAY
                )
            next_deadline = min(self._deadlines.values(), default=None)
            wait_s = 60.0 if next_deadline is None else max(0.0, (next_deadline - now) / 1000)
            self._deadline_changed.clear()
            # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancellation that
            # lands as the event is set (a publish at shutdown), and this loop never ends.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await self._deadline_changed.wait()
