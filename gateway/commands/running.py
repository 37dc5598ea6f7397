"""``fmfb run | feed | press | status``: the daemon, and talking to it over its control socket."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from gateway.commands.common import (
    EXIT_REJECTED,
    EXIT_USAGE,
    call_gateway,
    fail,
    load_config,
)
from gateway.commands.options import config_option
from gateway.errors import GatewayError
from gateway.events import Bowl, ClickType, EventType


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
    from gateway.status import GatewayStatus  # noqa: PLC0415

    raw = call_gateway(config_path, {"op": "status"})["status"]
    if as_json:
        click.echo(json.dumps(raw))
        return
    st = GatewayStatus.from_json(raw)
    j = st.journal
    click.echo(f"gateway {st.gateway_id} (version {st.version}, pid {st.pid})")
    disk = f"FAILING: {j.last_error}" if j.disk_failing else "ok"
    click.echo(f"journal  {j.path}  seq {j.seq}  disk {disk}")
    for s in st.sinks:
        link = "connected" if s.connected else f"OFFLINE ({s.last_error or 'connecting'})"
        click.echo(f"sink     {s.name:<12} {link}  cursor {s.cursor}  backlog {s.backlog}")
    for i in st.inputs:
        if i.connected is None:
            link = "ready"
        else:
            link = "connected" if i.connected else f"OFFLINE ({i.last_error or 'connecting'})"
        detail = f"  ({i.detail})" if i.detail else ""
        click.echo(f"input    {i.name:<14} {link}  received {i.received}{detail}")
    f = st.feeder
    online = {True: "online", False: "offline", None: "not heard from"}[f.online]
    level = "unknown" if f.food_level is None else f"{f.food_level}%"
    click.echo(f"feeder   {online}, food {level}")
    for key, n in sorted(st.bad_inputs.items()):
        click.echo(f"ignored  {key}: {n}")


def _report_outcome(answer: dict[str, Any]) -> None:
    event = answer["event"]
    p = event["payload"]
    bowls = "+".join(p["bowls"])
    held = "  (HELD IN MEMORY: the journal's disk is failing)" if answer.get("held") else ""
    if event["type"] == EventType.FEED_REQUESTED.value:
        click.echo(f"accepted: feed {bowls} (seq {event['seq']}, request {p['request_id']}){held}")
        return
    click.echo(f"refused: feed {bowls}: {p['reason']} (seq {event['seq']}){held}")
    sys.exit(EXIT_REJECTED)
