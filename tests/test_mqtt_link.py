"""The broker link's log lines say where it was going, and "lost" only for a link that was up."""

from __future__ import annotations

import asyncio
import logging

import pytest
from mqtt_probe import until

from gateway.config import parse_config
from gateway.devstack.mosquitto import Mosquitto, free_port
from gateway.mqtt_link import LinkClient, MqttLink


async def test_a_link_that_never_connected_is_not_lost(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    broker = parse_config({"broker": {"port": port, "reconnect_min_s": 0.05}}).broker
    link = MqttLink(broker, "fmfb-t-feeder")
    caplog.set_level(logging.WARNING, logger="gateway.mqtt_link")
    task = asyncio.create_task(link.run(lambda _c: asyncio.Future()))
    try:
        await until(lambda: link.last_error, what="the first refusal")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    lines = [r.getMessage() for r in caplog.records]
    assert lines, "nothing logged"
    assert f"fmfb-t-feeder: cannot connect to the broker at 127.0.0.1:{port}" in lines[0]
    assert not any("lost" in line for line in lines), lines


async def test_a_link_that_drops_is_lost_with_its_address(
    broker: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    config = parse_config({"broker": {"port": broker.port, "reconnect_min_s": 0.05}}).broker
    link = MqttLink(config, "fmfb-t-feeder")
    caplog.set_level(logging.WARNING, logger="gateway.mqtt_link")

    async def session(client: LinkClient) -> None:
        async for _message in client.messages:  # raises MqttError when the link drops
            pass

    task = asyncio.create_task(link.run(session))
    try:
        await until(lambda: link.connected, what="the link")
        broker.stop()
        await until(lambda: not link.connected, what="the drop")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    lines = [r.getMessage() for r in caplog.records]
    assert any(
        f"fmfb-t-feeder: broker link to 127.0.0.1:{broker.port} lost" in line for line in lines
    ), lines
