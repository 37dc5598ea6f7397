"""scripts/install-pi into a scratch root (``--root``): every file it writes, with the owner,
group and mode it means each to have; what it would run on a real Pi; re-runs that keep the
passwords and the config; ``--uninstall`` that keeps the journal.

Nothing on this machine is changed: under ``--root`` the script runs no apt-get, useradd, pip
or systemctl (it lists them), and writes only under the root.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from gateway.config import parse_config

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "install-pi"
GW = "kitchen-pi"

pytestmark = pytest.mark.skipif(
    shutil.which("mosquitto_passwd") is None, reason="mosquitto_passwd is not installed"
)

# Every path the install writes, and what it must be: (kind, mode, owner, group).
EXPECTED = {
    "/etc/fmfb": ("dir", "0755", "root", "root"),
    "/etc/fmfb/config.toml": ("file", "0640", "root", "fmfb"),
    "/etc/fmfb/install-answers": ("file", "0644", "root", "root"),
    "/etc/fmfb/mqtt": ("dir", "0750", "root", "fmfb"),
    # Each password readable by its owner alone: the gateway's two by the service user.
    f"/etc/fmfb/mqtt/fmfb-{GW}-feeder": ("file", "0600", "fmfb", "fmfb"),
    f"/etc/fmfb/mqtt/fmfb-{GW}-buttons": ("file", "0600", "fmfb", "fmfb"),
    "/etc/fmfb/mqtt/cat-feeder": ("file", "0600", "root", "root"),
    "/etc/fmfb/mqtt/button-desk": ("file", "0600", "root", "root"),
    "/etc/fmfb/mqtt/feeder-config.json": ("file", "0600", "root", "root"),
    "/etc/mosquitto/conf.d/fmfb.conf": ("file", "0644", "root", "root"),
    "/etc/mosquitto/mosquitto.conf": ("file", "0644", "root", "root"),
    # The broker reads these as the user mosquitto, through the group.
    "/etc/mosquitto/fmfb": ("dir", "0750", "root", "mosquitto"),
    "/etc/mosquitto/fmfb/acl": ("file", "0640", "root", "mosquitto"),
    "/etc/mosquitto/fmfb/passwd": ("file", "0640", "root", "mosquitto"),
    "/etc/systemd/system/fmfb.service": ("file", "0644", "root", "root"),
    "/opt/fmfb": ("dir", "0755", "root", "root"),
    "/opt/fmfb/README.md": ("file", "0644", "root", "root"),
    "/usr/local/bin/fmfb": ("symlink", "/opt/fmfb/.venv/bin/fmfb", "root", "root"),
    "/var/lib/fmfb": ("dir", "0750", "fmfb", "fmfb"),
}
# Folders the install only passes through (they exist on any Debian system).
SYSTEM_DIRS = {
    "/etc",
    "/etc/mosquitto",
    "/etc/mosquitto/conf.d",
    "/etc/systemd",
    "/etc/systemd/system",
    "/opt",
    "/usr",
    "/usr/local",
    "/usr/local/bin",
    "/var",
    "/var/lib",
}


def install(root: Path, *args: str, sudo_user: str | None = "alice") -> str:
    env = {k: v for k, v in os.environ.items() if k != "SUDO_USER"}
    env["PYTHON"] = sys.executable  # the generators run from this clone under --root
    if sudo_user is not None:
        env["SUDO_USER"] = sudo_user
    result = subprocess.run(
        ["bash", str(SCRIPT), "--root", str(root), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def manifest(root: Path) -> dict[str, tuple[str, str, str, str]]:
    lines = (root / ".fmfb-install" / "manifest").read_text(encoding="utf-8").splitlines()
    entries = {}
    for line in lines:
        path, kind, mode, owner, group = line.split("\t")
        entries[path] = (kind, mode, owner, group)
    return entries


def commands(root: Path) -> list[str]:
    """What it would have run, each command's words unquoted and joined by spaces."""
    lines = (root / ".fmfb-install" / "commands").read_text(encoding="utf-8").splitlines()
    return [" ".join(shlex.split(line)) for line in lines]


