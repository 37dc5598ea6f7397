"""``fmfb``: run the gateway, ask it for a feed, and inspect its journal.

Built on click: subcommands, typed options and ``--help`` text come from one place.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import click

from gateway import __version__
from gateway.commands.options import config_option, journal_option
from gateway.config import Config, load_config
from gateway.errors import ConfigError, ControlError, GatewayError, JournalError
from gateway.events import Bowl, ClickType, Event, EventType
from gateway.journal import JournalReader

SYSTEM_CONFIG = Path("/etc/fmfb/config.toml")

# Exit codes, stated once: scripts rely on them.
EXIT_REJECTED = 1  # the gateway refused the feed; or `verify` found a bad row
EXIT_USAGE = 2  # bad arguments or configuration (click uses 2 for usage errors too)
EXIT_UNREACHABLE = 3  # no running gateway answered


def _fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    click.echo(f"fmfb: {message}", err=True)
    sys.exit(code)


def _config(path: Path | None) -> Config:
    """--config, else $FMFB_CONFIG (click's envvar), else /etc/fmfb/config.toml, else defaults."""
    if path is None and SYSTEM_CONFIG.exists():
        path = SYSTEM_CONFIG
    try:
        return load_config(path)
    except ConfigError as e:
        _fail(str(e))


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="fmfb")
def main() -> None:
    """The feedmyfurbabies gateway: a cat feeder that keeps feeding offline, and keeps every
    event of its life in an ordered, hash-chained journal.

    \b
    Start it:            fmfb run                 (embedded defaults: no Pi, no AWS needed)
    Ask for a feed:      fmfb feed left|right|both
    Press a button:      fmfb press mqtt-button SINGLE
    See what happened:   fmfb journal list        (newest last; --json for scripts)
    See what is behind:  fmfb journal pending
    Check the chain:     fmfb journal verify
    """


# --- the daemon ----------------------------------------------------------------------------


@main.command()
@config_option
def run(config_path: Path | None) -> None:
    """Run the gateway daemon in the foreground (as systemd does).

    With no config it runs on embedded defaults: state in ~/.local/state/fmfb (or systemd's
    $STATE_DIRECTORY), the broker on 127.0.0.1:1883, one MQTT button on topic fmfb/button, mock
    GPIO pins off a Pi, no cloud sinks. Stop it with Ctrl-C or SIGTERM: it journals
    GatewayStopped and exits 0.
    """
    from gateway.daemon import configure_logging, run_daemon  # noqa: PLC0415 - daemon only

    config = _config(config_path)
    configure_logging(config.log_level)
    try:
        sys.exit(asyncio.run(run_daemon(config)))
    except GatewayError as e:
        _fail(str(e), EXIT_USAGE)
    except KeyboardInterrupt:
        sys.exit(0)


@main.command()
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
    _report_outcome(_call(_config(config_path), request))


@main.command()
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
    _report_outcome(_call(_config(config_path), request))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as one JSON object.")
@config_option
def status(as_json: bool, config_path: Path | None) -> None:
    """Show the running gateway's status: journal, sinks, feeder, bad input counts."""
    answer = _call(_config(config_path), {"op": "status"})
    st = answer["status"]
    if as_json:
        click.echo(json.dumps(st))
        return
    j = st["journal"]
    click.echo(f"gateway {st['gateway_id']} (version {st['version']}, pid {st['pid']})")
    disk = "FAILING: " + str(j["last_error"]) if j["disk_failing"] else "ok"
    click.echo(f"journal  {j['path']}  seq {j['seq']}  disk {disk}")
    for s in st["sinks"]:
        link = "connected" if s["connected"] else f"OFFLINE ({s['last_error'] or 'connecting'})"
        click.echo(f"sink     {s['name']:<12} {link}  cursor {s['cursor']}  backlog {s['backlog']}")
    f = st["feeder"]
    online = {True: "online", False: "offline", None: "not heard from"}[f["online"]]
    level = "unknown" if f["food_level"] is None else f"{f['food_level']}%"
    click.echo(f"feeder   {online}, food {level}")
    for key, n in sorted(st["bad_inputs"].items()):
        click.echo(f"ignored  {key}: {n}")


def _call(config: Config, request: dict[str, Any]) -> dict[str, Any]:
    from gateway.control import call  # noqa: PLC0415

    try:
        answer = call(config.control_path, request)
    except ControlError as e:
        _fail(str(e), EXIT_UNREACHABLE)
    if not answer.get("ok"):
        _fail(str(answer.get("error", "the gateway refused the request")))
    return answer


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


# --- the journal ---------------------------------------------------------------------------


@main.group()
def journal() -> None:
    """Inspect the journal (safe while the daemon runs; also works on a copied file).

    The journal's order is seq, not time: the Pi has no real-time clock, and each event records
    whether its clock was synchronised. Time filters use each event's recorded time.
    """


def _open_reader(journal_path: Path | None, config_path: Path | None) -> JournalReader:
    path = journal_path or _config(config_path).journal_file
    try:
        return JournalReader.open(path)
    except JournalError as e:
        _fail(str(e))


