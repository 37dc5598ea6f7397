"""A replayed press that comes back through a rule like the published one is an echo.

``fmfb replay`` tells the running gateway (control op ``expect-echoes``) which events it is
about to send to EventBridge; the gateway leaves an echo credit for each button event, so the
published Lambda's id-less command for it is journaled as rejected (``echo``) and never fed.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from inprocess import journaled

from gateway.config import parse_config
from gateway.control import call
from gateway.devstack.aws import MotoServer
from gateway.devstack.daemon import running
from gateway.events import ClickType, EventType, FeedRejected, FeedRequested
from gateway.replay_targets import EventBridgeTarget
from gateway.wire import RemoteCommand


@pytest.fixture
def moto(monkeypatch: pytest.MonkeyPatch):
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(key, value)
    with MotoServer() as server:
        yield server


def config_for(tmp_path: Path, broker: Any, moto: MotoServer):
    return parse_config(
        {
            "gateway_id": "gw-echo",
            "state_dir": str(tmp_path / "state"),
            "broker": {"port": broker.port, "reconnect_min_s": 0.05, "reconnect_max_s": 0.3},
            "policy": {"min_gap_s": 0, "cap_per_bowl": 1000},
            "buttons": {"pin_factory": "mock", "gpio": [], "mqtt": []},
            # The replay sends to this emulator; the daemon itself has no cloud sink, so the
            # only echo credits it can hold are the ones the replay leaves.
            "sinks": {"eventbridge": {"enabled": False, "endpoint_url": moto.url}},
        }
    )


def published_lambda_command(event_time_ms: int, click: ClickType) -> RemoteCommand:
    """What the published Lambda sends back: the click type and the time, in whole seconds."""
    return RemoteCommand(
        click=click,
        reported_ms=event_time_ms // 1000 * 1000,
        request_id=None,
        bowls=None,
        portion_ms=None,
        expires_at_ms=None,
    )


async def test_a_replayed_press_coming_back_as_a_command_is_an_echo(tmp_path, broker, moto):
    # A bus of its own (moto keeps one state per process), the published rule `feeds`, and an
    # SQS target.
    feeds = moto.setup_feeds(bus=f"feedmyfurbabies-{uuid.uuid4().hex[:8]}")
    config = config_for(tmp_path, broker, moto)
    async with running(config) as daemon:
        assert daemon.intake is not None
        press = await daemon.intake.click_nowait("kitchen", ClickType.SINGLE)
        assert isinstance(press.payload, FeedRequested)

        # The replay, with the live source so that the published rule matches it.
        said: list[str] = []
        target = EventBridgeTarget(
            config,
            bus=feeds.bus,
            source="com.feedmyfurbabies",
            name="echo-test",
            endpoint_url=moto.url,
            batch_size=10,
            say=said.append,
        )
        moved: list[int] = []
        await asyncio.to_thread(target.send, [press], moved.append)
        target.close()
        assert moved == [press.seq]
        arrived = await asyncio.to_thread(
            moto.collect, feeds, lambda seen: len(seen) >= 1, what="the replayed press"
        )
        assert arrived[0]["detail"]["click-type"] == "SINGLE"
        assert arrived[0]["detail"]["replay"]["name"] == "echo-test"
        assert not [s for s in said if "no running gateway" in s]

        # The rule's Lambda turns it into an id-less command: an echo, not a feed.
        echo = await daemon.intake.remote_command_nowait(
            published_lambda_command(press.occurred_at_ms, ClickType.SINGLE)
        )
        assert isinstance(echo.payload, FeedRejected)
        assert echo.payload.reason == "echo"
        # One to one: a second such command in that second is a real request.
        real = await daemon.intake.remote_command_nowait(
            published_lambda_command(press.occurred_at_ms, ClickType.SINGLE)
        )
        assert isinstance(real.payload, FeedRequested)
        assert len(journaled(daemon, EventType.FEED_REQUESTED)) == 2


async def test_expect_echoes_refuses_bad_input_and_counts_only_button_events(
    tmp_path, broker, moto
):
    config = config_for(tmp_path, broker, moto)
    async with running(config) as daemon:
        assert daemon.intake is not None
        press = await daemon.intake.click_nowait("kitchen", ClickType.LONG)
        answer = await asyncio.to_thread(
            call, config.control_path, {"op": "expect-echoes", "seqs": [1, press.seq]}
        )
        assert answer == {"ok": True, "credits": 1}  # seq 1 is GatewayStarted: no click type
        bad = await asyncio.to_thread(
            call, config.control_path, {"op": "expect-echoes", "seqs": ["x"]}
        )
        assert bad["ok"] is False
        assert "seqs" in bad["error"]
        assert daemon.counters.counts["control:seqs"] == 1