def on_disk(root: Path) -> set[str]:
    found = set()
    for path in root.rglob("*"):
        rel = "/" + path.relative_to(root).as_posix()
        if not rel.startswith("/.fmfb-install"):
            found.add(rel)
    return found


@pytest.fixture
def installed(tmp_path: Path) -> tuple[Path, str]:
    root = tmp_path / "root"
    out = install(
        root,
        "--gateway-id",
        GW,
        "--gpio-button",
        "kitchen=17",
        "--mqtt-button",
        "desk=fmfb/button/desk",
        "--feeder-host",
        "192.168.1.20",
        "--yes",
    )
    return root, out


def test_every_file_with_its_owner_and_mode(installed: tuple[Path, str]) -> None:
    root, _ = installed
    assert manifest(root) == EXPECTED
    # Nothing written that the manifest does not account for.
    assert on_disk(root) - SYSTEM_DIRS == set(EXPECTED)
    for path, (kind, mode, _owner, _group) in EXPECTED.items():
        real = root / path.lstrip("/")
        if kind == "symlink":
            assert real.is_symlink()
            assert str(real.readlink()) == mode
            continue
        assert real.is_dir() == (kind == "dir"), path
        assert stat.S_IMODE(real.lstat().st_mode) == int(mode, 8), path


def test_what_it_would_run_on_a_real_pi(installed: tuple[Path, str]) -> None:
    root, _ = installed
    run = commands(root)
    assert any("apt-get install" in c and "mosquitto" in c for c in run)
    assert "groupadd --system gpio" in run
    useradd = next(c for c in run if c.startswith("useradd"))
    assert "--system" in useradd
    assert "--groups gpio fmfb" in useradd
    assert "--shell /usr/sbin/nologin" in useradd
    # The admin who ran sudo may read the journal.
    assert "usermod --append --groups fmfb alice" in run
    # Production needs only the cloud extra (not test, demo); lgpio only on a Pi.
    pip = [c for c in run if "pip install" in c and "--no-deps" not in c and "pip " in c]
    assert any(c.endswith("[cloud]") for c in pip), pip
    assert not any("test" in c or "demo" in c for c in pip)
    assert "systemctl enable fmfb.service" in run
    assert "systemctl restart mosquitto.service" in run
    assert run.index("systemctl daemon-reload") < run.index("systemctl enable fmfb.service")


def test_no_gpio_buttons_is_remembered(tmp_path: Path) -> None:
    install(tmp_path, "--gateway-id", GW, "--gpio-button", "-", "--yes", "--feeder-host", "pi")
    config = (tmp_path / "etc/fmfb/config.toml").read_text(encoding="utf-8")
    assert parse_config(tomllib.loads(config)).buttons.gpio == []
    install(tmp_path, "--yes", "--reconfigure", "--feeder-host", "pi")
    config = (tmp_path / "etc/fmfb/config.toml").read_text(encoding="utf-8")
    assert parse_config(tomllib.loads(config)).buttons.gpio == []


def test_lgpio_on_a_pi(tmp_path: Path) -> None:
    install(tmp_path, "--gateway-id", GW, "--gpio", "lgpio", "--yes", "--feeder-host", "pi")
    run = commands(tmp_path)
    assert any(c.endswith("[cloud,gpio]") for c in run)
    assert any("liblgpio-dev" in c for c in run)


def test_the_config_is_valid_and_points_at_the_locked_down_broker(
    installed: tuple[Path, str],
) -> None:
    root, _ = installed
    text = (root / "etc/fmfb/config.toml").read_text(encoding="utf-8")
    config = parse_config(tomllib.loads(text))
    assert config.gateway_id == GW
    assert str(config.state_dir) == "/var/lib/fmfb"
    # No password in the config: each link reads the file named for its client id.
    assert config.broker.username is None and config.broker.password is None
    assert config.broker.credentials_dir == Path("/etc/fmfb/mqtt")
    for link in ("feeder", "buttons"):
        assert (root / f"etc/fmfb/mqtt/fmfb-{GW}-{link}").is_file()
    assert [(b.name, b.pin) for b in config.buttons.gpio] == [("kitchen", 17)]
    assert [(b.name, b.topic) for b in config.buttons.mqtt] == [("desk", "fmfb/button/desk")]
    unit = (root / "etc/systemd/system/fmfb.service").read_text(encoding="utf-8")
    assert unit == (REPO / "systemd" / "fmfb.service").read_text(encoding="utf-8")


