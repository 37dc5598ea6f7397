"""``fmfb doctor``: what is wrong with this gateway, and how to fix it, in one list.

Each check returns :class:`Finding` records: pass, fail (with the fix) or skip (why it could not
be checked). The checks read the world only through :class:`Environment`, whose defaults are
the real thing (the kernel's clock state, the disk, the control socket, /dev) and which tests
replace piece by piece. The broker's checks (they talk MQTT) are in :mod:`gateway.doctor_broker`.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from gateway.clock import kernel_clock_synced
from gateway.config import Config, load_config
from gateway.doctor_findings import Finding, bad, ok, skip
from gateway.errors import ConfigError, ControlError, GatewayError, JournalError
from gateway.events import EventType
from gateway.journal import JournalReader
from gateway.journal.chain import check_row
from gateway.paths import chosen_config
from gateway.status import GatewayStatus

# Below either, the journal may soon fail to commit (and feeding goes on from memory only).
MIN_FREE_BYTES: Final = 64 * 1024 * 1024
MIN_FREE_FRACTION: Final = 0.05
TAIL_ROWS: Final = 1000  # rows of the chain's tail checked (`fmfb journal verify`: all)
STALE_BACKLOG_MS: Final = 3_600_000  # a sink this far behind is failing, not just busy
FEEDER_QUIET_MS: Final = 86_400_000  # no word from the feeder in a day


def _running_status(control_path: Path) -> GatewayStatus | None:
    from gateway.control import call  # noqa: PLC0415 - only when asked

    try:
        answer = call(control_path, {"op": "status"}, timeout_s=5.0)
    except (ControlError, OSError, ValueError):
        return None
    if not answer.get("ok"):
        return None
    return GatewayStatus.from_json(answer["status"])


def _gpio_chips() -> list[Path]:
    return sorted(Path("/dev").glob("gpiochip*"))


@dataclass
class Environment:
    """Everything the checks read from outside the config. Each piece is replaceable."""

    clock_synced: Callable[[], bool] = kernel_clock_synced
    disk_usage: Callable[[Path], Any] = shutil.disk_usage
    gateway_status: Callable[[Path], GatewayStatus | None] = _running_status
    gpio_chips: Callable[[], list[Path]] = _gpio_chips
    now_ms: Callable[[], int] = field(default=lambda: time.time_ns() // 1_000_000)
    service_user: str = "fmfb"  # the unit's User=
    # Whether the broker checks may connect (tests of the other checks turn them off).
    broker: bool = True


def load(config_path: Path | None) -> tuple[Config | None, Finding]:
    source = chosen_config(config_path)
    try:
        config = load_config(source)
    except ConfigError as e:
        fix = "correct the key named above (systemd/config.example.toml lists every key)"
        return None, bad("config", str(e), fix)
    where = str(source) if source is not None else "the embedded defaults (no config file)"
    return config, ok("config", f"valid: {where}")


def run(config_path: Path | None, env: Environment | None = None) -> list[Finding]:
    """Every check, in the order a person would fix them."""
    env = env or Environment()
    config, found = load(config_path)
    findings = [found]
    if config is None:
        return findings
    status = env.gateway_status(config.control_path)
    if env.broker:
        from gateway.doctor_broker import broker_checks  # noqa: PLC0415 - paho, only here

        findings += broker_checks(config, status)
    findings.append(gpio_access(config, env))
    findings.append(clock(env))
    findings.append(disk(config, env))
    findings.append(journal_tail(config))
    findings += sinks(config, status, env)
    findings += cloud(config)
    findings.append(feeder(config, status, env))
    return findings


# --- the host ----------------------------------------------------------------------------------


def gpio_access(config: Config, env: Environment) -> Finding:
    name = "gpio"
    if not config.buttons.gpio:
        return skip(name, "no GPIO buttons configured")
    if config.buttons.pin_factory == "mock":
        return skip(name, "pin_factory is mock: no real pins used")
    chips = env.gpio_chips()
    if not chips:
        return bad(
            name,
            "no /dev/gpiochip*: this machine has no GPIO the gateway can use",
            'run on a Raspberry Pi, or set [buttons] pin_factory = "mock"',
        )
    user = env.service_user
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return bad(name, f"no user {user!r} (the unit's User=)", "sudo scripts/install-pi")
    groups = {g.gr_gid for g in grp.getgrall() if user in g.gr_mem} | {entry.pw_gid}
    refused = [str(c) for c in chips if not _may_read_write(c.stat(), entry.pw_uid, groups)]
    if refused:
        return bad(
            name,
            f"{user} may not open {', '.join(refused)}",
            f"sudo usermod -aG gpio {user} (and the udev rule giving /dev/gpiochip* to gpio)",
        )
    return ok(name, f"{user} may open {', '.join(str(c) for c in chips)}")


def _may_read_write(st: os.stat_result, uid: int, gids: set[int]) -> bool:
    if uid == 0:
        return True
    if st.st_uid == uid:
        return st.st_mode & 0o600 == 0o600
    if st.st_gid in gids:
        return st.st_mode & 0o060 == 0o060
    return st.st_mode & 0o006 == 0o006


def clock(env: Environment) -> Finding:
    if env.clock_synced():
        return ok("clock", "synchronised (NTP)")
    return bad(
        "clock",
        "NOT synchronised: events are recorded with a clock that may be wrong, and time-based "
        "limits use it",
        "sudo timedatectl set-ntp true; check the network and `timedatectl timesync-status`",
    )


def disk(config: Config, env: Environment) -> Finding:
    where = config.journal_file.parent
    probe = where if where.exists() else config.state_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    usage = env.disk_usage(probe)
    size = sum(
        Path(f"{config.journal_file}{s}").stat().st_size
        for s in ("", "-wal")
        if Path(f"{config.journal_file}{s}").exists()
    )
    detail = (
        f"{usage.free / 1_048_576:.1f} MiB free of {usage.total / 1_048_576:.1f} MiB at {probe}; "
        f"journal {size / 1_048_576:.1f} MiB"
    )
    if usage.free < MIN_FREE_BYTES or usage.free < usage.total * MIN_FREE_FRACTION:
        return bad(
            "disk",
            f"nearly full: {detail}",
            "free space there (journalctl --vacuum-size=100M, apt clean), or move state_dir "
            "to a bigger disk; the journal keeps feeding from memory but cannot record",
        )
    return ok("disk", detail)


def journal_tail(config: Config) -> Finding:
    name = "journal"
    path = config.journal_file
    if not path.exists():
        return skip(name, f"no journal yet at {path} (the gateway creates it at its first start)")
    try:
        with JournalReader.open(path) as reader:
            last = reader.last_seq()
            start = max(reader.base_seq(), last - TAIL_ROWS)
            problem = _tail_problem(reader, start)
    except (JournalError, sqlite3.Error, OSError) as e:
        return bad(
            name, f"{path}: {e}", "fmfb journal verify; the gateway sets a damaged one aside"
        )
    if problem:
        return bad(
            name,
            f"{path}: {problem}",
            "fmfb journal verify names the row; restart the gateway to set the journal aside",
        )
    return ok(name, f"{path}: the last {last - start} rows chain (seq {last})")


def _tail_problem(reader: JournalReader, after: int) -> str | None:
    rows = reader.chain_rows(max(0, after - 1))
    prev = reader.genesis_hash()
    base = reader.base_seq()
    expected = base + 1
    if after > base:
        anchor = next(rows, None)
        if anchor is None:
            return f"row {after} missing"
        prev, expected = anchor.hash, anchor.seq + 1
    for row in rows:
        problem = check_row(row, expected_seq=expected, expected_prev_hash=prev)
        if problem:
            return f"seq {row.seq}: {problem}"
        prev, expected = row.hash, row.seq + 1
    return None


# --- what the gateway does ---------------------------------------------------------------------


def sinks(config: Config, status: GatewayStatus | None, env: Environment) -> Iterator[Finding]:
    now = env.now_ms()
    configured = config.sinks.configured()
    if status is not None:
        for s in status.sinks:
            yield _sink(
                s.name,
                s.backlog,
                oldest_ms=s.oldest_pending_ms,
                success_ms=s.last_success_ms,
                now=now,
                connected=s.connected,
            )
        return
    if not config.journal_file.exists():
        return
    try:
        with JournalReader.open(config.journal_file) as reader:
            pending = {p.sink: p for p in reader.pending()}
    except (JournalError, sqlite3.Error, OSError):
        return  # the journal check says why
    for name in configured:
        p = pending.get(name)
        if p is None:
            yield skip(f"sink {name}", "no cursor yet (the gateway has not run with it)")
            continue
        yield _sink(
            name,
            p.backlog,
            oldest_ms=p.oldest_unfinished_ms,
            success_ms=p.updated_at_ms,  # the cursor last moved: the last delivery
            now=now,
            connected=None,
        )


def _sink(
    name: str,
    backlog: int,
    *,
    oldest_ms: int | None,
    success_ms: int | None,
    now: int,
    connected: bool | None,
) -> Finding:
    check = f"sink {name}"
    when = "never" if success_ms is None else f"{(now - success_ms) // 1000} s ago"
    detail = f"backlog {backlog}, last success {when}"
    if connected is None:
        detail += " (from the journal: the gateway is not running)"
    if connected is False:
        return bad(check, f"link down; {detail}", "see `fmfb status` for its last error")
    if oldest_ms is not None and backlog and now - oldest_ms > STALE_BACKLOG_MS:
        return bad(
            check,
            f"{detail}; the oldest pending event is {(now - oldest_ms) // 60_000} min old",
            "see `fmfb status` and `journalctl -u fmfb` for why it cannot deliver",
        )
    return ok(check, detail)


def cloud(config: Config) -> Iterator[Finding]:
    eventbridge = config.sinks.eventbridge
    if eventbridge is None or not eventbridge.enabled:
        return
    check = "cloud credentials"
    try:
        from gateway.credentials import aws_session  # noqa: PLC0415 - boto3, only here

        session = aws_session(config.cloud)
        client = session.client(
            "events", endpoint_url=eventbridge.endpoint_url, region_name=config.cloud.aws.region
        )
        client.describe_event_bus(Name=eventbridge.bus)
    except ImportError:
        yield bad(check, "boto3 is not installed", "reinstall with the cloud extra")
    except (GatewayError, Exception) as e:
        yield bad(
            check,
            f"EventBridge bus {eventbridge.bus!r}: {type(e).__name__}: {e}",
            "check [cloud] credentials (the credentials provider or the AWS keys) and the bus",
        )
        return
    yield ok(check, f"EventBridge bus {eventbridge.bus!r} is reachable with these credentials")


FEEDER_FIX: Final = "is the feeder powered and on the Wi-Fi, with its broker credentials?"


def feeder(config: Config, status: GatewayStatus | None, env: Environment) -> Finding:
    if status is not None:
        online = status.feeder.online
        if online:
            return ok("feeder", "online (the running gateway's last word from it)")
        return bad(
            "feeder", "offline" if online is False else "not heard from since start", FEEDER_FIX
        )
    if not config.journal_file.exists():
        return skip("feeder", "no journal yet")
    try:
        with JournalReader.open(config.journal_file) as reader:
            last = reader.last_of_types(
                [EventType.FEEDER_ONLINE, EventType.FEEDER_OFFLINE, EventType.FEED_DISPENSED]
            )
    except (JournalError, sqlite3.Error, OSError):
        return skip("feeder", "the journal cannot be read (see the journal check)")
    ago_s = (env.now_ms() - last.occurred_at_ms) // 1000 if last else 0
    said = f"last heard {ago_s} s ago ({last.type.value}, from the journal)" if last else ""
    if last is None or last.type is EventType.FEEDER_OFFLINE or ago_s * 1000 > FEEDER_QUIET_MS:
        said = said or "never heard from"
        return bad("feeder", said, FEEDER_FIX)
    return ok("feeder", said)
