"""Issue 11, fault 6: floods from a real client, against the real daemon.

The promises: a flood of presses the policy can only refuse costs a few rows and log lines
(the rest are counted in an ``InputsSuppressed`` summary, every press accounted for); a
feeder report that flaps costs a few rows per window and the journal ends on the last value;
a real acknowledgement sent in the middle of a flood is journaled within a second.

Sizes are CI-sized; ``FMFB_SOAK=1`` runs the issue's 100,000-message floods (figures in
docs/reliability.md).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from daemon_process import LOW_LIMITS, DaemonProcess
from mqtt_probe import Publisher, Subscriber
from test_reliability_network import press_journaled, wait_button_subscribed
from waiting import wait_for

from gateway.devstack.mosquitto import Mosquitto

SOAK = os.environ.get("FMFB_SOAK") == "1"
PRESSES = 100_000 if SOAK else 5_000
REPORTS = 100_000 if SOAK else 10_000
ACK_PROMISE_S = 1.0
PUBLISH_CHUNK = 2_000


def publish_fast(publisher: Publisher, topic: str, payloads: list[bytes]) -> None:
    """QoS 1 without waiting for each PUBACK (paho pipelines them), in chunks paho's queue
    takes, waiting for each chunk's acknowledgements."""
    for start in range(0, len(payloads), PUBLISH_CHUNK):
        infos = [
            publisher.client.publish(topic, p, qos=1)
            for p in payloads[start : start + PUBLISH_CHUNK]
        ]
        for info in infos:
            info.wait_for_publish(60)


def test_a_press_flood_costs_a_few_rows_and_every_press_is_counted(tmp_path: Path) -> None:
    with (
        Mosquitto(extra_config=["max_queued_messages 0", "max_inflight_messages 0"]) as broker,
        DaemonProcess(broker.port, workdir=tmp_path / "d", policy=LOW_LIMITS) as daemon,
    ):
        daemon.start()
        with Publisher.on(broker) as presser:
            wait_button_subscribed(daemon, presser)
            press_journaled(daemon, presser)  # the one the policy accepts
            rows_before = daemon.events()[-1].seq
            started = time.monotonic()
            publish_fast(presser, daemon.button_topic, [b'{"action":"single"}'] * PRESSES)

            def received() -> int:
                (buttons,) = [i for i in daemon.status()["inputs"] if i["name"] == "mqtt-buttons"]
                return int(buttons["received"])

            # Every press that reached the daemon is journaled or counted in a summary (which
            # comes when the suppressor's 10 s window ends).
            def accounted() -> bool:
                events = daemon.events()[rows_before:]
                journaled = sum(e.type.value in ("FeedRequested", "FeedRejected") for e in events)
                counted = sum(
                    sum(e.payload.counts.values())
                    for e in events
                    if e.type.value == "InputsSuppressed"
                )
                return journaled + counted == received() - 1

            wait_for(accounted, timeout=60, interval=0.2, what="every press to be accounted for")
            took = time.monotonic() - started
        new_rows = len(daemon.events()) - rows_before
        refused_lines = daemon.stderr_text().count("feed refused")
        print(
            f"\npress flood: {received() - 1} presses reached the daemon in {took:.1f} s; "
            f"{new_rows} rows, {refused_lines} 'feed refused' log lines"
        )
        assert len(daemon.events(["FeedRequested"])) == 1
        # One refusal per reason per 10 s window plus a summary each: a handful, not thousands.
        assert new_rows <= 2 * (took / 10 + 2), new_rows
        assert refused_lines <= took / 10 + 2, refused_lines
        assert daemon.running