def test_the_broker_files_and_the_feeders_config(installed: tuple[Path, str]) -> None:
    root, out = installed
    conf = (root / "etc/mosquitto/conf.d/fmfb.conf").read_text(encoding="utf-8")
    assert "allow_anonymous false" in conf
    assert "password_file /etc/mosquitto/fmfb/passwd" in conf
    assert "acl_file /etc/mosquitto/fmfb/acl" in conf
    assert "use_username_as_clientid true" in conf
    passwd = (root / "etc/mosquitto/fmfb/passwd").read_text(encoding="utf-8")
    users = [line.split(":")[0] for line in passwd.splitlines()]
    assert users == [f"fmfb-{GW}-feeder", f"fmfb-{GW}-buttons", "cat-feeder", "button-desk"]
    feeder = json.loads((root / "etc/fmfb/mqtt/feeder-config.json").read_text(encoding="utf-8"))
    password = (root / "etc/fmfb/mqtt/cat-feeder").read_text(encoding="utf-8").strip()
    assert feeder["mqtt"]["host"] == "192.168.1.20"
    assert (feeder["mqtt"]["user"], feeder["mqtt"]["password"]) == ("cat-feeder", password)
    # The installer prints it, and says what to do next.
    assert f'"password": "{password}"' in out
    assert "Next:" in out
    assert "fmfb status" in out
    # No plaintext password in any file but the owner-only ones (the config names their folder).
    secrets = {
        p.name: p.read_text(encoding="utf-8").strip()
        for p in (root / "etc/fmfb/mqtt").iterdir()
        if not p.name.endswith(".json")
    }
    for path in root.rglob("*"):
        if path.is_file() and path.parent.name != "mqtt":
            text = path.read_text(encoding="utf-8", errors="replace")
            leaked = [u for u, pw in secrets.items() if pw in text]
            assert leaked == [], path


def test_a_rerun_upgrades_and_keeps_passwords_config_and_answers(
    installed: tuple[Path, str],
) -> None:
    root, _ = installed
    creds = root / "etc/fmfb/mqtt"
    before = {p.name: p.read_bytes() for p in creds.iterdir()}
    config = (root / "etc/fmfb/config.toml").read_bytes()
    # No flags at all: the remembered answers (gateway id, buttons, the Pi's address) are used.
    out = install(root, "--yes")
    assert {p.name: p.read_bytes() for p in creds.iterdir()} == before
    assert (root / "etc/fmfb/config.toml").read_bytes() == config
    assert "kept /etc/fmfb/config.toml" in out
    assert manifest(root) == EXPECTED
    assert any("--force-reinstall --no-deps" in c for c in commands(root))

    # Without the answers file (an older install), the gateway id comes from the config.
    (root / "etc/fmfb/install-answers").unlink()
    install(root, "--yes", "--feeder-host", "192.168.1.20")
    # Same gateway id, so the same users and passwords (no new fmfb-<host>-* files).
    assert {p.name: p.read_bytes() for p in creds.iterdir()} == before
    assert f"gateway_id={GW}" in (root / "etc/fmfb/install-answers").read_text(encoding="utf-8")

    # --reconfigure writes the config again and keeps the old one beside it.
    install(root, "--yes", "--reconfigure", "--gpio-button", "hall=27", "--feeder-host", "x")
    text = (root / "etc/fmfb/config.toml").read_text(encoding="utf-8")
    assert [(b.name, b.pin) for b in parse_config(tomllib.loads(text)).buttons.gpio] == [
        ("hall", 27)
    ]
    backups = list((root / "etc/fmfb").glob("config.toml.before-*"))
    assert len(backups) == 1
    assert backups[0].read_bytes() == config
    assert stat.S_IMODE(backups[0].stat().st_mode) == 0o640


