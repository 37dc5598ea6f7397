"""The whole daemon in the test's own event loop, with the real parts around it.

A real Mosquitto (the ``broker`` fixture), the real ``Daemon`` wired from a parsed config, its
SQLite journal in ``tmp_path``, and gpiozero's MockFactory pins driven from this process (mock
pins cannot be driven from outside it). What the feeder would get is read by a separate MQTT
subscriber; what the ledger says is read from the journal.

Waiting is on conditions (``until``, the subscriber's ``wait_*``); the only sleeps are between
pin edges, where the classifier needs real elapsed time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import sqlite3
from pathlib import Path
from typing import Any

from inprocess import journaled
from mqtt_probe import Publisher, Subscriber, until

from gateway.config import Config, parse_config
from gateway.daemon import Daemon
from gateway.devstack.daemon import running
from gateway.events import (
    Bowl,
    ClickType,
    Event,
    EventType,
    FeedRejected,
    FeedRequested,
    Origin,
    RefusedBy,
)
from gateway.inputs.gpio_buttons import GpioButtons
from gateway.intake import FeedCommand
from gateway.journal import JournalReader
from gateway.wire import rfc3339_ms

ACTION = "cat-feeder/action"
BUTTON_TOPIC = "test/hall/action"
PORTION_MS = 1500
EXPIRY_S = 120
DOUBLE_CLICK_MS = 200
HOLD_MS = 400
TAP_S = 0.04  # a press well under HOLD_MS and well over the 5 ms bounce filter
GAP_S = 0.04  # between the taps of a double click, well under DOUBLE_CLICK_MS
RFC3339_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


# --- harness ---------------------------------------------------------------------------------


def gpio_of(daemon: Daemon) -> GpioButtons:
    """The daemon's GPIO input (the test reaches the classifier's state through it)."""
    return next(part for part in daemon.inputs if isinstance(part, GpioButtons))


def make_config(tmp_path: Path, broker: Any, **sections: dict[str, Any]) -> Config:
    """A config for one test: state in tmp_path, the fixture's broker, fast clicks, no limits
    (unless a test sets its own), one mock GPIO button "kitchen" on pin 17, no MQTT buttons."""
    data: dict[str, Any] = {
        "gateway_id": "gw-test",
        "state_dir": str(tmp_path / "state"),
        "broker": {
            "host": broker.host,
            "port": broker.port,
            "reconnect_min_s": 0.05,
            "reconnect_max_s": 0.3,
        },
        "feeding": {"portion_ms": PORTION_MS, "expiry_s": EXPIRY_S, "ack_timeout_s": 600},
        "policy": {"min_gap_s": 0, "cap_per_bowl": 1000},
        "classifier": {"double_click_ms": DOUBLE_CLICK_MS, "hold_ms": HOLD_MS},
        "buttons": {
            "pin_factory": "mock",
            "gpio": [{"name": "kitchen", "pin": 17, "bounce_ms": 5}],
            "mqtt": [],
        },
    }
    for section, values in sections.items():
        data[section] = {**data.get(section, {}), **values}
    return parse_config(data)


def requests_of(daemon: Daemon) -> list[Event]:
    return journaled(daemon, EventType.FEED_REQUESTED)


async def tap(pin: Any, seconds: float = TAP_S) -> None:
    pin.drive_low()  # pull_up=True: pressed is low
    await asyncio.sleep(seconds)
    pin.drive_high()


async def settled(daemon: Daemon, button: str = "kitchen") -> None:
    """Wait until the button's classifier has no pending deadline: idle, nothing left to emit."""
    wired = gpio_of(daemon).buttons[button]
    await until(
        lambda: wired.classifier.next_deadline() is None and not wired.device.is_pressed,
        what=f"button {button} to settle",
    )


def action_ids(sub: Subscriber) -> list[str]:
    return [m["id"] for m in sub.json_on(ACTION)]


# --- 1. GPIO clicks → the feeder --------------------------------------------------------------


