"""Schedules end to end: the real daemon in this loop, a real Mosquitto, an injected clock.

No cloud at all (the Pi is offline from any cloud: no cloud sink can even be reached), so
everything here is the schedule, the intake, the journal and the feeder sink. The clock is a
FixedClock the test moves; "nothing fired" is checked after the schedule has looked at the
clock again (its tick counter), never after a sleep.
"""

from __future__ import annotations

import asyncio
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from inprocess import journaled
from mqtt_probe import Subscriber, until

from gateway.clock import FixedClock
from gateway.config import Config, parse_config
from gateway.control import call
from gateway.daemon import Daemon
from gateway.devstack.daemon import running
from gateway.events import Event, EventType, FeedRejected, FeedRequested, Origin
from gateway.inputs.schedule import WAITING_FOR_CLOCK, ScheduleInput
from gateway.schedule import meal_instant

ACTION = "cat-feeder/action"
LONDON = ZoneInfo("Europe/London")
MINUTE = 60_000


def make_config(tmp_path: Path, broker: Any, at: str, **extra: Any) -> Config:
    data: dict[str, Any] = {
        "gateway_id": "gw-sched",
        "state_dir": str(tmp_path / "state"),
        "broker": {
            "host": broker.host,
            "port": broker.port,
            "reconnect_min_s": 0.05,
            "reconnect_max_s": 0.3,
        },
        "feeding": {"portion_ms": 1500, "expiry_s": 600, "ack_timeout_s": 600},
        "buttons": {"pin_factory": "mock", "gpio": [], "mqtt": []},
        "scheduling": {"time_zone": "Europe/London", "catch_up_s": 1800, "poll_s": 0.02},
        "schedule": [{"name": "breakfast", "at": at, "bowls": ["left"], "portion_ms": 2000}],
    }
    data.update(extra)
    return parse_config(data)


def schedule_of(daemon: Daemon) -> ScheduleInput:
    return next(p for p in daemon.inputs if isinstance(p, ScheduleInput))


def meals(daemon: Daemon) -> list[Event]:
    """Every scheduled meal the journal holds (fed or not), in seq order."""
    return [
        e
        for e in journaled(daemon, EventType.FEED_REQUESTED, EventType.FEED_REJECTED)
        if e.origin is Origin.SCHEDULE
    ]


async def looked(daemon: Daemon, times: int = 3) -> None:
    """Until the schedule has looked at the clock ``times`` more times, and everything it
    journaled meanwhile is durable (so counting the journal counts all of it)."""
    schedule = schedule_of(daemon)
    target = schedule.ticks + times
    await until(lambda: schedule.ticks >= target, what="the schedule to look at the clock")
    journal = daemon.journal
    assert journal is not None
    queued = journal.visible_seq
    await until(lambda: journal.durable_seq >= queued, what="the journal to commit")


async def journaled_meal(daemon: Daemon, count: int) -> list[Event]:
    assert daemon.journal is not None
    return await until(lambda: len(meals(daemon)) >= count and meals(daemon), what="a meal")


def at(day: date, hhmm: time) -> int:
    return meal_instant(day, hhmm, LONDON)


async def test_fires_at_the_instant_reaches_the_feeder_and_not_before(
    tmp_path, broker, monkeypatch
):
    meal_ms = at(date(2026, 6, 1), time(7, 30))
    clock = FixedClock(meal_ms - 1)
    # The cloud is configured but unreachable (nothing listens on loopback port 9).
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    dead_cloud = {"eventbridge": {"endpoint_url": "http://127.0.0.1:9", "max_attempts": 1}}
    config = make_config(tmp_path, broker, "07:30", sinks=dead_cloud)
    with Subscriber.on(broker, ACTION) as sub:
        async with running(config, clock=clock) as daemon:
            await looked(daemon)
            assert meals(daemon) == []
            clock.advance(1)
            [event] = await journaled_meal(daemon, 1)
            assert isinstance(event.payload, FeedRequested)
            assert event.payload.meal_at_ms == meal_ms
            assert event.payload.schedule == "breakfast"
            assert event.occurred_at_ms == meal_ms
            [action] = await sub.wait_count(ACTION, 1)
            assert action.json()["id"] == "meal:breakfast:2026-06-01"
            assert action.json()["portion_ms"] == 2000
            await looked(daemon)
            assert len(meals(daemon)) == 1  # once
            status = schedule_of(daemon).status()
            assert status.detail is not None and "2026-06-02" in status.detail
            cloud = daemon.status().sink("eventbridge")
            assert cloud is not None and not cloud.connected and cloud.backlog > 0