_DURATION = re.compile(r"^(\d+)\s*(s|m|h|d|w)$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_when(text: str, now_ms: int | None = None) -> int:
    """A time as ms since the epoch: ISO 8601 (no zone = UTC), or a duration ago ("90m")."""
    now_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    m = _DURATION.match(text.strip())
    if m:
        return now_ms - int(m.group(1)) * _UNIT_S[m.group(2)] * 1000
    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{text!r}: use ISO 8601 (2026-11-27, 2026-11-27T08:00Z) or a duration ago (90m, 2d)"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def _when(_ctx: click.Context, _param: click.Parameter, value: str | None) -> int | None:
    return None if value is None else parse_when(value)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _summary(event: Event) -> str:
    p = event.payload.to_dict()
    bits = []
    if "bowls" in p:
        bits.append("+".join(p["bowls"]))
    for key in ("click_type", "button", "reason", "refused_by", "ran_ms", "level", "version"):
        if p.get(key) not in (None, ""):
            bits.append(f"{key}={p[key]}")
    return " ".join(bits)


# `journal list` is in gateway/commands/inspect.py, with show, tail, stats, export, chart.


@journal.command("pending")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per sink.")
@journal_option
@config_option
def journal_pending(as_json: bool, journal_path: Path | None, config_path: Path | None) -> None:
    """Per sink: its cursor, how many events it has not finished, and how old the oldest is."""
    now = time.time_ns() // 1_000_000
    with _open_reader(journal_path, config_path) as reader:
        rows = reader.pending()
        last = reader.last_seq()
    if as_json:
        for p in rows:
            age = None if p.oldest_unfinished_ms is None else now - p.oldest_unfinished_ms
            click.echo(
                json.dumps(
                    {
                        "sink": p.sink,
                        "cursor": p.cursor,
                        "backlog": p.backlog,
                        "oldest_unfinished_ms": p.oldest_unfinished_ms,
                        "oldest_age_ms": age,
                        "last_seq": last,
                    }
                )
            )
        return
    click.echo(f"journal at seq {last}")
    if not rows:
        click.echo("no sinks have a cursor yet")
    for p in rows:
        shown = "-" if p.oldest_unfinished_ms is None else _age(now - p.oldest_unfinished_ms)
        click.echo(f"{p.sink:<12} cursor {p.cursor:>8}  backlog {p.backlog:>7}  oldest {shown}")


def _age(ms: int) -> str:
    s = max(0, ms) // 1000
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86_400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86_400}d{s % 86_400 // 3600:02d}h"


@journal.command("verify")
@journal_option
@config_option
def journal_verify(journal_path: Path | None, config_path: Path | None) -> None:
    """Check the whole hash chain and seq continuity; name the first bad row (exit 1).

    On a big journal it reports its progress on stderr every 100,000 rows.
    """
    with _open_reader(journal_path, config_path) as reader:
        checked, problem = _verify_with_progress(reader)
    if problem is not None:
        click.echo(f"BROKEN after {checked} good rows: {problem}")
        sys.exit(EXIT_REJECTED)
    click.echo(f"ok: {checked} rows, chain and seq intact")


VERIFY_PROGRESS_ROWS = 100_000


def _verify_with_progress(reader: JournalReader) -> tuple[int, str | None]:
    """``JournalReader.verify``, with a progress line on stderr every VERIFY_PROGRESS_ROWS."""
    total = reader.last_seq()
    started = time.monotonic()

    def show(checked: int) -> None:
        rate = checked / max(1e-9, time.monotonic() - started)
        click.echo(
            f"verify: {checked:,}/{total:,} rows ({checked / total:.0%}, {rate:,.0f}/s)",
            err=True,
        )

    return reader.verify(progress=show, every=VERIFY_PROGRESS_ROWS)


# --- configuration -------------------------------------------------------------------------


@main.group("config")
def config_group() -> None:
    """Check or show the configuration."""


@config_group.command("check")
@config_option
def config_check(config_path: Path | None) -> None:
    """Validate the config file; print the effective journal and broker."""
    config = _config(config_path)
    click.echo(
        f"ok: journal {config.journal_file}, broker {config.broker.host}:{config.broker.port}"
    )


@config_group.command("show")
@config_option
def config_show(config_path: Path | None) -> None:
    """Print the effective configuration (defaults filled in) as JSON."""
    click.echo(_config(config_path).model_dump_json(indent=2))


# --- commands defined in gateway/commands/ (one line each) ----------------------------------
from gateway.commands import inspect as _inspect  # noqa: E402 - needs the helpers above

for _command in _inspect.COMMANDS:  # list, show, tail, stats, export, chart
    journal.add_command(_command)

from gateway.commands.demo import demo  # noqa: E402

main.add_command(demo)

from gateway.commands.project import project  # noqa: E402

main.add_command(project)

from gateway.commands.replay import replay  # noqa: E402

main.add_command(replay)

from gateway.commands.from_terraform import from_terraform  # noqa: E402

config_group.add_command(from_terraform)
