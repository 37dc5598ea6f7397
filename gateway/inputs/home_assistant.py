"""Commands from Home Assistant: the feed buttons, "skip next meal" and the portion number
(docs/architecture.md, "Home Assistant"). The publisher of discovery and state is the sink
``gateway/sinks/home_assistant.py``; the topics are ``gateway/ha_discovery.py``'s.

A feed press becomes a FeedCommand with origin ``home-assistant`` through the intake and its
policy, with its own id, exactly like ``fmfb feed``; "skip next meal" is the schedule's own
``skip_next`` (journaled ``MealSkipped``). The portion lives on a retained topic, so it is
read back after a restart; a portion out of range is counted as bad input and ignored.

Clean session, like the MQTT buttons: a press made while the gateway was away was never
accepted, and feeding it later would surprise everyone.
"""

from __future__ import annotations

import logging

from gateway.config import BrokerConfig
from gateway.counters import InputCounters
from gateway.errors import PayloadError, ScheduleError
from gateway.events import Origin
from gateway.ha_discovery import (
    FEED_CHOICES,
    PORTION_MAX_MS,
    PORTION_MIN_MS,
    SKIP_PAYLOAD,
    HomeTopics,
)
from gateway.inputs.schedule import ScheduleInput
from gateway.intake import FeedCommand, Intake
from gateway.mqtt_link import LinkClient, MqttLink, message_bytes
from gateway.status import InputStatus

log = logging.getLogger(__name__)


def parse_portion(payload: bytes) -> int:
    try:
        value = int(float(payload.decode().strip()))
    except (UnicodeDecodeError, ValueError):
        raise PayloadError("portion", f"not a number: {payload[:40]!r}") from None
    if not PORTION_MIN_MS <= value <= PORTION_MAX_MS:
        raise PayloadError("portion", f"must be {PORTION_MIN_MS}..{PORTION_MAX_MS} ms")
    return value


class HomeAssistantCommands:
    name = "home-assistant"

    def __init__(
        self,
        topics: HomeTopics,
        broker: BrokerConfig,
        client_id: str,
        intake: Intake,
        counters: InputCounters,
        *,
        schedule: ScheduleInput | None,
    ) -> None:
        self.topics = topics
        self.intake = intake
        self.counters = counters
        self.schedule = schedule
        self.portion_ms: int | None = None  # None: the configured default
        self.link = MqttLink(broker, client_id, persistent_session=False)
        self.received = 0

    async def open(self) -> None:
        pass

    async def run(self) -> None:
        await self.link.run(self._session)

    async def close(self) -> None:
        pass

    def status(self) -> InputStatus:
        portion = "default" if self.portion_ms is None else f"{self.portion_ms} ms"
        return InputStatus(
            self.name,
            self.link.connected,
            self.link.last_error,
            self.received,
            detail=f"portion {portion}",
        )

    async def _session(self, client: LinkClient) -> None:
        t = self.topics
        await client.subscribe([(t.feed, 1), (t.skip, 1), (t.portion_set, 1), (t.portion, 1)])
        async for message in client.messages:
            topic = str(message.topic)
            payload = message_bytes(message)
            try:
                await self._on_message(client, topic, payload)
            except PayloadError as e:
                self.counters.bad_input(f"home-assistant:{topic}", e, payload)

    async def _on_message(self, client: LinkClient, topic: str, payload: bytes) -> None:
        t = self.topics
        text = payload.decode(errors="replace").strip()
        if topic == t.portion:  # our own retained state: read back after a restart
            self.portion_ms = parse_portion(payload)
        elif topic == t.portion_set:
            self.portion_ms = parse_portion(payload)
            await client.publish(t.portion, str(self.portion_ms).encode(), qos=1, retain=True)
        elif topic == t.feed:
            bowls = FEED_CHOICES.get(text.lower())
            if bowls is None:
                raise PayloadError("feed", f"{text[:20]!r} is not one of left, right, both")
            self.received += 1
            self.intake.request_feed_nowait(
                FeedCommand(bowls=bowls, origin=Origin.HOME_ASSISTANT, portion_ms=self.portion_ms)
            )
        elif topic == t.skip:
            if text != SKIP_PAYLOAD:
                raise PayloadError("skip", f"expected {SKIP_PAYLOAD}")
            if self.schedule is None:
                raise PayloadError("skip", "no [[schedule]] is configured")
            self.received += 1
            try:
                self.schedule.skip_next(None, Origin.HOME_ASSISTANT)
            except ScheduleError as e:
                log.warning("Home Assistant asked to skip the next meal: %s", e)