def test_a_flapping_feeder_costs_a_few_rows_and_never_holds_up_an_ack(tmp_path: Path) -> None:
    with (
        Mosquitto(extra_config=["max_queued_messages 0"]) as broker,
        DaemonProcess(broker.port, workdir=tmp_path / "d") as daemon,
        Subscriber.on(broker, "cat-feeder/action") as feeder,
        Publisher.on(broker) as presser,
        Publisher.on(broker) as acker,
        Publisher.on(broker) as flooder,
    ):
        daemon.start()
        daemon.wait_feeder_connected()
        wait_button_subscribed(daemon, presser)
        press_journaled(daemon, presser)
        (action,) = feeder.wait(lambda ms: ms if ms else None, what="the action")
        request_id = action.json()["id"]
        rows_before = daemon.events()[-1].seq

        levels = [json.dumps({"food_capacity": 10 + 80 * (i % 2)}).encode() for i in range(REPORTS)]
        presence = [b"online" if i % 2 else b"offline" for i in range(REPORTS)]
        flood = threading.Thread(
            target=lambda: (
                publish_fast(flooder, "cat-feeder/states", levels),
                publish_fast(flooder, "cat-feeder/availability", presence),
            )
        )
        flood_started = time.monotonic()
        flood.start()
        # The real feeder answers once the flood is reaching the daemon: the ack crosses it.
        wait_for(
            lambda: daemon.events(["FoodLevelChanged"]),
            timeout=10,
            interval=0.01,
            what="the flood to reach the daemon",
        )
        ack_sent = time.monotonic()
        acker.publish(
            "cat-feeder/dispensed",
            {"id": request_id, "status": "served", "bowls": ["left"], "ran_ms": 100},
        )
        wait_for(
            lambda: daemon.events(["FeedDispensed"]),
            timeout=30,
            interval=0.01,
            what="the acknowledgement to be journaled",
        )
        ack_delay = time.monotonic() - ack_sent
        flood.join(timeout=120)
        flood_s = time.monotonic() - flood_started

        # The last values (90, online) end up journaled once the 5 s windows close.
        def settled() -> bool:
            level = daemon.events(["FoodLevelChanged"])
            presence_rows = daemon.events(["FeederOnline", "FeederOffline"])
            return bool(
                level
                and level[-1].payload.level == 90
                and presence_rows
                and presence_rows[-1].type.value == "FeederOnline"
            )

        wait_for(settled, timeout=20, interval=0.1, what="the last reported values journaled")
        report_rows = [
            e
            for e in daemon.events()[rows_before:]
            if e.type.value in ("FoodLevelChanged", "FeederOnline", "FeederOffline")
        ]
        print(
            f"\nreport flood: 2 x {REPORTS} reports in {flood_s:.1f} s -> {len(report_rows)} "
            f"report rows; ack journaled {ack_delay * 1000:.0f} ms after it was sent"
        )
        assert ack_delay < ACK_PROMISE_S
        # At most two rows per kind per 5 s window, over the flood and the settling.
        windows = (time.monotonic() - flood_started) / 5 + 1
        assert len(report_rows) <= 2 * 2 * windows, len(report_rows)


def test_presses_counted_just_before_a_stop_are_journaled_with_it(tmp_path: Path) -> None:
    with (
        Mosquitto() as broker,
        DaemonProcess(broker.port, workdir=tmp_path / "d", policy=LOW_LIMITS) as daemon,
    ):
        daemon.start()
        with Publisher.on(broker) as presser:
            wait_button_subscribed(daemon, presser)
            press_journaled(daemon, presser)
            publish_fast(presser, daemon.button_topic, [b'{"action":"single"}'] * 50)
            wait_for(
                lambda: [
                    i
                    for i in daemon.status()["inputs"]
                    if i["name"] == "mqtt-buttons" and i["received"] == 51
                ],
                timeout=10,
                what="the presses to reach the daemon",
            )
        assert daemon.stop() == 0
        events = daemon.events()
        journaled = sum(e.type.value in ("FeedRequested", "FeedRejected") for e in events)
        counted = sum(
            sum(e.payload.counts.values()) for e in events if e.type.value == "InputsSuppressed"
        )
        assert journaled + counted == 51
        assert events[-1].type.value == "GatewayStopped"
