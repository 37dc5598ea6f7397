"""The local feeder sink inside a running daemon, against a real Mosquitto.

The test plays the feeder with its own MQTT clients: it reads ``cat-feeder/action`` and
publishes acknowledgements, food levels and availability. Requests come in through the
daemon's intake (what ``fmfb feed`` does). Faults are real: the broker is stopped and
restarted under the daemon.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
from pathlib import Path
from typing import Any

from inprocess import journaled
from mqtt_probe import Publisher, Subscriber, until

import gateway.mqtt_link
from gateway.config import Config, parse_config
from gateway.daemon import Daemon
from gateway.devstack.daemon import running
from gateway.events import (
    Bowl,
    EventType,
    FeedDispensed,
    FeedRejected,
    FeedRequested,
    FeedUnconfirmed,
    FoodLevelChanged,
    Origin,
    RefusedBy,
)
from gateway.intake import FeedCommand
from gateway.journal import JournalReader
from gateway.mqtt_link import LinkClient, honour_cancellation
from gateway.state import RequestStatus

ACTION = "cat-feeder/action"
DISPENSED = "cat-feeder/dispensed"
STATES = "cat-feeder/states"
AVAILABILITY = "cat-feeder/availability"
LEFT = FeedCommand(bowls=(Bowl.LEFT,), origin=Origin.CLI)
RIGHT = FeedCommand(bowls=(Bowl.RIGHT,), origin=Origin.CLI)


# --- harness ---------------------------------------------------------------------------------


def make_config(tmp_path: Path, broker: Any, **feeding: Any) -> Config:
    """State in tmp_path, the fixture's broker, no limits, no buttons (requests come in
    through the intake)."""
    return parse_config(
        {
            "gateway_id": "gw-test",
            "state_dir": str(tmp_path / "state"),
            "broker": {
                "host": broker.host,
                "port": broker.port,
                "reconnect_min_s": 0.05,
                "reconnect_max_s": 0.3,
            },
            "feeding": {"portion_ms": 2000, "expiry_s": 120, "ack_timeout_s": 600, **feeding},
            "policy": {"min_gap_s": 0, "cap_per_bowl": 1000},
            "buttons": {"pin_factory": "mock", "gpio": [], "mqtt": []},
        }
    )


async def feed(daemon: Daemon, command: FeedCommand = LEFT) -> FeedRequested:
    assert daemon.intake is not None
    event = await daemon.intake.request_feed(command)
    assert isinstance(event.payload, FeedRequested), event.payload
    return event.payload


async def feed_and_deliver(daemon: Daemon, sub: Subscriber, command: FeedCommand = LEFT) -> str:
    """A request that the feeder (``sub``) has received; returns its id.

    Once an action has arrived, the sink's subscriptions to the feeder's topics are in place
    (it subscribes before it starts publishing).
    """
    request = await feed(daemon, command)
    await sub.wait_async(
        lambda ms: any(m.topic == ACTION and m.json()["id"] == request.request_id for m in ms),
        what=f"request {request.request_id} at the feeder",
    )
    return request.request_id


# --- 3. the feeder's reports ------------------------------------------------------------------


async def test_acknowledgements_are_journaled_once(tmp_path, broker):
    config = make_config(tmp_path, broker)
    with Subscriber.on(broker, ACTION, DISPENSED) as sub, Publisher.on(broker) as feeder:
        async with running(config) as daemon:
            served_id = await feed_and_deliver(daemon, sub)
            ack = {"id": served_id, "status": "served", "bowls": ["left"], "ran_ms": 1234}
            feeder.publish(DISPENSED, ack)
            [dispensed] = await until(lambda: journaled(daemon, EventType.FEED_DISPENSED))

            # QoS 1 may deliver the same acknowledgement again: it is no news.
            feeder.publish(DISPENSED, ack)
            await sub.wait_count(DISPENSED, 2)  # the repeat really went out
            counts = daemon.counters.counts
            await until(lambda: counts["feeder:ack-unknown-or-repeated"] == 1, what="the repeat")
            # So is an acknowledgement of a request this gateway never made.
            feeder.publish(DISPENSED, {"id": "not-ours", "status": "served"})
            await until(lambda: counts["feeder:ack-unknown-or-repeated"] == 2, what="not ours")

            refused_id = await feed_and_deliver(daemon, sub, RIGHT)
            feeder.publish(DISPENSED, {"id": refused_id, "status": "refused", "reason": "jam"})
            [rejected] = await until(lambda: journaled(daemon, EventType.FEED_REJECTED))
            assert len(journaled(daemon, EventType.FEED_DISPENSED)) == 1
            assert daemon.intake is not None
            statuses = {
                rid: daemon.intake.state.requests[rid].status for rid in (served_id, refused_id)
            }
            line = daemon.status_line()

    assert dispensed.origin is Origin.FEEDER
    assert dispensed.payload == FeedDispensed(request_id=served_id, bowls=(Bowl.LEFT,), ran_ms=1234)
    assert rejected.origin is Origin.FEEDER
    refusal = rejected.payload
    assert isinstance(refusal, FeedRejected)
    assert refusal.request_id == refused_id
    assert refusal.refused_by is RefusedBy.FEEDER
    assert refusal.reason == "jam"
    assert refusal.bowls == (Bowl.RIGHT,)
    assert statuses == {served_id: RequestStatus.DISPENSED, refused_id: RequestStatus.REFUSED}
    # Repeats and strangers' acknowledgements are normal on QoS 1: not "bad input".
    assert daemon.counters.total_bad == 0
    assert "bad inputs" not in line


async def test_food_level_and_availability_only_on_change(tmp_path, broker):
    config = make_config(tmp_path, broker)
    with Subscriber.on(broker, ACTION) as sub, Publisher.on(broker) as feeder:
        async with running(config) as daemon:
            await feed_and_deliver(daemon, sub)  # the sink is listening from here on
            feeder.publish(STATES, {"food_capacity": 80})
            feeder.publish(STATES, {"food_capacity": 80, "rssi": -60})
            feeder.publish(STATES, {"food_capacity": 70})
            levels = await until(
                lambda: len(e := journaled(daemon, EventType.FOOD_LEVEL_CHANGED)) == 2 and e
            )
            # A report without a level is not a change either.
            feeder.publish(STATES, {"rssi": -61})

            feeder.publish(AVAILABILITY, "online", retain=True)
            feeder.publish(AVAILABILITY, "online", retain=True)
            feeder.publish(AVAILABILITY, "offline", retain=True)
            availability = await until(
                lambda: (
                    journaled(daemon, EventType.FEEDER_OFFLINE)
                    and journaled(daemon, EventType.FEEDER_ONLINE, EventType.FEEDER_OFFLINE)
                )
            )
            line = daemon.status_line()
            assert daemon.journal is not None
            seq_before_restart = daemon.journal.visible_seq

        # After a restart the retained "offline" arrives again: the folded state knows it.
        async with running(config) as again:
            await feed_and_deliver(again, sub)  # subscribed: the retained message came first
            feeder.publish(AVAILABILITY, "online", retain=True)
            feeder.publish(STATES, {"food_capacity": 70})
            back = await until(
                lambda: len(e := journaled(again, EventType.FEEDER_ONLINE)) == 2 and e
            )
            after_restart = journaled(
                again,
                EventType.FEEDER_ONLINE,
                EventType.FEEDER_OFFLINE,
                EventType.FOOD_LEVEL_CHANGED,
            )

    assert [e.payload for e in levels] == [
        FoodLevelChanged(level=80, previous=None),
        FoodLevelChanged(level=70, previous=80),
    ]
    assert {e.origin for e in levels} == {Origin.FEEDER}
    assert [e.type for e in availability] == [EventType.FEEDER_ONLINE, EventType.FEEDER_OFFLINE]
    assert "feeder offline food 70%" in line
    assert [e.seq for e in after_restart if e.seq > seq_before_restart] == [back[-1].seq]


async def test_malformed_reports_are_counted_not_journaled(tmp_path, broker):
    config = make_config(tmp_path, broker)
    with Subscriber.on(broker, ACTION) as sub, Publisher.on(broker) as feeder:
        async with running(config) as daemon:
            request_id = await feed_and_deliver(daemon, sub)
            assert daemon.journal is not None
            await until(lambda: daemon.journal.durable_seq == daemon.journal.visible_seq)  # type: ignore[union-attr]
            seq_before = daemon.journal.visible_seq
            bad = [
                (DISPENSED, b"not json"),
                (DISPENSED, b'{"id": "%s"}' % request_id.encode()),  # no status
                (DISPENSED, b'{"id": "%s", "status": "eaten"}' % request_id.encode()),
                (DISPENSED, b'{"id": "", "status": "served"}'),
                (
                    DISPENSED,
                    b'{"id": "%s", "status": "served", "ran_ms": -5}' % request_id.encode(),
                ),
                (STATES, b'{"food_capacity": 150}'),
                (STATES, b'{"food_capacity": "full"}'),
                (STATES, b"[80]"),
                (AVAILABILITY, b"maybe"),
            ]
            for topic, payload in bad:
                feeder.publish(topic, payload)
            await until(lambda: daemon.counters.total_bad == len(bad), what="bad reports counted")
            assert daemon.journal.visible_seq == seq_before
            statuses = daemon.intake.state.requests[request_id].status  # type: ignore[union-attr]

            # Still listening: a good report after the garbage is journaled.
            feeder.publish(DISPENSED, {"id": request_id, "status": "served", "ran_ms": 5})
            [dispensed] = await until(lambda: journaled(daemon, EventType.FEED_DISPENSED))

    counts = daemon.counters.counts
    assert counts[f"mqtt:{DISPENSED}:payload"] == 1
    assert counts[f"mqtt:{DISPENSED}:status"] == 2
    assert counts[f"mqtt:{DISPENSED}:id"] == 1
    assert counts[f"mqtt:{DISPENSED}:ran_ms"] == 1
    assert counts[f"mqtt:{STATES}:food_capacity"] == 2
    assert counts[f"mqtt:{STATES}:payload"] == 1
    assert counts[f"mqtt:{AVAILABILITY}:payload"] == 1
    assert statuses is RequestStatus.REQUESTED
    assert dispensed.seq == seq_before + 1
    # No bowls in the report: the request's own; ran_ms as reported.
    assert dispensed.payload == FeedDispensed(request_id=request_id, bowls=(Bowl.LEFT,), ran_ms=5)


# --- 4. no acknowledgement --------------------------------------------------------------------


async def test_unacknowledged_request_becomes_unconfirmed(tmp_path, broker):
    config = make_config(tmp_path, broker, ack_timeout_s=1)
    with Subscriber.on(broker, ACTION) as sub, Publisher.on(broker) as feeder:
        async with running(config) as daemon:
            request_id = await feed_and_deliver(daemon, sub)
            [unconfirmed] = await until(
                lambda: journaled(daemon, EventType.FEED_UNCONFIRMED), within=10
            )
            # A late acknowledgement still records what really happened.
            feeder.publish(DISPENSED, {"id": request_id, "status": "served", "ran_ms": 1900})
            [late] = await until(lambda: journaled(daemon, EventType.FEED_DISPENSED))

    assert unconfirmed.origin is Origin.GATEWAY
    assert unconfirmed.payload == FeedUnconfirmed(request_id, (Bowl.LEFT,), waited_ms=1000)
    assert late.seq > unconfirmed.seq
    assert late.payload == FeedDispensed(request_id, (Bowl.LEFT,), ran_ms=1900)


# --- 5. the broker goes away ------------------------------------------------------------------


async def stop_broker_under(daemon: Daemon, broker: Any) -> None:
    sink = daemon.sinks[0]
    await until(lambda: sink.status().connected, what="the feeder link")
    broker.stop()
    await until(lambda: not sink.status().connected, what="the daemon to see the broker go")


async def test_request_while_broker_down_is_journaled_then_sent(tmp_path, broker):
    config = make_config(tmp_path, broker)
    async with running(config) as daemon:
        await stop_broker_under(daemon, broker)
        assert daemon.intake is not None
        assert daemon.journal is not None
        event = await asyncio.wait_for(daemon.intake.request_feed(LEFT), timeout=5)
        # Durable now, with the broker down.
        assert not event.held
        stored = daemon.journal.reader.get(event.seq)
        assert stored is not None
        assert stored.payload == event.payload
        assert daemon.sinks[0].published == 0  # type: ignore[attr-defined]

        # Blocking calls: the daemon's loop cannot reconnect before the feeder listens.
        broker.restart()
        with Subscriber.on(broker, ACTION) as sub:
            [action] = await sub.wait_count(ACTION, 1)
            sink = daemon.sinks[0]
            await until(lambda: sink.status().cursor >= event.seq, what="the cursor to move")

    assert action.json()["id"] == event.payload.request_id  # type: ignore[union-attr]
    assert action.json()["event"] == "SINGLE"
    assert action.message_expiry_s is not None
    with JournalReader.open(config.journal_file) as reader:
        assert reader.cursor("feeder") >= event.seq  # type: ignore[operator]


async def test_request_that_expires_while_broker_down_is_never_sent(tmp_path, broker):
    config = make_config(tmp_path, broker, expiry_s=1)
    async with running(config) as daemon:
        await stop_broker_under(daemon, broker)
        assert daemon.intake is not None
        request = await feed(daemon)
        await until(
            lambda: daemon.clock.now_ms() >= request.expires_at_ms + 50,
            what="the request to expire",
        )
        # Blocking calls: the feeder listens before the daemon's loop can reconnect.
        broker.restart()
        with Subscriber.on(broker, ACTION) as sub:
            [expired] = await until(
                lambda: journaled(daemon, EventType.FEED_REJECTED), what="the expiry"
            )
            # A fresh request after it goes out: the expired one, earlier in the journal, would
            # have gone out before it.
            fresh_id = await feed_and_deliver(daemon, sub, RIGHT)
            status = daemon.intake.state.requests[request.request_id].status

    assert [m["id"] for m in sub.json_on(ACTION)] == [fresh_id]
    refusal = expired.payload
    assert isinstance(refusal, FeedRejected)
    assert refusal.request_id == request.request_id
    assert refusal.reason == "expired"
    assert refusal.refused_by is RefusedBy.GATEWAY
    assert expired.origin is Origin.GATEWAY
    assert status is RequestStatus.EXPIRED


# --- stopping: the acknowledgement watcher must honour its cancellation -----------------------


async def test_ack_watcher_cancelled_as_a_publish_wakes_it_stops(tmp_path, broker):
    """A regression test for a hang at SIGTERM, seen under load.

    A publish wakes the watcher (``_deadline_changed``); if the stop's cancellation lands after
    that wake-up but before the watcher runs, Python 3.11's ``asyncio.wait_for`` returned
    normally instead of raising CancelledError, and the watcher looped on: the daemon never
    stopped. This places the cancellation in exactly that gap.
    """
    config = make_config(tmp_path, broker)
    async with running(config) as daemon:
        sink = daemon.sinks[0]
        [watcher] = await until(
            lambda: [t for t in asyncio.all_tasks() if t.get_name() == "feeder-acks"]
        )
        changed: asyncio.Event = sink._deadline_changed  # type: ignore[attr-defined]
        await until(lambda: changed._waiters, what="the watcher to wait on its event")
        changed.set()
        await asyncio.sleep(0)  # the event's waiter has run; the watcher has not resumed yet
        watcher.cancel()
        await asyncio.wait({watcher}, timeout=5)
        assert watcher.done(), "the watcher swallowed its cancellation"
        assert watcher.cancelled()


async def _cancel_as_the_answer_arrives(operation: Any) -> asyncio.Task[Any]:
    """Run ``operation(answer)`` in a task, then complete ``answer`` and cancel the task in
    the same loop iteration: the moment a PUBACK and a stop arrive together."""
    answer: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.ensure_future(operation(answer))
    await asyncio.sleep(0)  # the task now waits inside wait_for
    await asyncio.sleep(0)
    answer.set_result(1)
    task.cancel()
    await asyncio.wait({task}, timeout=5)
    return task


async def test_a_cancellation_that_aiomqtt_s_wait_for_swallows_is_raised_again():
    """aiomqtt waits for every broker answer with ``asyncio.wait_for``, which on Python 3.11
    swallows a cancellation that lands as the answer arrives; ``honour_cancellation`` (around
    every round trip of a session, and after connecting) raises it again."""

    async def like_aiomqtt(answer: asyncio.Future[int]) -> int:
        return await asyncio.wait_for(answer, timeout=10)

    bare = await _cancel_as_the_answer_arrives(like_aiomqtt)
    if sys.version_info < (3, 12):
        # The fault is real on this Python: without the guard the stop is lost.
        assert not bare.cancelled()
        assert bare.result() == 1

    guarded = await _cancel_as_the_answer_arrives(
        lambda answer: honour_cancellation(like_aiomqtt(answer))
    )
    assert guarded.cancelled()


def test_sessions_reach_the_broker_only_through_the_guarded_client():
    """Every session gets a LinkClient, whose round trips all go through the guard."""
    source = inspect.getsource(LinkClient)
    assert source.count("await honour_cancellation(") == 2  # subscribe, publish
    assert "_wait_for" not in inspect.getsource(gateway.mqtt_link)  # no private aiomqtt hook
