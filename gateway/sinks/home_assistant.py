"""The Home Assistant publisher: discovery, live state, alerts and button triggers on the local
broker (docs/architecture.md, "Home Assistant").

A sink like the others — a :class:`~gateway.sinks.follower.Follower` reading the journal in
order — whose "delivery" is folding each event into :class:`~gateway.home_state.HomeState` and
publishing the retained state topics that changed. At start it folds the journal's recent
window first, so what it publishes after a restart is what it published before.

Its MQTT link is its own, with a last will: the gateway's availability topic says ``offline``
if the gateway vanishes, and ``online`` again when this link reconnects. When Home Assistant
announces ``online`` on its status topic (it restarted), discovery and state are sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from dataclasses import replace

from gateway import __version__
from gateway.alert_watch import home_history
from gateway.config import SinkSettings
from gateway.events import Event, FeedRejected, FeedRequested, Origin
from gateway.ha_discovery import DeviceInfo, HomeTopics, discovery, node_id_of
from gateway.home_state import HomeState, state_messages
from gateway.mqtt_link import LinkClient, MqttLink, message_bytes
from gateway.sinks.base import SinkContext
from gateway.sinks.follower import Follower, Outcome, follow
from gateway.status import SinkStatus

log = logging.getLogger(__name__)

CLOUD_SINKS = ("eventbridge", "iot-core")
TRIGGER_MAX_AGE_MS = 60_000  # a click older than this is history, not a trigger


def topics_of(context: SinkContext) -> HomeTopics:
    cfg = context.config
    return HomeTopics.of(cfg.home_assistant.base_topic, cfg.gateway_id, cfg.topics.availability)


class HomeAssistantPublisher:
    name = "home-assistant"

    def __init__(self, context: SinkContext) -> None:
        cfg = context.config
        self.settings = cfg.home_assistant
        self.context = context
        self.clock = context.clock
        self.zone = cfg.scheduling.zone
        self.plans = [s.plan() for s in cfg.schedule]
        self.topics = topics_of(context)
        self.device = DeviceInfo(
            node_id=node_id_of(cfg.gateway_id),
            name=f"Cat feeder {cfg.gateway_id}",
            version=__version__,
            prefix=self.settings.discovery_prefix,
        )
        self.buttons = [b.name for b in cfg.buttons.gpio] + [b.name for b in cfg.buttons.mqtt]
        self.cloud_sinks = [n for n in CLOUD_SINKS if n.replace("-", "_") in cfg.sinks.configured()]
        journal = context.journal
        # Only what comes after start-up is news; what came before is folded here.
        self.follower = Follower(self.name, SinkSettings(start="tail"), context)
        self.state = HomeState()
        for event in home_history(journal.reader, self.clock.now_ms()):
            self.state.apply(event)
        self.state.seq = max(self.state.seq, journal.visible_seq)
        self.link = MqttLink(
            cfg.broker,
            f"fmfb-{cfg.gateway_id}-home-assistant",
            persistent_session=False,
            will=(self.topics.availability, b"offline"),
        )
        self._published: dict[str, str] = {}
        self._client: LinkClient | None = None
        self.discoveries = 0  # discovery rounds sent (the tests count them)

    def status(self) -> SinkStatus:
        # The follower's record, with this sink's own link (it publishes state, not events).
        return replace(
            self.follower.status(), connected=self.link.connected, last_error=self.link.last_error
        )

    async def run(self) -> None:
        await self.link.run(self._session)

    async def _session(self, client: LinkClient) -> None:
        self._client = client
        self._published = {}  # a new session: send everything again
        try:
            await client.subscribe([(self.settings.status_topic, 1)])
            await client.publish(self.topics.availability, b"online", qos=1, retain=True)
            await self._send_discovery(client)
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(follow(self.follower, self._deliver), name="ha-follow")
                tasks.create_task(self._receive(client), name="ha-receive")
                tasks.create_task(self._refresh(), name="ha-refresh")
        except asyncio.CancelledError:
            # A clean stop sends a DISCONNECT, so the broker keeps the will to itself: say
            # "offline" ourselves, briefly (a broker that is gone must not hold up the stop).
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await client.publish(self.topics.availability, b"offline", qos=1, retain=True)
            raise
        finally:
            self._client = None

    async def _send_discovery(self, client: LinkClient) -> None:
        sinks = self.cloud_sinks
        for topic, payload in discovery(
            self.device, self.topics, buttons=self.buttons, sinks=sinks
        ):
            await client.publish(topic, json.dumps(payload).encode(), qos=1, retain=True)
        self.discoveries += 1
        self._published = {}
        await self._publish_state()

    async def _receive(self, client: LinkClient) -> None:
        async for message in client.messages:
            topic = str(message.topic)
            if topic == self.settings.status_topic and message_bytes(message).strip() == b"online":
                log.info("Home Assistant is online: sending discovery again")
                await self._send_discovery(client)

    async def _refresh(self) -> None:
        # What changes without an event: the backlog, "feeds today" at midnight, next meal.
        while True:
            await asyncio.sleep(self.settings.refresh_s)
            await self._publish_state()

    async def _deliver(self, events: Sequence[Event]) -> Outcome:
        client = self._client
        now = self.clock.now_ms()
        for event in events:
            news = event.seq > self.state.seq
            self.state.apply(event)
            payload = event.payload
            if (
                client is not None
                and news
                and isinstance(payload, FeedRequested | FeedRejected)
                and payload.origin is Origin.BUTTON
                and payload.button is not None
                and payload.click_type is not None
                and now - event.occurred_at_ms <= TRIGGER_MAX_AGE_MS
            ):
                # A device trigger in Home Assistant: not retained (a click happens once).
                topic = self.topics.button(payload.button)
                await client.publish(topic, payload.click_type.value.encode(), qos=1)
        await self._publish_state()
        return Outcome(len(events))

    async def _publish_state(self) -> None:
        client = self._client
        if client is None:
            return
        journal = self.context.journal
        backlog = {}
        for sink in self.cloud_sinks:
            cursor = journal.saved_cursor(sink)
            backlog[sink] = max(0, journal.visible_seq - (cursor or 0))
        messages = state_messages(
            self.state,
            self.topics,
            zone=self.zone,
            now_ms=self.clock.now_ms(),
            clock_synced=self.clock.synced(),
            plans=self.plans,
            backlog=backlog,
        )
        for topic, text in messages.items():
            if self._published.get(topic) != text:
                await client.publish(topic, text.encode(), qos=1, retain=True)
                self._published[topic] = text
