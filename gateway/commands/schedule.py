"""``fmfb schedule next | skip | pause | resume``: the running gateway's meal schedules.

Each change is journaled by the daemon (``MealSkipped``, ``SchedulePaused``), exactly as the
same button in Home Assistant would do it; this module only asks over the control socket.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from gateway.commands.common import EXIT_USAGE, call_gateway, fail, iso, parse_when
from gateway.commands.options import config_option

_DAY_MS = 86_400_000


def _meal_line(meal: dict[str, Any]) -> str:
    return (
        f"{meal['schedule']} of {meal['day']} at {iso(meal['at_ms'])} UTC "
        f"({'+'.join(meal['bowls'])})"
    )


@click.command("next")
@config_option
def schedule_next(config_path: Path | None) -> None:
    """Show the next meal that will be fed (skipped and paused meals are not "next")."""
    meal = call_gateway(config_path, {"op": "next-meal"})["meal"]
    click.echo("no meal scheduled" if meal is None else f"next: {_meal_line(meal)}")


@click.command("skip")
@click.option("--schedule", "name", help="Skip the next meal of this schedule only.")
@config_option
def schedule_skip(name: str | None, config_path: Path | None) -> None:
    """Skip the next meal (asked again, the one after). Journaled as MealSkipped."""
    request: dict[str, Any] = {"op": "skip"}
    if name is not None:
        request["schedule"] = name
    event = call_gateway(config_path, request)["event"]
    p = event["payload"]
    click.echo(f"skipping {p['schedule']} at {iso(p['meal_at_ms'])} UTC (seq {event['seq']})")


@click.command("pause")
@click.option("--until", "until", help="ISO 8601 time (no zone = UTC) to resume at.")
@click.option("--for", "duration", help="How long: 90m, 12h, 3d, 1w.")
@config_option
def schedule_pause(until: str | None, duration: str | None, config_path: Path | None) -> None:
    """Pause every schedule until a time; meals due meanwhile are journaled as paused."""
    if (until is None) == (duration is None):
        fail("give exactly one of --until and --for", EXIT_USAGE)
    now = time.time_ns() // 1_000_000
    if duration is not None:
        # parse_when reads a duration as "ago": the pause runs as far ahead.
        until_ms = now + (now - parse_when(duration, now))
    else:
        until_ms = parse_when(str(until), now)
    event = call_gateway(config_path, {"op": "pause", "until_ms": until_ms})["event"]
    click.echo(f"schedules paused until {iso(until_ms)} UTC (seq {event['seq']})")


@click.command("resume")
@config_option
def schedule_resume(config_path: Path | None) -> None:
    """End a pause now."""
    event = call_gateway(config_path, {"op": "pause", "until_ms": 0})["event"]
    stamp = datetime.now(UTC).strftime("%H:%M:%S")
    click.echo(f"schedules resumed at {stamp} UTC (seq {event['seq']})")