def test_uninstall_keeps_the_journal_config_and_credentials(installed: tuple[Path, str]) -> None:
    root, _ = installed
    journal = root / "var/lib/fmfb/journal.db"
    journal.write_bytes(b"the cat's history")
    out = install(root, "--uninstall")
    assert journal.read_bytes() == b"the cat's history"
    assert (root / "etc/fmfb/config.toml").exists()
    assert (root / "etc/fmfb/mqtt/cat-feeder").exists()
    for gone in (
        "etc/systemd/system/fmfb.service",
        "usr/local/bin/fmfb",
        "opt/fmfb",
        "etc/mosquitto/conf.d/fmfb.conf",
        "etc/mosquitto/fmfb",
    ):
        assert not (root / gone).exists() and not (root / gone).is_symlink(), gone
    assert "systemctl disable --now fmfb.service" in commands(root)
    assert "Kept: the journal in /var/lib/fmfb" in out
    assert "/usr/local/bin/fmfb" not in manifest(root)


def test_bad_input_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    result = subprocess.run(
        ["bash", str(SCRIPT), "--root", str(tmp_path), "--gpio", "wiringpi"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--gpio is auto, lgpio or none" in result.stderr
    assert on_disk(tmp_path) == set()


def test_a_tls_listener_with_copies_the_broker_can_read(tmp_path: Path) -> None:
    from gateway.devstack.pki import make_pki  # noqa: PLC0415 - only this test needs cryptography

    pki = make_pki(tmp_path / "pki")
    root = tmp_path / "root"
    out = install(
        root,
        "--gateway-id",
        GW,
        "--yes",
        "--feeder-host",
        "pi.lan",
        "--listen-address",
        "127.0.0.1",
        "--tls-cafile",
        str(pki.ca),
        "--tls-certfile",
        str(pki.server_cert),
        "--tls-keyfile",
        str(pki.server_key),
    )
    entries = manifest(root)
    assert entries["/etc/mosquitto/fmfb/tls"] == ("dir", "0750", "root", "mosquitto")
    assert entries["/etc/mosquitto/fmfb/tls/server.key"] == ("file", "0640", "root", "mosquitto")
    assert entries["/etc/mosquitto/fmfb/tls/ca.pem"] == ("file", "0644", "root", "mosquitto")
    key = root / "etc/mosquitto/fmfb/tls/server.key"
    assert key.read_bytes() == pki.server_key.read_bytes()
    assert stat.S_IMODE(key.stat().st_mode) == 0o640
    conf = (root / "etc/mosquitto/conf.d/fmfb.conf").read_text(encoding="utf-8").splitlines()
    assert "listener 1883 127.0.0.1" in conf
    assert "listener 8883" in conf
    assert "keyfile /etc/mosquitto/fmfb/tls/server.key" in conf
    feeder = json.loads((root / "etc/fmfb/mqtt/feeder-config.json").read_text(encoding="utf-8"))
    assert (feeder["mqtt"]["port"], feeder["mqtt"]["tls"]) == (8883, True)
    assert "copy /etc/mosquitto/fmfb/tls/ca.pem to the feeder" in out
    install(root, "--uninstall")
    assert not (root / "etc/mosquitto/fmfb").exists()
    assert not [p for p in manifest(root) if p.startswith("/etc/mosquitto/fmfb")]


@pytest.mark.parametrize("gateway_id", ["kitchen pi", "-x", "a" * 52, "pi/1"])
def test_a_gateway_id_that_cannot_name_broker_users_is_refused_first(
    tmp_path: Path, gateway_id: str
) -> None:
    result = subprocess.run(
        ["bash", str(SCRIPT), "--root", str(tmp_path), "--yes", "--gateway-id", gateway_id],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "gateway id" in result.stderr
    assert commands(tmp_path) == []  # nothing would have been run


def test_tls_needs_all_three_files(tmp_path: Path) -> None:
    result = subprocess.run(
        ["bash", str(SCRIPT), "--root", str(tmp_path), "--yes", "--tls-cafile", "/nonexistent"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={**os.environ, "PYTHON": sys.executable},
    )
    assert result.returncode == 2
    assert "TLS needs" in result.stderr
