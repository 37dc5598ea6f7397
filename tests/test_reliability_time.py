"""Issue 11, fault 7: a wall clock that steps back, and a Pi clock behind the feeder's.

The promise: caps and gaps hold whatever the wall clock does (they are measured on a clock
that never goes back), and a request reaches a feeder whose clock disagrees with the Pi's
(its expiry travels as a relative ``ttl_ms``). Tried with an injected clock, and with
libfaketime stepping the real daemon's wall clock (monotonic time left alone, as the kernel
does).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from daemon_process import DaemonProcess
from mqtt_probe import Publisher
from test_reliability_network import press_journaled, wait_button_subscribed
from waiting import wait_for

from gateway.clock import FixedClock, SteadyClock
from gateway.devstack.feeder_sim import FeederSim
from gateway.devstack.mosquitto import Mosquitto
from gateway.events import Bowl, ClickType, FeedRequested, Origin
from gateway.policy import Limits, decide
from gateway.state import GatewayState
from gateway.wire import encode_action

FAKETIME_LIB = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
needs_faketime = pytest.mark.skipif(
    not FAKETIME_LIB.exists() and shutil.which("faketime") is None,
    reason="libfaketime is not installed (scripts/install-deps installs it)",
)

DAY_MS = 86_400_000
LIMITS = Limits(cap_per_bowl=3, cap_period_ms=DAY_MS, min_gap_ms=60_000)
STEP_BACK_MS = 30 * 60_000


def request(request_id: str, now_ms: int) -> FeedRequested:
    return FeedRequested(
        request_id=request_id,
        bowls=(Bowl.LEFT,),
        portion_ms=1000,
        expires_at_ms=now_ms + 60_000,
        origin=Origin.BUTTON,
        button="b",
        click_type=ClickType.SINGLE,
    )


def test_back_steps_of_the_wall_clock_never_re_arm_the_gap_or_the_cap() -> None:
    wall = FixedClock()
    clock = SteadyClock(wall)
    state = GatewayState(DAY_MS + 60_000)
    accepted = 0
    # The run: a press, then four 30-minute back-steps with a press after each, all
    # within 8 s of real (monotonic) time.
    for i in range(5):
        if i:
            wall.wall_ms -= STEP_BACK_MS
            wall.mono_ms += 2_000
        now = clock.now_ms()
        outcome = decide(request(f"r{i}", now), state, LIMITS, now)
        state.apply(outcome, at_ms=now)
        accepted += isinstance(outcome, FeedRequested)
    assert accepted == 1
    assert clock.steps_back == 4
    # Real time passing still counts: a minute of monotonic time later the gap is over.
    wall.mono_ms += 60_000
    now = clock.now_ms()
    assert isinstance(decide(request("later", now), state, LIMITS, now), FeedRequested)


def test_a_forward_step_is_followed() -> None:
    wall = FixedClock()
    clock = SteadyClock(wall)
    before = clock.now_ms()
    wall.wall_ms += 3_600_000  # NTP sets a clock that was an hour behind
    assert clock.now_ms() == before + 3_600_000


def test_a_restart_never_goes_below_the_journals_newest_time() -> None:
    wall = FixedClock(now_ms=1_000_000)
    assert SteadyClock(wall, floor_ms=5_000_000).now_ms() == 5_000_000


# --- against the real daemon, its wall clock stepped by libfaketime ---------------------------


def buttons_received(daemon: DaemonProcess) -> int:
    (buttons,) = [i for i in daemon.status()["inputs"] if i["name"] == "mqtt-buttons"]
    return int(buttons["received"])


def faketime_env(timestamp_file: Path) -> dict[str, str]:
    """The daemon's wall clock offset by what ``timestamp_file`` says (re-read on every call);
    CLOCK_MONOTONIC untouched, as a real clock step leaves it."""
    return {
        "LD_PRELOAD": str(FAKETIME_LIB),
        "FAKETIME_TIMESTAMP_FILE": str(timestamp_file),
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }


@needs_faketime
def test_the_real_daemon_keeps_its_caps_across_clock_steps_back(tmp_path: Path) -> None:
    offset = tmp_path / "faketime"
    offset.write_text("+0\n", encoding="ascii")
    policy = {"cap_per_bowl": 3, "cap_period_s": 86_400, "min_gap_s": 60}
    with (
        Mosquitto() as broker,
        DaemonProcess(
            broker.port, workdir=tmp_path / "d", policy=policy, env=faketime_env(offset)
        ) as daemon,
    ):
        daemon.start()
        with Publisher.on(broker) as presser:
            wait_button_subscribed(daemon, presser)
            press_journaled(daemon, presser)
            for step in range(1, 5):
                offset.write_text(f"-{30 * step}m\n", encoding="ascii")
                before = buttons_received(daemon)
                presser.publish(daemon.button_topic, b'{"action":"single"}')
                # A press is decided in the step that receives it.
                wait_for(
                    lambda before=before: buttons_received(daemon) > before,
                    timeout=10,
                    what=f"the press after back-step {step} to be decided",
                )
        assert daemon.stop() == 0  # journals the summary of presses only counted
        requests = daemon.events(["FeedRequested"])
        rejected = daemon.events(["FeedRejected"])
        summaries = daemon.events(["InputsSuppressed"])
        counted = {k: n for e in summaries for k, n in e.payload.counts.items()}
        print(f"\n5 presses across four 30-min back-steps: {len(requests)} accepted")
        assert len(requests) == 1
        # The other four were refused (one journaled, repeats within 10 s only counted), and
        # all for the gap: not one looked like a press half an hour later.
        assert {r.payload.reason for r in rejected} == {"too-soon"}
        assert len(rejected) + sum(counted.values()) == 4
        assert set(counted) <= {f"button:{daemon.button_name}:too-soon"}


@needs_faketime
def test_a_pi_clock_ten_minutes_behind_a_synced_feeder_still_feeds(tmp_path: Path) -> None:
    offset = tmp_path / "faketime"
    offset.write_text("-10m\n", encoding="ascii")
    with (
        Mosquitto() as broker,
        DaemonProcess(
            broker.port,
            workdir=tmp_path / "d",
            env=faketime_env(offset),
            # A minute to live: by the Pi's clock the request expires nine minutes before the
            # feeder's NTP time; only a relative expiry reaches it alive.
            feeding={"expiry_s": 60},
        ) as daemon,
        FeederSim(broker.host, broker.port, clock_synced=True) as feeder,
    ):
        daemon.start()
        daemon.wait_feeder_connected()
        with Publisher.on(broker) as presser:
            wait_button_subscribed(daemon, presser)
            press_journaled(daemon, presser)
        feeder.wait_until(lambda: feeder.decisions, timeout=10, what="the feeder's decision")
        assert feeder.refused == []
        feeder.wait_until(lambda: feeder.runs, timeout=10, what="the motors to run")


def test_the_action_carries_the_time_left_as_ttl_ms() -> None:
    sent = request("r", 1_000_000)  # expires at 1,060,000
    with_ttl = json.loads(
        encode_action(sent, event=ClickType.SINGLE, reported_time_ms=1_000_000, now_ms=1_010_000)
    )
    assert with_ttl["ttl_ms"] == 50_000
    assert with_ttl["expires_at_ms"] == 1_060_000  # still there for older firmware
    late = encode_action(sent, event=ClickType.SINGLE, reported_time_ms=0, now_ms=2_000_000)
    assert json.loads(late)["ttl_ms"] == 0
    assert "ttl_ms" not in json.loads(
        encode_action(sent, event=ClickType.SINGLE, reported_time_ms=0)
    )
