"""mypy over the firmware's hardware glue (firmware/main.py) against the ESP32-C3 stubs.

The stubs (micropython-esp32-esp32-generic-c3-stubs, with micropython-stdlib-stubs for
``_mpy_shed``) are installed into firmware/typings by scripts/install-deps; firmware/mypy.ini
points mypy there. A call with the wrong arguments for MicroPython's machine, network,
ntptime or umqtt fails here rather than on the device.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

FIRMWARE = Path(__file__).resolve().parent.parent / "firmware"
CONFIG = FIRMWARE / "mypy.ini"


def mypy(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(CONFIG), "--no-incremental", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_main_type_checks_against_the_esp32_c3_stubs() -> None:
    assert (FIRMWARE / "typings" / "machine.pyi").is_file(), "run scripts/install-deps"
    result = mypy(cwd=FIRMWARE.parent)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Success: no issues found in 1 source file" in result.stdout, output


def test_the_stubs_are_what_mypy_reads(tmp_path: Path) -> None:
    """A call the stubs forbid must fail: mypy really uses the ESP32-C3 stubs, not a guess."""
    probe = tmp_path / "probe.py"
    probe.write_text("import machine\n\nmachine.WDT(timeout='thirty seconds')\n")
    result = mypy(str(probe), cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert 'Argument "timeout" to "WDT"' in result.stdout, result.stdout
