"""Issue 11, faults 5, 8, 9 and 10: the network misbehaving, tried for real.

Each test injects the fault as it happens in the field — a real client publishing huge
payloads, a real broker stopped and started, two real daemons with one id, a real restart
between a press and its echo — and asserts the promise, not the mechanism. The figures they
measure are printed (``pytest -s``) and recorded in docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from daemon_process import DaemonProcess
from inprocess import journaled
from mqtt_probe import Publisher
from waiting import wait_for

from gateway.config import parse_config
from gateway.devstack.aws import MotoServer
from gateway.devstack.daemon import running
from gateway.devstack.mosquitto import Mosquitto
from gateway.events import ClickType, EventType, FeedRejected, FeedRequested
from gateway.wire import RemoteCommand

# --- helpers ---------------------------------------------------------------------------------


def proc_kib(pid: int, field: str) -> int:
    """A field of /proc/PID/status in KiB (VmRSS: now, VmHWM: the peak so far)."""
    text = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    match = re.search(rf"^{field}:\s+(\d+) kB$", text, re.MULTILINE)
    assert match is not None, f"no {field} in /proc/{pid}/status"
    return int(match.group(1))


def link_status(daemon: DaemonProcess) -> dict[str, dict[str, Any]]:
    """Every link the daemon runs, by name: the MQTT buttons and each sink."""
    status = daemon.status()
    links = {i["name"]: i for i in status["inputs"] if i.get("connected") is not None}
    links.update({s["name"]: s for s in status["sinks"]})
    return links


def wait_button_subscribed(daemon: DaemonProcess, presser: Publisher, timeout: float = 15) -> None:
    """A payload that is not a press is counted, never journaled: once status shows the
    count, the button subscription is live."""
    prefix = f"button:{daemon.button_name}:"

    def counted() -> bool:
        presser.publish(daemon.button_topic, b"\x01 not a press")
        return any(k.startswith(prefix) for k in daemon.status()["bad_inputs"])

    wait_for(counted, timeout=timeout, interval=0.05, what="the daemon's button subscription")


def press_journaled(daemon: DaemonProcess, presser: Publisher, within: float = 10) -> None:
    """A real press reaches the journal (the button is not deaf)."""
    before = len(daemon.events(["FeedRequested"]))
    presser.publish(daemon.button_topic, b'{"action":"single"}')
    wait_for(
        lambda: len(daemon.events(["FeedRequested"])) > before,
        timeout=within,
        what="the press to be journaled",
    )


# --- fault 5: oversized messages -------------------------------------------------------------

# FMFB_SOAK=1: the 250 MB payloads (the broker's own limit is 256 MiB).
OVERSIZE_BYTES = 250_000_000 if os.environ.get("FMFB_SOAK") == "1" else 64 * 1024 * 1024
OVERSIZE_COUNT = 4
# The daemon's own footprint plus generous slack; one oversized payload read into memory
# would be 64 MiB on its own, and the issue saw 1.32 GB for four of 250 MB.
RSS_GROWTH_LIMIT_KIB = 40 * 1024


def test_oversized_messages_never_reach_the_gateways_memory(tmp_path: Path) -> None:
    # The broker itself takes packets up to 256 MiB (its protocol maximum): the only thing
    # between a huge payload and the gateway is what the gateway announces.
    with (
        Mosquitto(extra_config=["max_packet_size 268435455"]) as broker,
        DaemonProcess(broker.port, workdir=tmp_path / "d") as daemon,
    ):
        daemon.start()
        daemon.wait_feeder_connected()
        with Publisher.on(broker) as presser:
            wait_button_subscribed(daemon, presser)
            baseline = proc_kib(daemon.pid, "VmRSS")
            big = b"{" + b" " * (OVERSIZE_BYTES - 2) + b"}"
            started = time.monotonic()
            topics = [daemon.button_topic, "cat-feeder/states", "cat-feeder/dispensed"]
            for i in range(OVERSIZE_COUNT):
                presser.publish(topics[i % len(topics)], big, timeout=60)
            # The promise: still listening and well — a press right after is journaled.
            press_journaled(daemon, presser)
            took = time.monotonic() - started
        peak = proc_kib(daemon.pid, "VmHWM")
        print(
            f"\noversize: {OVERSIZE_COUNT} x {OVERSIZE_BYTES >> 20} MiB in {took:.1f} s; "
            f"daemon RSS before {baseline >> 10} MiB, peak {peak >> 10} MiB"
        )
        assert peak - baseline < RSS_GROWTH_LIMIT_KIB, (baseline, peak)
        assert daemon.running
        links = link_status(daemon)
        assert links["mqtt-buttons"]["connected"] and links["feeder"]["connected"], links


# --- fault 8: reconnect after a broker outage ------------------------------------------------

OUTAGE_S = 10.0
RECONNECT_PROMISE_S = 1.0


def test_every_link_is_back_within_a_second_of_the_brokers_return(tmp_path: Path) -> None:
    # The shipped back-off (0.2 s doubling to 30 s), not the quick one other tests use: after
    # a 10 s outage it has grown to several seconds, which is what left the buttons deaf.
    with (
        Mosquitto() as broker,
        DaemonProcess(
            broker.port,
            workdir=tmp_path / "d",
            extra_config={"broker": {"reconnect_min_s": 0.2, "reconnect_max_s": 30.0}},
        ) as daemon,
    ):
        daemon.start()
        wait_for(
            lambda: all(link["connected"] for link in link_status(daemon).values()),
            timeout=15,
            what="every link to connect",
        )
        broker.stop()
        outage_started = time.monotonic()

        # Status says so while the broker is away: no link claims to be connected, each has
        # a reason.
        def all_down() -> dict[str, dict[str, Any]] | None:
            links = link_status(daemon)
            return None if any(link["connected"] for link in links.values()) else links

        down = wait_for(
            all_down,
            timeout=10,
            what="status to show every link down",
        )
        assert all(link["last_error"] for link in down.values()), down
        remaining = OUTAGE_S - (time.monotonic() - outage_started)
        time.sleep(max(0.0, remaining))  # the outage itself: time passing is the fault
        broker.start()
        back = time.monotonic()
        wait_for(
            lambda: all(link["connected"] for link in link_status(daemon).values()),
            timeout=OUTAGE_S,
            interval=0.02,
            what="every link to reconnect",
        )
        reconnect_s = time.monotonic() - back
        print(f"\nreconnect after a {OUTAGE_S:.0f} s broker outage: {reconnect_s:.2f} s")
        assert reconnect_s < RECONNECT_PROMISE_S
        with Publisher.on(broker) as presser:
            wait_button_subscribed(daemon, presser, timeout=RECONNECT_PROMISE_S + 1)
            press_journaled(daemon, presser)


# --- fault 9: two gateways with one id -------------------------------------------------------

CLASH_S = 12.0


def test_a_second_gateway_with_the_same_id_is_reported_not_fought(tmp_path: Path) -> None:
    gateway_id = f"twin-{uuid.uuid4().hex[:6]}"
    with (
        Mosquitto() as broker,
        DaemonProcess(broker.port, workdir=tmp_path / "a", gateway_id=gateway_id) as first,
        DaemonProcess(broker.port, workdir=tmp_path / "b", gateway_id=gateway_id) as second,
    ):
        first.start()
        first.wait_feeder_connected()
        second.start()
        started = time.monotonic()

        def someone_reports_it() -> bool:
            for daemon in (first, second):
                for link in link_status(daemon).values():
                    if "another client uses this id" in (link["last_error"] or ""):
                        return True
            return False

        wait_for(someone_reports_it, timeout=10, what="status to name the id clash")
        time.sleep(max(0.0, CLASH_S - (time.monotonic() - started)))  # let them clash
        takeovers = broker.log_text().count("already connected, closing old connection")
        errors = [
            line
            for d in (first, second)
            for line in d.stderr_text().splitlines()
            if "ERROR" in line and "took the session over" in line
        ]
        print(f"\nsame id, {CLASH_S:.0f} s: {takeovers} takeovers, {len(errors)} ERROR lines")
        # The issue saw ~13 takeovers a second; backing off keeps it under two, and each
        # clash is said once per streak, not once per takeover.
        assert takeovers <= 2 * CLASH_S, takeovers
        assert errors, "no ERROR named the clash"
        assert len(errors) <= 2 * 2  # two daemons, two MQTT links each, at most once each
        assert first.running and second.running


# --- fault 10: echoes across a restart -------------------------------------------------------


@pytest.fixture
def moto(monkeypatch: pytest.MonkeyPatch) -> Any:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(key, value)
    with MotoServer() as server:
        yield server


def lambda_command(press_ms: int, click: ClickType) -> RemoteCommand:
    """What the published Lambda sends back for a press: no id, the time in whole seconds."""
    return RemoteCommand(
        click=click,
        reported_ms=press_ms // 1000 * 1000,
        request_id=None,
        bowls=None,
        portion_ms=None,
        expires_at_ms=None,
    )


def echo_config(tmp_path: Path, broker: Mosquitto, moto: MotoServer, bus: str, window_s: int):
    return parse_config(
        {
            "gateway_id": "gw-echo-restart",
            "state_dir": str(tmp_path / "state"),
            "broker": {"port": broker.port, "reconnect_min_s": 0.05, "reconnect_max_s": 0.3},
            "policy": {"min_gap_s": 0, "cap_per_bowl": 1000},
            "buttons": {"pin_factory": "mock", "gpio": [], "mqtt": []},
            "cloud": {"echo_window_s": window_s},
            "sinks": {"eventbridge": {"endpoint_url": moto.url, "bus": bus, "retry_min_s": 0.05}},
        }
    )


async def test_an_echo_arriving_after_a_restart_is_still_an_echo(
    tmp_path: Path, broker: Mosquitto, moto: MotoServer
) -> None:
    feeds = moto.setup_feeds(bus=f"feedmyfurbabies-{uuid.uuid4().hex[:8]}")
    config = echo_config(tmp_path, broker, moto, feeds.bus, window_s=600)
    async with running(config) as daemon:
        assert daemon.intake is not None
        press = await daemon.intake.click_nowait("kitchen", ClickType.SINGLE)
        assert isinstance(press.payload, FeedRequested)
        await asyncio.to_thread(
            moto.collect, feeds, lambda seen: len(seen) >= 1, what="the press at EventBridge"
        )
    # The gateway restarts; the published Lambda's command for that press arrives after.
    async with running(config) as daemon:
        assert daemon.intake is not None
        echo = await daemon.intake.remote_command_nowait(
            lambda_command(press.occurred_at_ms, ClickType.SINGLE)
        )
        assert isinstance(echo.payload, FeedRejected)
        assert echo.payload.reason == "echo"
        # Fed once in all: the press itself.
        requests = journaled(daemon, EventType.FEED_REQUESTED)
        assert [r.seq for r in requests] == [press.seq]


async def test_the_echo_window_is_the_configured_one(
    tmp_path: Path, broker: Mosquitto, moto: MotoServer
) -> None:
    feeds = moto.setup_feeds(bus=f"feedmyfurbabies-{uuid.uuid4().hex[:8]}")
    config = echo_config(tmp_path, broker, moto, feeds.bus, window_s=1)
    async with running(config) as daemon:
        assert daemon.intake is not None
        press = await daemon.intake.click_nowait("kitchen", ClickType.DOUBLE)
        await asyncio.to_thread(
            moto.collect, feeds, lambda seen: len(seen) >= 1, what="the press at EventBridge"
        )
        # Past the one-second window (the default is ten minutes), the same command is a
        # genuine remote request: the window configured is the one applied.
        await asyncio.sleep(1.5)
        late = await daemon.intake.remote_command_nowait(
            lambda_command(press.occurred_at_ms, ClickType.DOUBLE)
        )
        assert isinstance(late.payload, FeedRequested)


def test_the_iot_core_link_names_a_takeover_when_the_broker_sends_one() -> None:
    # AWS IoT Core sends DISCONNECT 0x8E (Mosquitto 2.0.11 does not: see the test above).
    from awscrt import mqtt5  # noqa: PLC0415 - only this test needs awscrt

    from gateway.sinks.iot_commands import describe_disconnect  # noqa: PLC0415

    taken = mqtt5.LifecycleDisconnectData(
        disconnect_packet=mqtt5.DisconnectPacket(
            reason_code=mqtt5.DisconnectReasonCode.SESSION_TAKEN_OVER
        ),
        exception=RuntimeError("AWS_ERROR_MQTT5_DISCONNECT_RECEIVED"),
    )
    assert describe_disconnect(taken).startswith("another client uses this id")
    lost = mqtt5.LifecycleDisconnectData(exception=RuntimeError("socket closed"))
    assert describe_disconnect(lost) == "socket closed"
