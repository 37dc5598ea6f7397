"""The feeder logic's core cases under real MicroPython: the WebAssembly port, run by node.

firmware/host-check/run_cases.mjs loads MicroPython 1.27 (npm package
@micropython/micropython-webassembly-pyscript, installed by scripts/install-deps with
``npm ci``), writes feeder_logic.py and mpy_cases.py into its filesystem and runs the cases. So
anything CPython-only in the logic (a typing import, a dataclass, a method MicroPython's str
lacks) fails here. Skipped only where node itself is missing; CI has node 20.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

HOST_CHECK = Path(__file__).resolve().parent.parent / "firmware" / "host-check"


def test_core_cases_pass_under_micropython() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (scripts/install-deps installs it)")
    package = HOST_CHECK / "node_modules" / "@micropython" / "micropython-webassembly-pyscript"
    assert package.is_dir(), "run scripts/install-deps (npm ci --prefix firmware/host-check)"
    result = subprocess.run(
        [node, str(HOST_CHECK / "run_cases.mjs")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "MicroPython v1.27" in result.stdout, output
    assert "main.py compiles" in result.stdout, output
    summary = re.search(r"^(\d+) passed, (\d+) failed$", result.stdout, re.MULTILINE)
    assert summary is not None, output
    assert int(summary.group(1)) >= 10, output
    assert int(summary.group(2)) == 0, output


def test_the_firmware_code_fits_a_small_heap() -> None:
    """main.py compiled and feeder_logic imported, measured under MicroPython: a budget that
    leaves most of the ESP32-C3's MicroPython heap (about 150-200 KB) for sockets and JSON."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (scripts/install-deps installs it)")
    result = subprocess.run(
        [node, str(HOST_CHECK / "footprint.mjs")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    sizes = dict(line.split() for line in result.stdout.splitlines())
    assert 0 < int(sizes["main.py"]) <= 56 * 1024, sizes
    assert 0 < int(sizes["feeder_logic"]) <= 20 * 1024, sizes