async def test_gpio_single_double_and_hold_reach_the_feeder(tmp_path, broker):
    config = make_config(tmp_path, broker)
    with Subscriber.on(broker, ACTION) as sub:
        async with running(config) as daemon:
            wired = gpio_of(daemon).buttons["kitchen"]
            pin = wired.device.pin

            await tap(pin)
            [single] = await sub.wait_count(ACTION, 1)
            await settled(daemon)

            await tap(pin)
            await asyncio.sleep(GAP_S)
            await tap(pin)
            await sub.wait_count(ACTION, 2)
            await settled(daemon)

            pin.drive_low()
            await sub.wait_count(ACTION, 3, within=HOLD_MS / 1000 + 5)
            # LONG goes out at the hold time, while the button is still down.
            assert wired.device.is_pressed
            pin.drive_high()
            await settled(daemon)

            # A request after the gestures: the feeder gets it next, so nothing else came in
            # between (each gesture made exactly one action).
            assert daemon.intake is not None
            control = await daemon.intake.request_feed(
                FeedCommand(bowls=(Bowl.RIGHT,), origin=Origin.CLI)
            )
            messages = await sub.wait_count(ACTION, 4)
            requests = await until(lambda: len(r := requests_of(daemon)) == 4 and r)

    assert single.message_expiry_s is not None
    assert 1 <= single.message_expiry_s <= EXPIRY_S
    assert len(messages) == 4
    assert messages[0] == single
    bodies = [m.json() for m in messages]
    assert [b["event"] for b in bodies] == ["SINGLE", "DOUBLE", "LONG", "DOUBLE"]
    assert [b["bowls"] for b in bodies] == [["left"], ["right"], ["left", "right"], ["right"]]
    assert bodies[3]["id"] == control.payload.request_id
    assert gpio_of(daemon).received == 3
    clicks = [(e.payload.button, e.payload.click_type) for e in requests[:3]]  # type: ignore[union-attr]
    assert clicks == [
        ("kitchen", ClickType.SINGLE),
        ("kitchen", ClickType.DOUBLE),
        ("kitchen", ClickType.LONG),
    ]
    for body, event, message in zip(bodies, requests, messages, strict=True):
        request = event.payload
        assert isinstance(request, FeedRequested)
        assert body["id"] == request.request_id == event.event_id
        assert body["portion_ms"] == request.portion_ms == PORTION_MS
        assert type(body["expires_at_ms"]) is int
        assert body["expires_at_ms"] == request.expires_at_ms
        assert body["expires_at_ms"] - event.occurred_at_ms == EXPIRY_S * 1000
        assert RFC3339_MS.match(body["reportedTime"]), body["reportedTime"]
        assert body["reportedTime"] == rfc3339_ms(event.occurred_at_ms)
        assert message.qos == 1
        assert message.message_expiry_s is not None
    assert [e.payload.click_type for e in requests[:3]] == [  # type: ignore[union-attr]
        ClickType.SINGLE,
        ClickType.DOUBLE,
        ClickType.LONG,
    ]
    assert {e.payload.button for e in requests[:3]} == {"kitchen"}  # type: ignore[union-attr]


# --- 2. MQTT buttons, and what is not a press -------------------------------------------------