async def test_dst_spring_gap_and_autumn_repeat(tmp_path, broker):
    # 01:30 does not exist in London on 2026-03-29: fed once at 02:30 BST (01:30 UTC).
    spring = at(date(2026, 3, 29), time(1, 30))
    assert datetime.fromtimestamp(spring / 1000, LONDON).hour == 2
    clock = FixedClock(spring - MINUTE)
    config = make_config(tmp_path, broker, "01:30")
    async with running(config, clock=clock) as daemon:
        await looked(daemon)
        assert meals(daemon) == []
        clock.advance(MINUTE)
        await journaled_meal(daemon, 1)
        # Jump to the autumn change: 2026-10-25 01:30 happens twice; fed at the first only.
        autumn = at(date(2026, 10, 25), time(1, 30))
        clock.wall_ms = autumn - 1
        await looked(daemon)
        before = len(meals(daemon))  # the days in between, journaled as missed
        clock.wall_ms = autumn
        await journaled_meal(daemon, before + 1)
        clock.wall_ms = autumn + 60 * MINUTE  # the wall clock reads 01:30 again
        await looked(daemon)
        assert len(meals(daemon)) == before + 1
        last = meals(daemon)[-1].payload
        assert isinstance(last, FeedRequested) and last.meal_at_ms == autumn
        missed = [m.payload for m in meals(daemon)[1:-1]]
        assert missed and all(isinstance(p, FeedRejected) and p.reason == "missed" for p in missed)


async def test_restart_during_the_meal_window_feeds_once(tmp_path, broker):
    meal_ms = at(date(2026, 6, 1), time(7, 30))
    clock = FixedClock(meal_ms - 10 * MINUTE)
    config = make_config(tmp_path, broker, "07:30")
    async with running(config, clock=clock) as daemon:
        await looked(daemon)
        assert meals(daemon) == []
    # The Pi was off at 07:30 and comes back at 07:45: inside the 30-minute window.
    clock.wall_ms = meal_ms + 15 * MINUTE
    async with running(config, clock=clock) as daemon:
        [event] = await journaled_meal(daemon, 1)
        assert isinstance(event.payload, FeedRequested)
        assert event.payload.meal_at_ms == meal_ms
    # And again at 07:50: that meal is in the journal, so it is not fed twice.
    clock.wall_ms = meal_ms + 20 * MINUTE
    async with running(config, clock=clock) as daemon:
        await looked(daemon)
        assert len(meals(daemon)) == 1


async def test_unsynchronised_clock_fires_nothing_and_says_why_then_missed(tmp_path, broker):
    meal_ms = at(date(2026, 6, 1), time(7, 30))
    clock = FixedClock(meal_ms - MINUTE, synced=False)
    config = make_config(tmp_path, broker, "07:30")
    async with running(config, clock=clock) as daemon:
        clock.advance(2 * MINUTE)  # past the meal, by a clock nobody can trust
        await looked(daemon)
        assert meals(daemon) == []
        assert schedule_of(daemon).status().detail == WAITING_FOR_CLOCK
        assert daemon.status().input("schedule").detail == WAITING_FOR_CLOCK  # type: ignore[union-attr]
        assert "CLOCK NOT SYNCHRONISED: meals wait" in daemon.status_line()
        # NTP answers an hour later: the meal is beyond the catch-up window.
        clock.advance(60 * MINUTE)
        clock.is_synced = True
        [event] = await journaled_meal(daemon, 1)
        assert isinstance(event.payload, FeedRejected)
        assert event.payload.reason == "missed"
        assert event.payload.meal_at_ms == meal_ms


