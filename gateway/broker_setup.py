"""Write the locked-down Mosquitto's files (the design is in :mod:`gateway.broker_plan`):
the conf.d snippet, the password file (hashed by ``mosquitto_passwd``), the ACL, a credentials
file per user and the feeder's ``config.json``. ``scripts/install-pi`` runs
``python -m gateway.broker_setup``; re-running it keeps every password.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from gateway.broker_plan import (
    DEBIAN_MAIN_CONF,
    DEFAULT_FEEDER_USER,
    DEFAULT_PORT,
    DEFAULT_TLS_PORT,
    BrokerClient,
    BrokerFiles,
    BrokerPlan,
    HomeAssistantAccess,
    MqttButton,
    TlsListener,
    acl_text,
    firmware_config,
    main_conf_problem,
    mosquitto_conf_text,
)
from gateway.errors import BrokerSetupError

__all__ = [
    "WriteResult",
    "hashed_password_file",
    "load_or_create_passwords",
    "main",
    "write_broker_files",
]

PASSWORD_BYTES: Final = 24  # 32 characters of URL-safe base64: no quoting trouble anywhere


def _under(root: Path, path: Path) -> Path:
    """``path`` (absolute, as on the running system) inside the install root."""
    return root / path.relative_to(path.anchor)


def _write_atomic(path: Path, data: str, mode: int) -> None:
    """Write through a temporary file and a rename: a reader (the broker reloading, a power
    cut) sees the old file or the new one, never half of one. The mode is set before any
    byte is written, so a secret is never readable by others even for a moment."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_or_create_passwords(credentials_dir: Path, usernames: Sequence[str]) -> dict[str, str]:
    """Each user's password: kept from its credentials file when there is one (a re-run must
    not change the password flashed into the feeder), else a new random one, written 0600."""
    passwords: dict[str, str] = {}
    for username in usernames:
        path = credentials_dir / username
        try:
            password = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            password = ""
        if not password:
            password = secrets.token_urlsafe(PASSWORD_BYTES)
            _write_atomic(path, password + "\n", 0o600)
        passwords[username] = password
    return passwords


def hashed_password_file(passwords: Mapping[str, str], workdir: Path, binary: str) -> str:
    """The password_file's text, hashed by the stock ``mosquitto_passwd -U`` (it hashes a file
    of ``user:password`` lines in place). The plaintext goes through a 0600 file, never a
    command line that ``ps`` would show."""
    found = shutil.which(binary)
    if found is None:
        raise BrokerSetupError(f"{binary} not found (Debian package: mosquitto)")
    fd, tmp = tempfile.mkstemp(prefix=".passwd-plain.", dir=workdir)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.writelines(f"{user}:{password}\n" for user, password in passwords.items())
        result = subprocess.run(
            [found, "-U", tmp], capture_output=True, text=True, check=False, timeout=60
        )
        if result.returncode != 0:
            raise BrokerSetupError(
                f"mosquitto_passwd -U failed ({result.returncode}): "
                f"{(result.stderr or result.stdout).strip()}"
            )
        text = Path(tmp).read_text(encoding="utf-8")
    finally:
        Path(tmp).unlink(missing_ok=True)
    users = [line.partition(":")[0] for line in text.splitlines() if line]
    if users != list(passwords) or any(":$7$" not in line for line in text.splitlines()):
        raise BrokerSetupError("mosquitto_passwd -U did not hash every user")
    return text


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What :func:`write_broker_files` wrote (paths on the running system) and decided."""

    clients: tuple[BrokerClient, ...]
    written: tuple[Path, ...]
    main_conf_replaced: str | None  # why the package's main config was replaced, if it was


def write_broker_files(
    plan: BrokerPlan,
    *,
    root: Path = Path("/"),
    files: BrokerFiles | None = None,
    broker_host: str = "127.0.0.1",
    hasher: str = "mosquitto_passwd",
) -> WriteResult:
    """Write the lock-down under ``root``: conf.d snippet, password file, ACL, a credentials
    file per user and the feeder's firmware config. Idempotent: passwords are kept. Modes are
    final (secrets 0600, broker files 0640); owners are the installer's to set."""
    files = files or BrokerFiles()
    clients = plan.clients()
    creds_dir = _under(root, files.credentials_dir)
    creds_dir.mkdir(parents=True, exist_ok=True)
    passwords = load_or_create_passwords(creds_dir, [c.username for c in clients])
    written = [files.credentials(c.username) for c in clients]

    password_file = _under(root, files.password_file)
    password_file.parent.mkdir(parents=True, exist_ok=True)
    hashed = hashed_password_file(passwords, password_file.parent, hasher)
    # 0640: the broker reads them as the user "mosquitto" (the installer sets the group).
    _write_atomic(password_file, hashed, 0o640)
    _write_atomic(_under(root, files.acl_file), acl_text(clients), 0o640)
    _write_atomic(_under(root, files.conf), mosquitto_conf_text(plan, files), 0o644)
    written += [files.password_file, files.acl_file, files.conf]

    replaced = None
    main_conf = _under(root, files.main_conf)
    current = main_conf.read_text(encoding="utf-8") if main_conf.exists() else None
    problem = "there is none" if current is None else main_conf_problem(current)
    if problem is not None:
        if current is not None:
            backup = main_conf.with_name(main_conf.name + ".fmfb-orig")
            if not backup.exists():
                _write_atomic(backup, current, 0o644)
                written.append(files.main_conf.with_name(backup.name))
        _write_atomic(main_conf, DEBIAN_MAIN_CONF, 0o644)
        written.append(files.main_conf)
        replaced = problem

    # With a TLS listener the feeder uses it: its password then never crosses the Wi-Fi
    # in clear.
    firmware = firmware_config(
        plan, passwords[plan.feeder_user], broker_host, use_tls=plan.tls is not None
    )
    _write_atomic(_under(root, files.firmware_config), json.dumps(firmware, indent=2) + "\n", 0o600)
    written.append(files.firmware_config)
    return WriteResult(clients=clients, written=tuple(written), main_conf_replaced=replaced)