async def test_mqtt_button_presses_and_garbage(tmp_path, broker, caplog):
    caplog.set_level(logging.DEBUG, logger="gateway.input")
    config = make_config(
        tmp_path, broker, buttons={"mqtt": [{"name": "hall", "topic": BUTTON_TOPIC}]}
    )
    with Publisher.on(broker) as pub, Subscriber.on(broker, ACTION) as sub:
        # A retained press reaches the button input as soon as it subscribes, and is refused
        # (a planted retained press would feed at every restart); once it is counted, the
        # subscription is live and nothing published from now on can be missed.
        pub.publish(BUTTON_TOPIC, {"action": "single"}, retain=True)
        async with running(config) as daemon:
            counts = daemon.counters.counts
            await until(lambda: counts["button:hall:retain"] == 1, what="the retained press")
            # Published retained while the gateway listens: refused too (retain-as-published).
            pub.publish(BUTTON_TOPIC, {"action": "single"}, retain=True)
            await until(lambda: counts["button:hall:retain"] == 2, what="the live retained one")
            pub.publish(BUTTON_TOPIC, b"", retain=True)  # clears it: an empty payload is no press
            assert daemon.journal is not None
            assert not requests_of(daemon)

            pub.publish(BUTTON_TOPIC, {"action": "single"})
            pub.publish(BUTTON_TOPIC, b"DOUBLE")
            pub.publish(BUTTON_TOPIC, {"action": "hold"})
            pressed = await sub.wait_count(ACTION, 3)
            assert daemon.journal is not None
            await until(lambda: len(requests_of(daemon)) == 3)

            seq_before = daemon.journal.visible_seq
            bad_before = daemon.counters.total_bad
            garbage = [
                b"\xff\xfe",  # not UTF-8
                b"[1, 2]",  # not an object
                b"TRIPLE",  # not a word we know
                b'{"action": 5}',
                b"{}",
                b'{"action": "triple"}',  # an unknown action
            ]
            pub.publish_all(BUTTON_TOPIC, garbage)
            # Known messages that carry no press: neither counted nor journaled.
            pub.publish(BUTTON_TOPIC, {"battery": 97, "linkquality": 120})
            pub.publish(BUTTON_TOPIC, {"action": "release"})
            await until(
                lambda: daemon.counters.total_bad == bad_before + len(garbage),
                what="the garbage to be counted",
            )
            assert daemon.journal.visible_seq == seq_before

            # Still working: a later press is journaled (and nothing else is) and fed.
            pub.publish(BUTTON_TOPIC, {"action": "single"})
            later = await sub.wait_count(ACTION, 4)
            await until(lambda: daemon.journal.durable_seq == seq_before + 1)  # type: ignore[union-attr]
            assert daemon.journal.visible_seq == seq_before + 1
            requests = requests_of(daemon)

    assert [m.json()["event"] for m in pressed] == ["SINGLE", "DOUBLE", "LONG"]
    assert [m.json()["bowls"] for m in pressed] == [["left"], ["right"], ["left", "right"]]
    assert later[3].json()["event"] == "SINGLE"
    assert [m.json()["id"] for m in later] == [e.payload.request_id for e in requests]  # type: ignore[union-attr]
    assert {e.payload.button for e in requests} == {"hall"}  # type: ignore[union-attr]
    assert counts["button:hall:retain"] == 2
    assert counts["button:hall:payload"] == 2
    assert counts["button:hall:action"] == 4
    assert daemon.counters.total_bad == 2 + len(garbage)
    warned = [r.getMessage() for r in caplog.records if r.name == "gateway.input"]
    assert any("button:hall" in w and "unknown action" in w for w in warned), warned
    assert any("button:hall" in w and "not UTF-8" in w for w in warned), warned
    assert any("unknown action 'TRIPLE'" in w for w in warned), warned
    assert any("retained message is not a press" in w for w in warned), warned
    assert "bad inputs" in daemon.status_line()


# --- 6. restart: policy state and the feeder cursor survive ---------------------------------


async def test_restart_keeps_caps_and_the_feeder_cursor(tmp_path, broker):
    config = make_config(tmp_path, broker, policy={"cap_per_bowl": 1, "min_gap_s": 0})
    journal_file = config.journal_file
    with Subscriber.on(broker, ACTION) as sub:
        async with running(config) as first:
            await tap(gpio_of(first).buttons["kitchen"].device.pin)
            [fed] = await sub.wait_count(ACTION, 1)
            [requested] = await until(lambda: requests_of(first))
            sink = first.sinks[0]
            await until(lambda: sink.status().cursor >= requested.seq, what="the cursor")
        with JournalReader.open(journal_file) as reader:
            cursor_at_stop = reader.cursor("feeder")
        assert cursor_at_stop is not None
        assert cursor_at_stop >= requested.seq

        async with running(config) as second:
            pin = gpio_of(second).buttons["kitchen"].device.pin
            await tap(pin)  # left bowl again: over the cap of 1 carried over from before
            [rejected] = await until(
                lambda: journaled(second, EventType.FEED_REJECTED), what="the cap rejection"
            )
            await settled(second)
            await tap(pin)
            await asyncio.sleep(GAP_S)
            await tap(pin)  # DOUBLE: the right bowl, still under its cap
            messages = await sub.wait_count(ACTION, 2)
            requests = await until(lambda: len(r := requests_of(second)) == 2 and r)

    refusal = rejected.payload
    assert isinstance(refusal, FeedRejected)
    assert refusal.reason == "cap"
    assert refusal.refused_by is RefusedBy.GATEWAY
    assert refusal.bowls == (Bowl.LEFT,)
    assert refusal.click_type is ClickType.SINGLE
    # The first request went out once, before the restart; the second daemon resumed after it.
    assert len(messages) == 2
    assert messages[0] == fed
    assert [m.json()["id"] for m in messages] == [e.payload.request_id for e in requests]  # type: ignore[union-attr]
    assert messages[1].json()["event"] == "DOUBLE"


# --- 7. a full disk: feeding goes on, the ledger catches up ---------------------------------


