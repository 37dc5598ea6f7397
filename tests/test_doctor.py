"""``fmfb doctor`` against each failure it names, for real: a locked-down Mosquitto (the one the
installer writes), an open one, a wrong port, a wrong password, a broken ACL, a full disk (a
64 KiB tmpfs), an unsynced clock (injected), a damaged journal tail; and the command's output,
``--json`` and exit status."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_process import DaemonProcess, run_fmfb, toml_text
from test_broker_lockdown import B1_TOPIC, B2_TOPIC, GATEWAY_ID, LockedDownMosquitto, lab_plan

from gateway.devstack.mosquitto import Mosquitto, free_port
from gateway.doctor import Environment, run
from gateway.doctor_findings import Finding, Outcome

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(shutil.which("mosquitto") is None, reason="mosquitto is not installed"),
]

SYNCED = Environment(clock_synced=lambda: True, gateway_status=lambda _p: None)


@pytest.fixture(scope="module")
def locked() -> Iterator[LockedDownMosquitto]:
    broker = LockedDownMosquitto(lab_plan)
    try:
        broker.start()
        yield broker
    finally:
        broker.close()


def write(tmp_path: Path, data: dict[str, Any]) -> Path:
    data = {"gateway_id": GATEWAY_ID, "state_dir": str(tmp_path / "state"), **data}
    path = tmp_path / "config.toml"
    path.write_text(toml_text(data), encoding="utf-8")
    return path


def buttons() -> dict[str, Any]:
    return {"mqtt": [{"name": "b1", "topic": B1_TOPIC}, {"name": "b2", "topic": B2_TOPIC}]}


def by_check(findings: list[Finding]) -> dict[str, Finding]:
    return {f.check: f for f in findings}


def locked_config(tmp_path: Path, locked: LockedDownMosquitto, **broker: Any) -> Path:
    settings = {
        "host": locked.host,
        "port": locked.port,
        "credentials_dir": str(locked.files.credentials_dir),
        **broker,
    }
    return write(tmp_path, {"broker": settings, "buttons": buttons()})


def test_a_locked_down_broker_passes_every_broker_check(
    locked: LockedDownMosquitto, tmp_path: Path
) -> None:
    found = by_check(run(locked_config(tmp_path, locked), SYNCED))
    for check in ("config", "broker feeder", "broker mqtt-buttons", "broker anonymous"):
        assert found[check].outcome is Outcome.PASS, found[check]
    if os.geteuid() == 0:  # the users' credentials are root's to read
        assert found["broker acl"].outcome is Outcome.PASS, found["broker acl"]
        assert "button-b1 may not publish to cat-feeder/action" in found["broker acl"].detail
    assert found["clock"].outcome is Outcome.PASS


def test_a_wrong_port_fails_with_the_fix(tmp_path: Path) -> None:
    port = free_port()
    found = by_check(run(write(tmp_path, {"broker": {"port": port}}), SYNCED))
    feeder = found["broker feeder"]
    assert feeder.outcome is Outcome.FAIL
    assert f"cannot reach 127.0.0.1:{port}" in feeder.detail
    assert "is Mosquitto running" in feeder.fix
    assert "broker anonymous" not in found  # nothing more to learn from a broker not there


def test_a_wrong_password_fails_naming_the_file(
    locked: LockedDownMosquitto, tmp_path: Path
) -> None:
    wrong = tmp_path / "creds"
    wrong.mkdir()
    for name in (f"fmfb-{GATEWAY_ID}-feeder", f"fmfb-{GATEWAY_ID}-buttons"):
        (wrong / name).write_text("not-the-password\n", encoding="utf-8")
    found = by_check(run(locked_config(tmp_path, locked, credentials_dir=str(wrong)), SYNCED))
    feeder = found["broker feeder"]
    assert feeder.outcome is Outcome.FAIL
    assert f"refused fmfb-{GATEWAY_ID}-feeder" in feeder.detail
    assert str(wrong / f"fmfb-{GATEWAY_ID}-feeder") in feeder.fix
    assert found["broker mqtt-buttons"].outcome is Outcome.FAIL


def test_an_open_broker_fails_anonymous_and_acl(broker: Mosquitto, tmp_path: Path) -> None:
    found = by_check(run(write(tmp_path, {"broker": {"port": broker.port}}), SYNCED))
    assert found["broker feeder"].outcome is Outcome.PASS
    assert found["broker anonymous"].outcome is Outcome.FAIL
    assert "allow_anonymous false" in found["broker anonymous"].fix
    acl = found["broker acl"]
    assert acl.outcome is Outcome.FAIL
    assert "an anonymous client published to cat-feeder/action" in acl.detail


@pytest.mark.skipif(os.geteuid() != 0, reason="the users' credentials are root's to read")
def test_a_broken_acl_is_caught(tmp_path: Path) -> None:
    broker = LockedDownMosquitto(lab_plan)
    # The mistake an admin might make: letting a button publish the feeder's commands.
    with broker.files.acl_file.open("a", encoding="utf-8") as acl:
        acl.write("\nuser button-b1\ntopic write cat-feeder/action\n")
    try:
        broker.start()
        found = by_check(run(locked_config(tmp_path, broker), SYNCED))
    finally:
        broker.close()
    assert found["broker anonymous"].outcome is Outcome.PASS
    acl_found = found["broker acl"]
    assert acl_found.outcome is Outcome.FAIL, acl_found
    assert "button-b1 published to cat-feeder/action" in acl_found.detail


def test_an_unsynced_clock_fails(tmp_path: Path) -> None:
    config = write(tmp_path, {})
    env = Environment(clock_synced=lambda: False, gateway_status=lambda _p: None, broker=False)
    clock = by_check(run(config, env))["clock"]
    assert clock.outcome is Outcome.FAIL
    assert "timedatectl set-ntp true" in clock.fix


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_fails(tiny_disk: Path, tmp_path: Path) -> None:
    config = write(tmp_path, {"state_dir": str(tiny_disk / "state")})
    env = Environment(clock_synced=lambda: True, gateway_status=lambda _p: None, broker=False)
    disk = by_check(run(config, env))["disk"]
    assert disk.outcome is Outcome.FAIL
    assert "nearly full" in disk.detail and str(tiny_disk) in disk.detail
    assert "free space there" in disk.fix
    # And a roomy disk passes.
    roomy = by_check(run(write(tmp_path, {}), env))["disk"]
    assert roomy.outcome is Outcome.PASS, roomy


def test_journal_sinks_and_feeder_from_the_journal_and_from_the_daemon(
    broker: Mosquitto, tmp_path: Path
) -> None:
    daemon = DaemonProcess(broker.port, workdir=tmp_path / "d")
    env = Environment(clock_synced=lambda: True, broker=False)
    with daemon:
        daemon.start()
        daemon.wait_feeder_connected()
        assert daemon.cli("feed", "left").returncode == 0
        live = by_check(run(daemon.config_path, env))
        assert daemon.stop() == 0
    # While it runs: the sinks from its status; the feeder (none here) never heard from.
    assert live["sink feeder"].outcome is Outcome.PASS, live["sink feeder"]
    assert "(from the journal" not in live["sink feeder"].detail
    assert live["feeder"].outcome is Outcome.FAIL
    assert live["feeder"].detail == "not heard from since start"
    stopped = by_check(run(daemon.config_path, env))
    assert stopped["journal"].outcome is Outcome.PASS, stopped["journal"]
    assert "the gateway is not running" in stopped["sink feeder"].detail
    assert stopped["feeder"].detail == "never heard from"
    # A tampered row in the tail is found.
    with sqlite3.connect(daemon.journal_path) as conn:
        triggers = [
            r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'")
        ]
        for name in triggers:
            conn.execute(f"DROP TRIGGER {name}")
        conn.execute("UPDATE events SET payload = '{}' WHERE seq = 2")
    damaged = by_check(run(daemon.config_path, env))["journal"]
    assert damaged.outcome is Outcome.FAIL
    assert "seq 2" in damaged.detail


def test_the_command_prints_fixes_json_and_exits_1_on_failure(tmp_path: Path) -> None:
    port = free_port()
    config = write(tmp_path, {"broker": {"port": port}})
    shown = run_fmfb("doctor", "--config", config)
    assert shown.returncode == 1, shown.stdout + shown.stderr
    assert "FAIL  broker feeder" in shown.stdout
    assert "fix: is Mosquitto running" in shown.stdout
    assert shown.stdout.rstrip().endswith("some checks failed")
    as_json = run_fmfb("doctor", "--json", "--config", config)
    assert as_json.returncode == 1
    findings = json.loads(as_json.stdout)
    feeder = next(f for f in findings if f["check"] == "broker feeder")
    assert feeder["outcome"] == "fail" and feeder["fix"]
    broken = tmp_path / "broken.toml"
    broken.write_text("[policy]\nmin_gap_s = -1\n", encoding="utf-8")
    invalid = run_fmfb("doctor", "--json", "--config", broken)
    assert invalid.returncode == 1
    assert json.loads(invalid.stdout)[0]["check"] == "config"
    assert "policy.min_gap_s" in json.loads(invalid.stdout)[0]["detail"]


def test_gpio_access_for_the_service_user(tmp_path: Path) -> None:
    chip = tmp_path / "gpiochip0"
    chip.write_bytes(b"")
    chip.chmod(0o600)  # root's alone
    config = write(
        tmp_path, {"buttons": {"pin_factory": "auto", "gpio": [{"name": "k", "pin": 17}]}}
    )

    def gpio(**kw: Any) -> Finding:
        env = Environment(
            clock_synced=lambda: True,
            gateway_status=lambda _p: None,
            broker=False,
            gpio_chips=lambda: [chip],
            **kw,
        )
        return by_check(run(config, env))["gpio"]

    refused = gpio(service_user="nobody")
    assert refused.outcome is Outcome.FAIL
    assert f"nobody may not open {chip}" in refused.detail
    assert "usermod -aG gpio nobody" in refused.fix
    chip.chmod(0o666)
    assert gpio(service_user="nobody").outcome is Outcome.PASS
    missing = Environment(
        clock_synced=lambda: True, gateway_status=lambda _p: None, broker=False, gpio_chips=list
    )
    assert by_check(run(config, missing))["gpio"].outcome is Outcome.FAIL
    assert gpio(service_user="no-such-user-fmfb").outcome is Outcome.FAIL


def test_cloud_credentials_against_moto(moto: Any, feeds: Any, tmp_path: Path) -> None:
    from gateway.devstack.aws import AWS_TEST_ENV  # noqa: PLC0415 - boto3 only here

    env = Environment(clock_synced=lambda: True, gateway_status=lambda _p: None, broker=False)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in AWS_TEST_ENV.items():
            mp.setenv(key, value)
        good = write(tmp_path, {"sinks": {"eventbridge": {"endpoint_url": moto.url}}})
        passed = by_check(run(good, env))["cloud credentials"]
        missing_bus = {"endpoint_url": moto.url, "bus": "no-such-bus", "max_attempts": 1}
        failed = by_check(run(write(tmp_path, {"sinks": {"eventbridge": missing_bus}}), env))
    assert passed.outcome is Outcome.PASS, passed
    cloud = failed["cloud credentials"]
    assert cloud.outcome is Outcome.FAIL
    assert "no-such-bus" in cloud.detail and "ResourceNotFoundException" in cloud.detail
