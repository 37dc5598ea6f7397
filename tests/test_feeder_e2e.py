"""End to end: the gateway daemon (``fmfb run``, a subprocess) + the feeder simulator (the
firmware's own logic, gateway/devstack/feeder_sim.py) + a real Mosquitto.

Presses come in as a person makes them — an MQTT button, or ``fmfb feed`` over the control
socket — and the assertions read the daemon's journal and the simulator's motor runs: one run
per journaled request, the feeder's acknowledgement and food level journaled, a duplicate
delivery refused by the feeder, nothing lost or doubled across a broker restart, an
unacknowledged request journaled FeedUnconfirmed, the feeder's availability journaled.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_process import HIGH_CAPS, DaemonProcess
from e2e_probe import Probe
from waiting import wait_for

from gateway.devstack.feeder_sim import FeederSim, MotorRun
from gateway.devstack.mosquitto import Mosquitto

pytestmark = pytest.mark.e2e

ACTION = "cat-feeder/action"
DISPENSED = "cat-feeder/dispensed"
PORTION_MS = 2_000
TIMEOUT = 20.0
ACCEPTED = re.compile(r"^accepted: feed (\S+) \(seq (\d+), request ([0-9a-f-]{36})\)", re.M)
# The firmware's own cap (6 per bowl per hour by default) would refuse the busier tests.
SIM_LOGIC = {"cap_feeds": 1000}


def make_daemon(broker: Mosquitto, workdir: Path, **feeding: Any) -> DaemonProcess:
    return DaemonProcess(
        broker.port,
        workdir=workdir,
        policy=HIGH_CAPS,
        feeding={"portion_ms": PORTION_MS, **feeding},
    )


def make_sim(broker: Mosquitto, workdir: Path, **options: Any) -> FeederSim:
    return FeederSim(
        broker.host,
        broker.port,
        client_id=f"feeder-{uuid.uuid4().hex[:8]}",
        memory_path=workdir / "feeder-flash.json",
        logic_config=SIM_LOGIC,
        **options,
    )


@pytest.fixture
def daemon(broker: Mosquitto, tmp_path: Path) -> Iterator[DaemonProcess]:
    with make_daemon(broker, tmp_path / "gw") as d:
        d.start()
        d.wait_feeder_connected()
        yield d


@pytest.fixture
def sim(broker: Mosquitto, daemon: DaemonProcess, tmp_path: Path) -> Iterator[FeederSim]:
    with make_sim(broker, tmp_path) as feeder:
        yield feeder


def journal(daemon: DaemonProcess, *types: str) -> list[Any]:
    return daemon.events(types)


def payloads(daemon: DaemonProcess, *types: str) -> list[dict[str, Any]]:
    return [e.payload.to_dict() for e in daemon.events(types)]


def wait_journal(
    daemon: DaemonProcess, what: str, predicate: Any, *types: str, timeout: float = TIMEOUT
) -> list[Any]:
    found: list[Any] = []

    def holds() -> bool:
        found[:] = daemon.events(types)
        return bool(predicate(found))

    wait_for(holds, timeout=timeout, interval=0.05, what=what)
    return found


def answered(daemon: DaemonProcess, request_id: str) -> list[Any]:
    """Every answer journaled for ``request_id`` (dispensed, rejected, unconfirmed)."""
    return [
        e
        for e in daemon.events(["FeedDispensed", "FeedRejected", "FeedUnconfirmed"])
        if e.payload.request_id == request_id
    ]


def feed(daemon: DaemonProcess, bowls: str) -> str:
    """``fmfb feed BOWLS``; the request id the daemon journaled."""
    result = daemon.cli("feed", bowls)
    assert result.returncode == 0, result.stdout + result.stderr
    m = ACCEPTED.search(result.stdout)
    assert m, result.stdout
    return m.group(3)


def wait_button_subscribed(daemon: DaemonProcess, presser: Probe) -> None:
    """A payload that is not a press is counted (never journaled): once the daemon's status
    shows the count, its button subscription is live."""
    prefix = f"button:{daemon.button_name}:"

    def counted() -> bool:
        presser.publish(daemon.button_topic, b"\x01 not a press")
        return any(k.startswith(prefix) for k in daemon.status()["bad_inputs"])

    wait_for(counted, timeout=15, interval=0.05, what="the daemon to subscribe to its button")


def test_a_press_feeds_once_and_the_feeders_answer_is_journaled(
    broker: Mosquitto, daemon: DaemonProcess, sim: FeederSim
) -> None:
    with Probe(broker.host, broker.port) as presser:
        wait_button_subscribed(daemon, presser)
        presser.publish(daemon.button_topic, b'{"action":"single"}')

        (dispensed,) = wait_journal(
            daemon, "FeedDispensed", lambda es: len(es) >= 1, "FeedDispensed"
        )
    (requested,) = journal(daemon, "FeedRequested")
    rid = requested.payload.request_id
    assert requested.payload.click_type.value == "SINGLE"
    assert requested.seq < dispensed.seq

    # Exactly one motor run, and the journal has the feeder's own account of it.
    sim.wait_until(sim.idle, TIMEOUT, "the simulator to finish")
    assert sim.runs == [MotorRun(rid, ("left",), PORTION_MS)]
    assert dispensed.payload.to_dict() == {
        "request_id": rid,
        "bowls": ["left"],
        "ran_ms": sim.runs[0].ms,
    }
    assert dispensed.origin.value == "feeder"

    levels = wait_journal(
        daemon,
        "the food level after the feed",
        lambda es: es and es[-1].payload.level == sim.food_level,
        "FoodLevelChanged",
    )
    assert sim.food_level < 100
    assert levels[-1].seq > requested.seq
    assert journal(daemon, "FeedRejected", "FeedUnconfirmed") == []


def test_a_request_delivered_twice_feeds_once(
    broker: Mosquitto, daemon: DaemonProcess, sim: FeederSim
) -> None:
    with Probe(broker.host, broker.port, subscribe=[ACTION, DISPENSED]) as wire:
        rid = feed(daemon, "right")
        (action,) = wire.wait_messages(
            lambda ms: len(ms) >= 1, topic=ACTION, what="the action message"
        )
        assert action.json()["id"] == rid
        wait_journal(daemon, "FeedDispensed", lambda es: len(es) == 1, "FeedDispensed")

        # The duplicate: the very message the gateway sent, published again.
        wire.publish(ACTION, action.payload)
        sim.wait_until(lambda: sim.received == 2, TIMEOUT, "the duplicate to reach the feeder")
        assert sim.received_ids == [rid, rid]
        acks = wire.wait_messages(
            lambda ms: len(ms) >= 2, topic=DISPENSED, what="both acknowledgements"
        )
        assert [(a.json()["status"], a.json()["reason"]) for a in acks] == [
            ("served", None),
            ("refused", "duplicate"),
        ]
    assert sim.runs == [MotorRun(rid, ("right",), PORTION_MS)]
    assert sim.duplicates_refused == 1
    # The gateway read the refusal of an already-answered request as a repeat: not news.
    wait_for(
        lambda: daemon.status()["bad_inputs"].get("feeder:ack-unknown-or-repeated", 0) >= 1,
        timeout=TIMEOUT,
        what="the gateway to read the repeated answer",
    )
    assert [e.payload.request_id for e in journal(daemon, "FeedDispensed")] == [rid]
    assert journal(daemon, "FeedRejected", "FeedUnconfirmed") == []


def test_a_broker_restart_mid_stream_loses_no_request_and_doubles_none(tmp_path: Path) -> None:
    with (
        Mosquitto(persistent=True) as broker,
        make_daemon(broker, tmp_path / "gw") as daemon,
        make_sim(broker, tmp_path) as sim,
    ):
        daemon.start()
        daemon.wait_feeder_connected()
        ids = [feed(daemon, "left"), feed(daemon, "right")]
        # One more, and the broker goes down with it possibly still in flight.
        ids.append(feed(daemon, "both"))
        broker.stop()
        wait_for(
            lambda: not daemon.sink_status()["connected"],
            timeout=TIMEOUT,
            what="the daemon to notice the broker is gone",
        )
        ids += [feed(daemon, bowls) for bowls in ("left", "right", "both")]
        assert daemon.sink_status()["backlog"] >= 1

        connects = sim.connects
        broker.start()
        ids.append(feed(daemon, "left"))  # across the restart: may go before or after reconnect
        sim.wait_until(lambda: sim.connects > connects, TIMEOUT, "the feeder to reconnect")
        ids += [feed(daemon, "right"), feed(daemon, "both")]

        wait_for(
            lambda: all(answered(daemon, rid) for rid in ids),
            timeout=40,
            interval=0.1,
            what="an answer journaled for every request",
        )
        sim.wait_until(sim.idle, TIMEOUT, "the simulator to finish")

        requested = journal(daemon, "FeedRequested")
        assert [e.payload.request_id for e in requested] == ids
        for event in requested:
            rid = event.payload.request_id
            answers = answered(daemon, rid)
            expired = any(
                a.payload.TYPE.value == "FeedRejected" and a.payload.reason == "expired"
                for a in answers
            )
            if expired:
                assert sim.runs_for(rid) == []
                continue
            assert len(sim.runs_for(rid)) == 1, f"{rid}: {sim.runs_for(rid)}"
            (answer,) = answers
            assert answer.payload.TYPE.value == "FeedDispensed", answer
        assert len(sim.runs) == len(ids)
        assert len({r.request_id for r in sim.runs}) == len(ids)


def test_an_unacknowledged_request_becomes_feed_unconfirmed(
    broker: Mosquitto, tmp_path: Path
) -> None:
    with (
        make_daemon(broker, tmp_path / "gw", ack_timeout_s=1) as daemon,
        make_sim(broker, tmp_path, drop_acks=True) as sim,
    ):
        daemon.start()
        daemon.wait_feeder_connected()
        rid = feed(daemon, "left")
        (unconfirmed,) = wait_journal(
            daemon, "FeedUnconfirmed", lambda es: len(es) >= 1, "FeedUnconfirmed"
        )
        assert unconfirmed.payload.request_id == rid
        assert unconfirmed.payload.waited_ms == 1000
        # The motor did run (a jam would not); it is the acknowledgement that never came.
        assert sim.runs == [MotorRun(rid, ("left",), PORTION_MS)]
        assert [a["id"] for a in sim.acks_dropped] == [rid]
        assert journal(daemon, "FeedDispensed") == []


def test_the_feeder_going_offline_and_online_is_journaled(
    daemon: DaemonProcess, sim: FeederSim
) -> None:
    def kinds(events: list[Any]) -> list[str]:
        return [e.payload.TYPE.value for e in events]

    wait_journal(
        daemon,
        "FeederOnline",
        lambda es: kinds(es) == ["FeederOnline"],
        "FeederOnline",
        "FeederOffline",
    )
    sim.go_offline()
    wait_journal(
        daemon,
        "FeederOffline",
        lambda es: kinds(es) == ["FeederOnline", "FeederOffline"],
        "FeederOnline",
        "FeederOffline",
    )
    sim.go_online()
    events = wait_journal(
        daemon,
        "FeederOnline again",
        lambda es: kinds(es) == ["FeederOnline", "FeederOffline", "FeederOnline"],
        "FeederOnline",
        "FeederOffline",
    )
    assert all(e.origin.value == "feeder" for e in events)
