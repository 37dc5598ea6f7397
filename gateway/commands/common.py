"""What the CLI's commands share: exit codes, failing with a message, finding the config, the
journal and the control socket, and reading times. Light on purpose: every ``fmfb`` command
imports this, so pydantic's config model, asyncio and the cloud libraries load only in the
commands that need them.
"""

from __future__ import annotations

import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from gateway.errors import ConfigError, ControlError, JournalError

if TYPE_CHECKING:
    from gateway.config import Config
    from gateway.events import Event
    from gateway.journal import JournalReader
    from gateway.paths import StatePaths

# Exit codes, stated once: scripts rely on them.
EXIT_REJECTED = 1  # the gateway refused the feed; or `verify` found a bad row
EXIT_USAGE = 2  # bad arguments or configuration (click uses 2 for usage errors too)
EXIT_UNREACHABLE = 3  # no running gateway answered


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    click.echo(f"fmfb: {message}", err=True)
    sys.exit(code)


def load_config(path: Path | None) -> Config:
    """The whole config, validated: --config, else $FMFB_CONFIG (click's envvar), else
    /etc/fmfb/config.toml, else the embedded defaults."""
    from gateway.config import load_config as load  # noqa: PLC0415 - pydantic: only here
    from gateway.paths import chosen_config  # noqa: PLC0415

    try:
        return load(chosen_config(path))
    except ConfigError as e:
        fail(str(e))


def state_paths(config_path: Path | None) -> StatePaths:
    """Where the journal and the control socket are, without validating the whole config."""
    from gateway.paths import StatePaths  # noqa: PLC0415

    try:
        return StatePaths.load(config_path)
    except ConfigError as e:
        fail(str(e))


def open_reader(journal_path: Path | None, config_path: Path | None) -> JournalReader:
    from gateway.journal import JournalReader  # noqa: PLC0415

    path = journal_path or state_paths(config_path).journal_file
    try:
        return JournalReader.open(path)
    except JournalError as e:
        fail(str(e))
    except PermissionError as e:
        fail(f"{path}: {e.strerror}: the journal is readable by the group the gateway runs as")


def call_gateway(config_path: Path | None, request: dict[str, Any]) -> dict[str, Any]:
    """Ask the running gateway over its control socket; fail with exit 3 if none answers."""
    from gateway.control import call  # noqa: PLC0415
    from gateway.paths import chosen_config  # noqa: PLC0415

    socket_path = state_paths(config_path).control_path
    try:
        answer = call(socket_path, request)
    except ControlError as e:
        source = chosen_config(config_path) or "the embedded defaults"
        hint = "".join(
            f"\n  a gateway runs with --config {cfg} (pid {pid}): pass the same --config"
            " (or set FMFB_CONFIG)"
            for pid, cfg in running_gateways()
            if cfg is not None and Path(cfg).resolve() != Path(str(source)).resolve()
        )
        fail(f"{e} (the socket named by {source}){hint}", EXIT_UNREACHABLE)
    if not answer.get("ok"):
        fail(str(answer.get("error", "the gateway refused the request")))
    return answer


def running_gateways(proc: Path = Path("/proc")) -> list[tuple[int, str | None]]:
    """(pid, its --config or None) of each ``fmfb run`` on this machine, read from /proc: when
    the CLI finds no gateway at the socket its config names, one may be running with another
    config (another state directory), and saying which beats "no gateway is running"."""
    found: list[tuple[int, str | None]] = []
    for entry in proc.glob("[0-9]*/cmdline"):
        try:
            argv = entry.read_bytes().split(b"\0")
        except OSError:
            continue  # gone, or not ours to read
        args = [a.decode("utf-8", "replace") for a in argv if a]
        is_fmfb = any(a.endswith("fmfb") or "gateway.cli" in a for a in args)
        if not is_fmfb or "run" not in args:
            continue
        config = None
        for i, arg in enumerate(args):
            if arg == "--config" and i + 1 < len(args):
                config = args[i + 1]
            elif arg.startswith("--config="):
                config = arg.partition("=")[2]
        found.append((int(entry.parent.name), config))
    return sorted(found)


# --- times ----------------------------------------------------------------------------------

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


def when(_ctx: click.Context, _param: click.Parameter, value: str | None) -> int | None:
    """A click callback: --since/--until/--as-of-time as ms since the epoch."""
    return None if value is None else parse_when(value)


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def age(ms: int) -> str:
    s = max(0, ms) // 1000
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86_400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86_400}d{s % 86_400 // 3600:02d}h"


def summary(event: Event) -> str:
    """The few payload fields a person scanning a list wants, on one line."""
    p = event.payload.to_dict()
    bits = []
    if "bowls" in p:
        bits.append("+".join(p["bowls"]))
    keys = ("click_type", "button", "schedule", "reason", "refused_by", "ran_ms", "level")
    for key in (*keys, "version", "kind", "subject", "message", "until_ms", "meal_at_ms"):
        if p.get(key) not in (None, ""):
            bits.append(f"{key}={p[key]}")
    return " ".join(bits)