async def test_skip_next_from_the_control_socket(tmp_path, broker):
    meal_ms = at(date(2026, 6, 1), time(7, 30))
    clock = FixedClock(meal_ms - 60 * MINUTE)
    config = make_config(tmp_path, broker, "07:30")
    async with running(config, clock=clock) as daemon:
        sock = config.control_path
        answer = await asyncio.to_thread(call, sock, {"op": "skip"})
        assert answer["ok"], answer
        assert answer["event"]["type"] == "MealSkipped"
        assert answer["event"]["payload"]["meal_at_ms"] == meal_ms
        nxt = await asyncio.to_thread(call, sock, {"op": "next-meal"})
        assert nxt["meal"]["day"] == "2026-06-02"
        clock.wall_ms = meal_ms
        [event] = await journaled_meal(daemon, 1)
        assert isinstance(event.payload, FeedRejected) and event.payload.reason == "skipped"
        clock.wall_ms = meal_ms + 86_400_000
        [_, fed] = await journaled_meal(daemon, 2)
        assert isinstance(fed.payload, FeedRequested)
        bad = await asyncio.to_thread(call, sock, {"op": "skip", "schedule": "lunch"})
        assert not bad["ok"] and "no schedule 'lunch'" in bad["error"]


async def test_pause_then_resume_from_the_control_socket(tmp_path, broker):
    meal_ms = at(date(2026, 6, 1), time(7, 30))
    clock = FixedClock(meal_ms - MINUTE)
    config = make_config(tmp_path, broker, "07:30")
    async with running(config, clock=clock) as daemon:
        sock = config.control_path
        paused = await asyncio.to_thread(call, sock, {"op": "pause", "until_ms": meal_ms + 1})
        assert paused["event"]["type"] == "SchedulePaused"
        clock.wall_ms = meal_ms
        [event] = await journaled_meal(daemon, 1)
        assert isinstance(event.payload, FeedRejected) and event.payload.reason == "paused"


async def test_fmfb_schedule_commands(tmp_path, broker):
    from click.testing import CliRunner  # noqa: PLC0415

    from gateway.cli import main  # noqa: PLC0415

    meal_ms = at(date(2026, 6, 1), time(7, 30))
    clock = FixedClock(meal_ms - 60 * MINUTE)
    config = make_config(tmp_path, broker, "07:30")
    toml = tmp_path / "fmfb.toml"
    toml.write_text(f'state_dir = "{config.state_dir}"\n', encoding="utf-8")

    async def fmfb(*args: str) -> str:
        result = await asyncio.to_thread(
            CliRunner().invoke, main, [*args, "--config", str(toml)], catch_exceptions=False
        )
        assert result.exit_code == 0, result.output
        return result.output

    async with running(config, clock=clock) as daemon:
        assert "breakfast of 2026-06-01" in await fmfb("schedule", "next")
        assert "skipping breakfast" in await fmfb("schedule", "skip", "--schedule", "breakfast")
        assert "breakfast of 2026-06-02" in await fmfb("schedule", "next")
        assert "paused until" in await fmfb("schedule", "pause", "--for", "2d")
        assert "resumed" in await fmfb("schedule", "resume")
        kinds = [
            e.type for e in journaled(daemon, EventType.MEAL_SKIPPED, EventType.SCHEDULE_PAUSED)
        ]
        assert kinds == [
            EventType.MEAL_SKIPPED,
            EventType.SCHEDULE_PAUSED,
            EventType.SCHEDULE_PAUSED,
        ]