def page_count(path: Path) -> int:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return int(conn.execute("PRAGMA page_count").fetchone()[0])
    finally:
        conn.close()


async def test_full_disk_still_feeds_and_recovers(tmp_path, broker):
    config = make_config(tmp_path, broker)
    with Subscriber.on(broker, ACTION) as sub:
        async with running(config) as daemon:
            journal, intake = daemon.journal, daemon.intake
            assert journal is not None
            assert intake is not None
            sink = daemon.sinks[0]
            await until(lambda: sink.status().connected, what="the feeder link")
            # Quiet, so the limit is set between commits.
            await until(lambda: journal.durable_seq == journal.visible_seq == sink.status().cursor)
            last_durable = journal.durable_seq
            journal.writer_pragma(f"PRAGMA max_page_count = {page_count(config.journal_file)}")

            command = FeedCommand(bowls=(Bowl.LEFT,), origin=Origin.CLI)
            held = None
            for _ in range(200):
                event = await asyncio.wait_for(intake.request_feed(command), timeout=5)
                if event.held:
                    held = event
                    break
                last_durable = event.seq
            assert held is not None, "the page limit never bit"
            assert journal.health.failing
            assert "JOURNAL FAILING" in daemon.status_line()

            # A press while failing: answered at once, and fed.
            await tap(gpio_of(daemon).buttons["kitchen"].device.pin)
            pressed = await until(lambda: len(r := requests_held(daemon, held.seq)) == 2 and r)
            assert all(e.held for e in pressed)
            wanted = {e.payload.request_id for e in pressed}  # type: ignore[union-attr]
            await sub.wait_async(
                lambda ms: wanted <= {m.json()["id"] for m in ms},
                what="the held requests at the feeder",
            )
            assert journal.health.failing
            assert journal.durable_seq == last_durable

            journal.writer_pragma("PRAGMA max_page_count = 1073741823")
            last_held = pressed[-1].seq
            await asyncio.wait_for(journal.wait_durable(last_held), timeout=10)
            assert not journal.health.failing
            assert "JOURNAL FAILING" not in daemon.status_line()

    with JournalReader.open(config.journal_file) as reader:
        checked, problem = reader.verify()
        stored = list(reader.query())
        cursor = reader.cursor("feeder")
    assert problem is None
    assert checked == len(stored) == stored[-1].seq
    assert [e.seq for e in stored] == list(range(1, len(stored) + 1))
    by_seq = {e.seq: e for e in stored}
    assert not any(by_seq[s].recovered for s in range(1, last_durable + 1))
    assert all(by_seq[s].recovered for s in range(held.seq, last_held + 1))
    assert by_seq[held.seq].payload == held.payload
    assert stored[-1].type is EventType.GATEWAY_STOPPED
    assert cursor is not None
    assert cursor >= last_held


def requests_held(daemon: Daemon, from_seq: int) -> list[Event]:
    """FeedRequested events from ``from_seq`` on, durable or held in memory."""
    assert daemon.journal is not None
    return [
        e
        for e in daemon.journal.read_visible(from_seq - 1, 1000)
        if e.type is EventType.FEED_REQUESTED
    ]


# --- 8. a real SIGTERM: a clean stop ---------------------------------------------------------


async def test_sigterm_stops_cleanly(tmp_path, broker):
    config = make_config(tmp_path, broker)
    with Subscriber.on(broker, ACTION) as sub:
        async with running(config) as daemon:
            await tap(gpio_of(daemon).buttons["kitchen"].device.pin)
            await sub.wait_count(ACTION, 1)
            [requested] = await until(lambda: requests_of(daemon))
            sink = daemon.sinks[0]
            await until(lambda: sink.status().cursor >= requested.seq, what="the cursor")
            # The daemon installed its handler on this loop: this is what systemd sends.
            os.kill(os.getpid(), signal.SIGTERM)
            await until(daemon.stopping.is_set, what="the SIGTERM handler")

    with JournalReader.open(config.journal_file) as reader:
        events = list(reader.query())
        cursor = reader.cursor("feeder")
        checked, problem = reader.verify()
    assert problem is None
    assert checked == len(events)
    assert [e.type for e in events] == [
        EventType.GATEWAY_STARTED,
        EventType.FEED_REQUESTED,
        EventType.GATEWAY_STOPPED,
    ]
    assert events[1].seq == requested.seq
    assert cursor is not None
    assert cursor >= requested.seq
