"""The broker link's log lines say where it was going, and "lost" only for a link that was up."""

from __future__ import annotations

import asyncio
import logging

import pytest
from mqtt_probe import until

from gateway.config import parse_config
from gateway.devstack.mosquitto import Mosquitto, free_port
from gateway.mqtt_link import AIOMQTT_LOG, LinkClient, MqttLink


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


async def test_an_answer_to_a_subscribe_cancelled_by_a_stop_logs_no_traceback(
    broker: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    """A stop that cancels a subscribe leaves its SUBACK on the way; aiomqtt logs that at ERROR
    with a KeyError's traceback (seen once in CI, in a daemon's log at SIGTERM). Here it is one
    DEBUG line, and nothing at all at the daemon's usual INFO."""
    config = parse_config({"broker": {"port": broker.port}}).broker
    link = MqttLink(config, "fmfb-t-abandon")
    caplog.set_level(logging.DEBUG, logger="mqtt")

    def answered() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "Unexpected message ID" in r.getMessage()]

    async def session(client: LinkClient) -> None:
        pending = asyncio.create_task(client.subscribe([("fmfb/t/abandoned", 1)]))
        await asyncio.sleep(0)  # a yield, not a wait: the subscribe takes its first step
        pending.cancel()
        await asyncio.gather(pending, return_exceptions=True)
        await asyncio.Future()  # until the test, having seen the SUBACK, stops the link

    task = asyncio.create_task(link.run(session))
    try:
        await until(answered, what="the SUBACK for the cancelled subscribe")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert [(r.levelname, r.exc_info, r.exc_text) for r in answered()] == [("DEBUG", None, None)]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]

    caplog.clear()
    caplog.set_level(logging.INFO, logger="mqtt")
    try:
        {}.pop(1)
    except KeyError:  # as aiomqtt logs it
        AIOMQTT_LOG.exception('Unexpected message ID "%d" in on_subscribe callback', 1)
    AIOMQTT_LOG.warning("Message queue is full. Discarding message.")
    assert [r.getMessage() for r in caplog.records] == [
        "Message queue is full. Discarding message."
    ]
