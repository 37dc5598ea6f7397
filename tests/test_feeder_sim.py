"""The feeder simulator (gateway/devstack/feeder_sim.py) against a real Mosquitto.

A paho probe stands where the gateway would: it publishes on ``cat-feeder/action`` and records
what the simulator reports on ``cat-feeder/dispensed``, ``cat-feeder/states`` and
``cat-feeder/availability``. The decisions are the firmware's own (firmware/feeder_logic.py).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_probe import Probe, Received

from gateway.devstack.feeder_sim import FeederSim, MotorRun
from gateway.devstack.mosquitto import Mosquitto

ACTION = "cat-feeder/action"
DISPENSED = "cat-feeder/dispensed"
STATES = "cat-feeder/states"
AVAILABILITY = "cat-feeder/availability"
TIMEOUT = 15.0


def action(
    request_id: str,
    bowls: list[str],
    *,
    portion_ms: int = 1000,
    event: str = "SINGLE",
    expires_in_ms: int = 600_000,
) -> bytes:
    now = time.time_ns() // 1_000_000
    body = {
        "event": event,
        "reportedTime": "2026-11-28T01:00:00.000Z",
        "id": request_id,
        "bowls": bowls,
        "portion_ms": portion_ms,
        "expires_at_ms": now + expires_in_ms,
    }
    return json.dumps(body, separators=(",", ":")).encode()


def new_id() -> str:
    return str(uuid.uuid4())


def acks_for(gateway: Probe, request_id: str) -> list[dict[str, Any]]:
    return [m.json() for m in gateway.messages(DISPENSED) if m.json()["id"] == request_id]


def wait_acks(gateway: Probe, request_id: str, n: int) -> list[dict[str, Any]]:
    gateway.wait_messages(
        lambda ms: sum(1 for m in ms if m.json()["id"] == request_id) >= n,
        topic=DISPENSED,
        timeout=TIMEOUT,
        what=f"{n} acknowledgement(s) of {request_id}",
    )
    return acks_for(gateway, request_id)


def levels(gateway: Probe) -> list[int]:
    return [m.json()["food_capacity"] for m in gateway.messages(STATES)]


@pytest.fixture
def gateway(broker: Mosquitto) -> Iterator[Probe]:
    with Probe(broker.host, broker.port, subscribe=[DISPENSED, STATES, AVAILABILITY]) as probe:
        yield probe


@pytest.fixture
def sim(broker: Mosquitto, gateway: Probe, tmp_path: Path) -> Iterator[FeederSim]:
    # After the gateway probe: it hears the simulator's first (not retained) food level.
    feeder = FeederSim(
        broker.host,
        broker.port,
        client_id=f"sim-{uuid.uuid4().hex[:8]}",
        memory_path=tmp_path / "flash.json",
        food_per_motor_ms=0.001,  # 1 s of one motor = 1 %
    )
    with feeder:
        yield feeder


def test_action_runs_the_motor_acknowledges_and_reports_the_food_level(
    sim: FeederSim, gateway: Probe
) -> None:
    gateway.wait_messages(bool, topic=STATES, what="the initial food level")
    assert levels(gateway) == [100]
    assert sim.food_level == 100

    rid = new_id()
    started = time.monotonic()
    gateway.publish(ACTION, action(rid, ["left", "right"], portion_ms=10_000, event="LONG"))
    (ack,) = wait_acks(gateway, rid, 1)
    # 10 s of motor is 10 ms of real time at the default scale: not a real 10 s.
    assert time.monotonic() - started < 5

    assert ack == {
        "id": rid,
        "status": "served",
        "reason": None,
        "bowls": ["left", "right"],
        "ran_ms": 10_000,
    }
    assert sim.runs == [MotorRun(rid, ("left", "right"), 10_000)]
    # Two motors for 10 s at 1 % per motor-second: 20 % gone, and said so on states.
    gateway.wait_messages(lambda ms: len(ms) >= 2, topic=STATES, what="the new food level")
    assert levels(gateway) == [100, 80]
    assert sim.food_level == 80
    assert sim.received == 1
    assert sim.acks_sent == [ack]


def test_the_same_id_twice_runs_once_and_the_second_is_refused_as_duplicate(
    sim: FeederSim, gateway: Probe
) -> None:
    rid = new_id()
    message = action(rid, ["left"])
    gateway.publish(ACTION, message)
    wait_acks(gateway, rid, 1)
    gateway.publish(ACTION, message)
    first, second = wait_acks(gateway, rid, 2)

    # The duplicate did reach the simulator: it was refused there, not lost on the way.
    assert sim.received == 2
    assert sim.received_ids == [rid, rid]
    assert first["status"] == "served"
    assert second["status"] == "refused"
    assert second["reason"] == "duplicate"
    assert second["ran_ms"] == 0
    assert sim.runs_for(rid) == [MotorRun(rid, ("left",), 1000)]
    assert sim.duplicates_refused == 1
    assert sim.refused == [(rid, "duplicate")]


def test_a_restarted_simulator_with_the_same_flash_still_refuses_a_served_id(
    broker: Mosquitto, gateway: Probe, tmp_path: Path
) -> None:
    flash = tmp_path / "flash.json"
    client_id = f"sim-{uuid.uuid4().hex[:8]}"
    rid = new_id()
    with FeederSim(broker.host, broker.port, client_id=client_id, memory_path=flash) as first:
        gateway.publish(ACTION, action(rid, ["right"], event="DOUBLE"))
        wait_acks(gateway, rid, 1)
        assert first.runs == [MotorRun(rid, ("right",), 1000)]
    assert rid in flash.read_text(encoding="utf-8")

    with FeederSim(broker.host, broker.port, client_id=client_id, memory_path=flash) as second:
        gateway.publish(ACTION, action(rid, ["right"], event="DOUBLE"))
        _, again = wait_acks(gateway, rid, 2)
        second.wait_until(lambda: second.received >= 1, TIMEOUT, "the redelivered request")
        assert again["status"] == "refused"
        assert again["reason"] == "duplicate"
        assert second.runs == []
        assert second.duplicates_refused == 1

    # Without the flash file the memory is gone: the control case, so the above is no accident.
    with FeederSim(broker.host, broker.port, client_id=client_id) as amnesiac:
        gateway.publish(ACTION, action(rid, ["right"], event="DOUBLE"))
        wait_acks(gateway, rid, 3)
        assert amnesiac.runs == [MotorRun(rid, ("right",), 1000)]


@pytest.mark.parametrize(
    ("event", "bowls"),
    [("SINGLE", ("left",)), ("DOUBLE", ("right",)), ("LONG", ("left", "right"))],
)
def test_old_format_event_feeds_the_right_motor(
    sim: FeederSim, gateway: Probe, event: str, bowls: tuple[str, ...]
) -> None:
    gateway.publish(ACTION, json.dumps({"event": event}).encode())
    sim.wait_until(lambda: sim.runs, TIMEOUT, f"the motor run for an old-format {event}")
    # The published firmware's message: the default 10 s portion, no id, so nothing to ack.
    assert sim.runs == [MotorRun(None, bowls, 10_000)]
    sim.wait_until(sim.idle, TIMEOUT, "the simulator to finish")
    assert sim.acks_sent == []


MALFORMED = [
    b"",
    b"\xff\xfe not utf-8",
    b"not json",
    b"[1, 2, 3]",
    b'{"event": "TRIPLE"}',
    b'{"event": 7}',
    b'{"id": "x1", "bowls": ["middle"], "portion_ms": 1000}',
    b'{"id": "x2", "bowls": ["left"], "portion_ms": -5}',
    b'{"id": "x3", "bowls": ["left"], "portion_ms": 1.5}',
    b'{"id": "x4", "bowls": "left", "portion_ms": 1000}',
    b'{"id": "x5", "bowls": ["left"], "expires_at_ms": "soon"}',
    b'{"id": 12, "bowls": ["left"]}',
    b"{" * 5000,
    b"x" * 100_000,
]


def test_malformed_payloads_run_no_motor_and_do_not_crash(sim: FeederSim, gateway: Probe) -> None:
    for payload in MALFORMED:
        gateway.publish(ACTION, payload)
    sim.wait_until(lambda: sim.received == len(MALFORMED), TIMEOUT, "every malformed payload")
    sim.wait_until(sim.idle, TIMEOUT, "the simulator to finish")
    assert sim.runs == []
    assert sim.logic_errors == 0
    # A message with a usable id is answered (refused, malformed); the rest are ignored.
    for rid in ("x1", "x2", "x3", "x4", "x5"):
        (ack,) = wait_acks(gateway, rid, 1)
        assert ack["status"] == "refused"
        assert ack["reason"].startswith("malformed")
        assert ack["ran_ms"] == 0

    # ... and the feeder still feeds.
    rid = new_id()
    gateway.publish(ACTION, action(rid, ["left"]))
    (ack,) = wait_acks(gateway, rid, 1)
    assert ack["status"] == "served"
    assert sim.runs == [MotorRun(rid, ("left",), 1000)]


def test_an_expired_request_is_refused(sim: FeederSim, gateway: Probe) -> None:
    rid = new_id()
    gateway.publish(ACTION, action(rid, ["left"], expires_in_ms=-1000))
    (ack,) = wait_acks(gateway, rid, 1)
    assert (ack["status"], ack["reason"]) == ("refused", "expired")
    assert sim.runs == []


def test_drop_acks_runs_the_motor_but_says_nothing(sim: FeederSim, gateway: Probe) -> None:
    sim.drop_acks = True
    rid = new_id()
    gateway.publish(ACTION, action(rid, ["left"]))
    sim.wait_until(lambda: sim.acks_dropped, TIMEOUT, "the dropped acknowledgement")
    assert sim.runs == [MotorRun(rid, ("left",), 1000)]
    assert [a["id"] for a in sim.acks_dropped] == [rid]

    sim.drop_acks = False
    after = new_id()
    gateway.publish(ACTION, action(after, ["right"]))
    wait_acks(gateway, after, 1)
    assert acks_for(gateway, rid) == []


def test_a_motor_run_takes_scaled_time_and_shows_while_it_turns(
    broker: Mosquitto, gateway: Probe
) -> None:
    # 1 s of motor at scale 0.5: half a real second, long enough to be seen turning.
    with FeederSim(
        broker.host, broker.port, client_id=f"sim-{uuid.uuid4().hex[:8]}", time_scale=0.5
    ) as slow:
        rid = new_id()
        gateway.publish(ACTION, action(rid, ["left", "right"], event="LONG"))
        turning = slow.wait_until(lambda: slow.current_run, TIMEOUT, "the motors to turn")
        assert turning == MotorRun(rid, ("left", "right"), 1000)
        assert slow.runs == []
        assert acks_for(gateway, rid) == []  # acknowledged only once the motors stopped
        wait_acks(gateway, rid, 1)
        assert slow.current_run is None
        assert slow.runs == [turning]
        assert slow.runs_per_bowl() == {"left": 1, "right": 1}


def availability(gateway: Probe) -> list[str]:
    return [m.payload.decode() for m in gateway.messages(AVAILABILITY)]


def test_offline_online_and_the_persistent_session(sim: FeederSim, gateway: Probe) -> None:
    gateway.wait_messages(
        lambda ms: [m.payload for m in ms] == [b"online"],
        topic=AVAILABILITY,
        what="online",
    )
    sim.go_offline()
    gateway.wait_messages(
        lambda ms: [m.payload for m in ms][-1:] == [b"offline"],
        topic=AVAILABILITY,
        what="the offline will",
    )
    assert not sim.online

    # A request sent while the feeder is away waits in its session on the broker.
    rid = new_id()
    gateway.publish(ACTION, action(rid, ["left"]))
    sim.go_online()
    gateway.wait_messages(
        lambda ms: [m.payload for m in ms][-1:] == [b"online"],
        topic=AVAILABILITY,
        what="online again",
    )
    (ack,) = wait_acks(gateway, rid, 1)
    assert ack["status"] == "served"
    assert sim.runs == [MotorRun(rid, ("left",), 1000)]


def test_availability_is_retained(broker: Mosquitto, sim: FeederSim) -> None:
    def retained(probe: Probe) -> list[Received]:
        return probe.wait_messages(bool, topic=AVAILABILITY, what="the retained availability")

    with Probe(broker.host, broker.port, subscribe=[AVAILABILITY]) as late:
        (message,) = retained(late)
        assert (message.payload, message.retain) == (b"online", True)
    sim.stop()
    with Probe(broker.host, broker.port, subscribe=[AVAILABILITY]) as later:
        (message,) = retained(later)
        assert (message.payload, message.retain) == (b"offline", True)


def test_the_command_line_feeds_and_stops_cleanly(
    broker: Mosquitto, gateway: Probe, tmp_path: Path
) -> None:
    flash = tmp_path / "cli-flash.json"
    command = [
        sys.executable,
        "-m",
        "gateway.devstack.feeder_cli",
        "--host",
        broker.host,
        "--port",
        str(broker.port),
        "--client-id",
        f"sim-cli-{uuid.uuid4().hex[:8]}",
        "--memory-file",
        str(flash),
    ]
    with (tmp_path / "sim.out").open("wb") as out:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
        )
    try:
        gateway.wait_messages(
            lambda ms: [m.payload for m in ms][-1:] == [b"online"],
            topic=AVAILABILITY,
            what="the simulator to come online",
        )
        rid = new_id()
        gateway.publish(ACTION, action(rid, ["left"]))
        (ack,) = wait_acks(gateway, rid, 1)
        assert ack["status"] == "served"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=TIMEOUT) == 0
        gateway.wait_messages(
            lambda ms: [m.payload for m in ms][-1:] == [b"offline"],
            topic=AVAILABILITY,
            what="the offline will after SIGTERM",
        )
        assert rid in flash.read_text(encoding="utf-8")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=TIMEOUT)
