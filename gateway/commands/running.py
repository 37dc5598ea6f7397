"""``fmfb run | feed | press | status``: the daemon, and talking to it over its control socket."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from gateway.commands.common import (
    EXIT_REJECTED,
    EXIT_USAGE,
    age,
    call_gateway,
    fail,
    iso,
    load_config,
)
from gateway.commands.options import config_option
from gateway.errors import GatewayError
from gateway.events import Bowl, ClickType, EventType
from gateway.status import GatewayStatus


@click.command()
@config_option
def run(config_path: Path | None) -> None:
    """Run the gateway daemon in the foreground (as systemd does).

    With no config it runs on embedded defaults: state in ~/.local/state/fmfb (or systemd's
    $STATE_DIRECTORY), the broker on 127.0.0.1:1883, one MQTT button on topic fmfb/button, mock
    GPIO pins off a Pi, no cloud sinks. Stop it with Ctrl-C or SIGTERM: it journals
    GatewayStopped and exits 0.
    """
    import asyncio  # noqa: PLC0415 - the daemon only

    from gateway.daemon import configure_logging, run_daemon  # noqa: PLC0415

    config = load_config(config_path)
    configure_logging(config.log_level)
    try:
        sys.exit(asyncio.run(run_daemon(config)))
    except GatewayError as e:
        fail(str(e), EXIT_USAGE)
    except KeyboardInterrupt:
        sys.exit(0)


@click.command()
@click.argument("bowls", type=click.Choice(["left", "right", "both"]))
@click.option("--portion-ms", type=click.IntRange(1, 120_000), help="Motor time per bowl.")
@config_option
def feed(bowls: str, portion_ms: int | None, config_path: Path | None) -> None:
    """Ask the running gateway to feed BOWLS now.

    The request goes through the same safety policy as a button press (caps, minimum gap); the
    answer is what the journal recorded. Exit status: 0 accepted, 1 refused, 3 no gateway.
    """
    chosen = [Bowl.LEFT.value, Bowl.RIGHT.value] if bowls == "both" else [bowls]
    request: dict[str, Any] = {"op": "feed", "bowls": chosen}
    if portion_ms is not None:
        request["portion_ms"] = portion_ms
    _report_outcome(call_gateway(config_path, request))


@click.command()
@click.argument("button")
@click.argument(
    "click_type",
    metavar="CLICK",
    type=click.Choice([c.value for c in ClickType], case_sensitive=False),
)
@config_option
def press(button: str, click_type: str, config_path: Path | None) -> None:
    """Send CLICK (SINGLE, DOUBLE or LONG) as BUTTON would.

    BUTTON is a configured button's name (the default config has "mqtt-button"). The click maps
    to bowls as configured (defaults: SINGLE left, DOUBLE right, LONG both).
    """
    request = {"op": "press", "button": button, "click": click_type.upper()}
    _report_outcome(call_gateway(config_path, request))


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as one JSON object.")
@config_option
def status(as_json: bool, config_path: Path | None) -> None:
    """Show the running gateway's status: journal, sinks, inputs, feeder, bad input counts."""
    raw = call_gateway(config_path, {"op": "status"})["status"]
    if as_json:
        click.echo(json.dumps(raw))
        return
    for line in status_lines(GatewayStatus.from_json(raw), time.time_ns() // 1_000_000):
        click.echo(line)


def status_lines(st: GatewayStatus, now_ms: int) -> list[str]:
    """``fmfb status``: the same figures the metrics endpoint exports (gateway/metrics.py)."""
    j = st.journal
    lines = [f"gateway {st.gateway_id} (version {st.version}, pid {st.pid})"]
    disk = f"FAILING: {j.last_error} ({j.held} held in memory)" if j.disk_failing else "ok"
    size = f"{j.size_bytes / 1_048_576:.1f} MiB"
    lines.append(f"journal  {j.path}  seq {j.seq}  rows {j.durable_seq}  {size}  disk {disk}")
    commits = sum(j.commit_counts)
    if commits:
        lines.append(f"         {commits} commits, mean {1000 * j.commit_seconds / commits:.1f} ms")
    for s in st.sinks:
        link = "connected" if s.connected else f"OFFLINE ({s.last_error or 'connecting'})"
        lines.append(f"sink     {s.name:<12} {link}  cursor {s.cursor}  backlog {s.backlog}")
        oldest = "-" if s.oldest_pending_ms is None else age(now_ms - s.oldest_pending_ms)
        success = "never" if s.last_success_ms is None else f"{age(now_ms - s.last_success_ms)} ago"
        lines.append(
            f"         oldest pending {oldest}  last success {success}  delivered {s.delivered}"
            f"  dead-lettered {s.dead_lettered}"
        )
    for i in st.inputs:
        if i.connected is None:
            link = "ready"
        else:
            link = "connected" if i.connected else f"OFFLINE ({i.last_error or 'connecting'})"
        detail = f"  ({i.detail})" if i.detail else ""
        lines.append(f"input    {i.name:<14} {link}  received {i.received}{detail}")
    f = st.feeder
    online = {True: "online", False: "offline", None: "not heard from"}[f.online]
    level = "unknown" if f.food_level is None else f"{f.food_level}%"
    lines.append(f"feeder   {online}, food {level}")
    if f.feeds_in_period:
        per_bowl = ", ".join(f"{bowl} {n}" for bowl, n in sorted(f.feeds_in_period.items()))
        cap = f" (cap {f.cap_per_bowl} per {age((f.cap_period_s or 0) * 1000)})"
        lines.append(f"feeds    {per_bowl}{cap if f.cap_per_bowl else ''}")
    lines += [f"ignored  {key}: {n}" for key, n in sorted(st.bad_inputs.items())]
    return lines


def _report_outcome(answer: dict[str, Any]) -> None:
    event = answer["event"]
    p = event["payload"]
    bowls = "+".join(p["bowls"])
    held = "  (HELD IN MEMORY: the journal's disk is failing)" if answer.get("held") else ""
    if event["type"] == EventType.FEED_REQUESTED.value:
        click.echo(f"accepted: feed {bowls} (seq {event['seq']}, request {p['request_id']}){held}")
        return
    click.echo(f"refused: feed {bowls}: {p['reason']} (seq {event['seq']}){held}")
    next_ms = answer.get("next_allowed_at_ms")
    if isinstance(next_ms, int):
        wait_ms = next_ms - time.time_ns() // 1_000_000
        click.echo(f"next feed of {bowls} allowed at {iso(next_ms)} UTC (in {age(wait_ms)})")
    sys.exit(EXIT_REJECTED)
