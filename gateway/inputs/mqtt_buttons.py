"""MQTT buttons: a topic per button; zigbee2mqtt-style ``{"action": ...}`` or a bare click.

The session is clean (not persistent) on purpose: a press made while the gateway was away was
never accepted, and feeding it hours later, when the broker hands over a queued message, would
surprise everyone. Presses that reach a running gateway are journaled at once.

A retained message is never a press: the broker hands it to every new subscriber, so a
retained "single" planted on a button's topic would feed at every gateway restart. It is
counted as bad input (field ``retain``) and logged; the subscription keeps the retain flag on
live messages too (retain-as-published), so a retained publish is refused the first time.
"""

from __future__ import annotations

import logging

from gateway.config import BrokerConfig, MqttButtonConfig
from gateway.counters import InputCounters
from gateway.errors import PayloadError
from gateway.intake import Intake
from gateway.mqtt_link import LinkClient, MqttLink, message_bytes
from gateway.status import InputStatus
from gateway.wire import decode_button

log = logging.getLogger(__name__)

RETAINED = PayloadError(
    "retain",
    "a retained message is not a press (the broker would replay it at every restart); "
    "clear it with: mosquitto_pub -r -n -t TOPIC",
)


class MqttButtons:
    name = "mqtt-buttons"

    def __init__(
        self,
        buttons: list[MqttButtonConfig],
        broker: BrokerConfig,
        client_id: str,
        intake: Intake,
        counters: InputCounters,
    ) -> None:
        self.by_topic = {b.topic: b.name for b in buttons}
        self.intake = intake
        self.counters = counters
        self.link = MqttLink(broker, client_id, persistent_session=False)
        self.received = 0

    async def open(self) -> None:
        pass  # the link connects in run(), and keeps trying: a broker may come up later

    async def run(self) -> None:
        await self.link.run(self._session)

    async def close(self) -> None:
        pass  # cancelling run() ends the session

    def status(self) -> InputStatus:
        return InputStatus(self.name, self.link.connected, self.link.last_error, self.received)

    async def _session(self, client: LinkClient) -> None:
        await client.subscribe([(topic, 1) for topic in self.by_topic], retain_as_published=True)
        async for message in client.messages:
            topic = str(message.topic)
            button = self.by_topic.get(topic)
            if button is None:
                continue
            payload = message_bytes(message)
            if message.retain:
                if payload:  # an empty one is someone clearing a retained message: no input
                    self.counters.bad_input(f"button:{button}", RETAINED, payload)
                continue
            try:
                click = decode_button(payload)
            except PayloadError as e:
                self.counters.bad_input(f"button:{button}", e, payload)
                continue
            if click is None:
                continue  # a known message that is not a press (z2m "release", battery reports)
            self.received += 1
            self.intake.click_nowait(button, click)