# --- command line (the installer's entry point) ----------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m gateway.broker_setup",
        description="Write the locked-down local Mosquitto config, users, passwords and ACLs "
        "(scripts/install-pi runs this). Re-running keeps every existing password.",
    )
    p.add_argument("--root", type=Path, default=Path("/"), help="install root (default /)")
    p.add_argument("--gateway-id", required=True, help="the gateway's gateway_id")
    p.add_argument("--feeder-user", default=DEFAULT_FEEDER_USER, help="the feeder's user")
    p.add_argument(
        "--mqtt-button",
        action="append",
        default=[],
        metavar="NAME=TOPIC",
        help="an MQTT button and its topic (repeatable)",
    )
    p.add_argument("--zigbee2mqtt", metavar="BASE", help="a zigbee2mqtt bridge's base topic")
    p.add_argument("--monitor-user", help="a read-only user for watching all traffic")
    p.add_argument(
        "--home-assistant",
        metavar="USER",
        help="Home Assistant's broker user (and the gateway's two links for it)",
    )
    p.add_argument("--listen-address", help="plain listener's address (default: every address)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="plain listener's port")
    p.add_argument("--tls-port", type=int, default=DEFAULT_TLS_PORT)
    p.add_argument("--tls-cafile", type=Path)
    p.add_argument("--tls-certfile", type=Path)
    p.add_argument("--tls-keyfile", type=Path)
    p.add_argument(
        "--broker-host",
        default="127.0.0.1",
        help="how the feeder reaches this broker (the Pi's LAN address), for its config.json",
    )
    return p


def plan_from_args(args: argparse.Namespace) -> BrokerPlan:
    tls_paths = (args.tls_cafile, args.tls_certfile, args.tls_keyfile)
    if any(tls_paths) and not all(tls_paths):
        raise BrokerSetupError("TLS needs --tls-cafile, --tls-certfile and --tls-keyfile")
    tls = None
    if all(tls_paths):
        tls = TlsListener(args.tls_cafile, args.tls_certfile, args.tls_keyfile, args.tls_port)
    return BrokerPlan(
        gateway_id=args.gateway_id,
        feeder_user=args.feeder_user,
        buttons=tuple(MqttButton.parse(b) for b in args.mqtt_button),
        zigbee2mqtt_base=args.zigbee2mqtt,
        monitor_user=args.monitor_user,
        home_assistant=None
        if not args.home_assistant
        else HomeAssistantAccess(args.home_assistant),
        listen_address=args.listen_address,
        port=args.port,
        tls=tls,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        plan = plan_from_args(args)
        result = write_broker_files(plan, root=args.root, broker_host=args.broker_host)
    except (BrokerSetupError, OSError) as e:
        print(f"broker_setup: {e}", file=sys.stderr)
        return 1
    files = BrokerFiles()
    for client in result.clients:
        print(f"user {client.username} ({client.role}): {files.credentials(client.username)}")
    for path in result.written:
        print(f"wrote {path}")
    if result.main_conf_replaced is not None:
        print(
            f"rewrote {files.main_conf} as Debian ships it ({result.main_conf_replaced}; "
            "a previous one is kept as mosquitto.conf.fmfb-orig)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
