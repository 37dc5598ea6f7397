"""systemd/fmfb.service parses cleanly and stays hardened.

`systemd-analyze` works offline (no systemd as PID 1 needed). `verify` wants the ExecStart
binary to exist, so it checks a copy whose ExecStart is rewritten to an existing binary.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "fmfb.service"
# `systemd-analyze security` scores exposure 0.0 (locked down) .. 10.0 (unsafe); its
# --threshold takes the same scale times ten. The unit scores 1.5 on systemd 252 (issue 10:
# it must stay at or below that).
MAX_EXPOSURE = 1.5
PROBLEM = re.compile(r"unknown|invalid|failed to parse|ignoring|not supported|deprecated", re.I)

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (Debian package: systemd)",
)


def unit_settings(text: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        settings.setdefault(key.strip(), []).append(value.strip())
    return settings


@pytest.fixture
def checkable_unit(tmp_path: Path) -> Path:
    text = UNIT.read_text(encoding="utf-8")
    assert re.search(r"^ExecStart=/opt/fmfb/\.venv/bin/fmfb run ", text, re.M)
    true = shutil.which("true") or "/bin/true"
    rewritten = re.sub(r"^ExecStart=.*$", f"ExecStart={true}", text, flags=re.M)
    copy = tmp_path / UNIT.name
    copy.write_text(rewritten, encoding="utf-8")
    return copy


def test_unit_verifies_without_complaints(checkable_unit: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "verify", str(checkable_unit)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    ours = [line for line in output.splitlines() if "fmfb" in line and PROBLEM.search(line)]
    assert ours == [], output


def test_unit_exposure_is_low(checkable_unit: Path) -> None:
    result = subprocess.run(
        [
            "systemd-analyze",
            "security",
            "--offline=true",
            f"--threshold={round(MAX_EXPOSURE * 10)}",
            str(checkable_unit),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    output = result.stdout + result.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", output)
    assert match, output
    exposure = float(match.group(1))
    assert exposure <= MAX_EXPOSURE, output
    assert result.returncode == 0, output


def test_unit_is_a_notify_service_with_watchdog_and_state() -> None:
    settings = unit_settings(UNIT.read_text(encoding="utf-8"))
    assert settings["Type"] == ["notify"]
    assert settings["NotifyAccess"] == ["main"]
    assert settings["WatchdogSec"] == ["30s"]
    assert settings["StateDirectory"] == ["fmfb"]
    assert settings["Restart"] == ["always"]
    assert "AWS_EC2_METADATA_DISABLED=true" in settings["Environment"]
    assert settings["ExecStart"] == ["/opt/fmfb/.venv/bin/fmfb run --config /etc/fmfb/config.toml"]
    # GPIO stays reachable: /dev is the host's, the device cgroup allows only GPIO.
    assert settings["PrivateDevices"] == ["no"]
    assert settings["DevicePolicy"] == ["closed"]
    assert "char-gpiochip rw" in settings["DeviceAllow"]


def test_unit_never_gives_up_restarting_and_caps_memory() -> None:
    settings = unit_settings(UNIT.read_text(encoding="utf-8"))
    # 0 disables the start rate limit: no burst of crashes leaves the feeder without a gateway.
    assert settings["StartLimitIntervalSec"] == ["0"]
    assert "StartLimitBurst" not in settings
    assert settings["Restart"] == ["always"]
    (restart_sec,) = settings["RestartSec"]
    assert restart_sec.endswith("s")
    assert 1 <= int(restart_sec.removesuffix("s")) <= 30
    (memory_max,) = settings["MemoryMax"]
    assert memory_max.endswith("M")
    # Room for boto3 + awscrt (~60 MiB idle), small enough to protect a 512 MiB Pi Zero 2 W.
    assert 128 <= int(memory_max.removesuffix("M")) <= 384
