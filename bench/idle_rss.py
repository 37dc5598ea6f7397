"""Idle resident memory of ``fmfb run``, against a bare interpreter with asyncio and sqlite3.

Starts a private Mosquitto, then ``fmfb run --config <tmp config>`` as a subprocess with a fresh
state dir; waits until the control socket answers ``status`` and both MQTT links are up, lets
it idle, and reads VmRSS from /proc/<pid>/status (the pid the daemon reports, so a launcher
shim in between does not matter). Baselines, each a fresh subprocess of the same interpreter:
``import asyncio, sqlite3`` (the floor the brief names), and for attribution the daemon's
imports without running it.

    python bench/idle_rss.py [--quick] [--idle SECONDS]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import bench_tmpdir, emit_json, machine_note, print_table, private_broker, rounded

from gateway.control import call
from gateway.devstack.mosquitto import Mosquitto
from gateway.devstack.processes import stop_process
from gateway.errors import ControlError

READY_TIMEOUT_S = 30.0

PRINT_RSS = (
    "import pathlib\n"
    "for line in pathlib.Path('/proc/self/status').read_text().splitlines():\n"
    "    if line.startswith('VmRSS:'):\n"
    "        print(int(line.split()[1]))\n"
)

BASELINES = {
    "python + asyncio, sqlite3": "import asyncio, sqlite3\n",
    "python + the daemon's imports (not running)": (
        "import asyncio, sqlite3\nimport gateway.cli, gateway.daemon, aiomqtt, gpiozero\n"
        "from gpiozero.pins.mock import MockFactory\n"
    ),
}


def vmrss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def baseline_kib(code: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", code + PRINT_RSS],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return int(out.stdout.strip().splitlines()[-1])


def fmfb_command() -> list[str]:
    """The console script next to this interpreter (not a pyenv shim), else python -c."""
    script = Path(sys.executable).with_name("fmfb")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from gateway.cli import main; main(prog_name='fmfb')"]


def write_config(path: Path, broker: Mosquitto, state_dir: Path) -> None:
    path.write_text(
        "\n".join(
            [
                'gateway_id = "bench-rss"',
                f'state_dir = "{state_dir}"',
                'log_level = "WARNING"',
                "[broker]",
                f'host = "{broker.host}"',
                f"port = {broker.port}",
                "[buttons]",
                'pin_factory = "mock"',
                "",
            ]
        ),
        encoding="utf-8",
    )


def wait_ready(control: Path, process: subprocess.Popen[bytes]) -> dict[str, Any]:
    deadline = time.monotonic() + READY_TIMEOUT_S
    last = "no answer"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"fmfb run exited with {process.returncode}")
        try:
            status: dict[str, Any] = call(control, {"op": "status"}, timeout_s=2)["status"]
        except (ControlError, OSError, KeyError, ValueError) as e:
            last = str(e)
        else:
            if all(s["connected"] for s in status["sinks"]):
                return status
            last = "sinks not connected yet"
        time.sleep(0.05)
    raise RuntimeError(f"fmfb run not ready within {READY_TIMEOUT_S:g} s: {last}")


def measure_daemon(workdir: Path, idle_s: float) -> tuple[int, int]:
    """(VmRSS KiB after idling, VmHWM KiB) of a running ``fmfb run``."""
    with private_broker() as broker:
        config = workdir / "config.toml"
        write_config(config, broker, workdir / "state")
        log = (workdir / "fmfb.log").open("wb")
        with log:
            process = subprocess.Popen(
                [*fmfb_command(), "run", "--config", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "AWS_EC2_METADATA_DISABLED": "true"},
            )
        try:
            status = wait_ready(workdir / "state" / "control.sock", process)
            pid = int(status["pid"])
            time.sleep(idle_s)
            rss = vmrss_kib(pid)
            hwm = next(
                int(line.split()[1])
                for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                if line.startswith("VmHWM:")
            )
        finally:
            stop_process(process, timeout=15)
        if process.returncode != 0:
            text = (workdir / "fmfb.log").read_text(errors="replace")
            raise RuntimeError(f"fmfb run exited {process.returncode} on SIGTERM:\n{text}")
    return rss, hwm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter idle (a smoke run)")
    parser.add_argument("--idle", type=float, default=None, help="seconds to idle before reading")
    args = parser.parse_args()
    idle_s = args.idle if args.idle is not None else (1.0 if args.quick else 2.0)

    print(f"idle_rss: fmfb run idling {idle_s:g} s; {machine_note()}")
    workdir = bench_tmpdir("rss")
    try:
        rss, hwm = measure_daemon(workdir, idle_s)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    bases = {name: baseline_kib(code) for name, code in BASELINES.items()}
    floor = bases["python + asyncio, sqlite3"]
    imports = bases["python + the daemon's imports (not running)"]

    def mib(kib: int) -> float:
        return kib / 1024

    print()
    print_table(
        ["process", "VmRSS MiB", "ratio to floor"],
        [
            ["python + asyncio, sqlite3 (floor)", mib(floor), 1.0],
            ["python + the daemon's imports (not running)", mib(imports), imports / floor],
            ["fmfb run, idle", mib(rss), rss / floor],
            ["  (fmfb run peak, VmHWM)", mib(hwm), hwm / floor],
        ],
    )
    emit_json(
        "idle_rss",
        {
            "idle_s": idle_s,
            "daemon_rss_mib": rounded(mib(rss), 1),
            "daemon_hwm_mib": rounded(mib(hwm), 1),
            "baseline_rss_mib": rounded(mib(floor), 1),
            "imports_rss_mib": rounded(mib(imports), 1),
            "ratio_daemon_vs_baseline": rounded(rss / floor, 2),
            "ratio_imports_vs_baseline": rounded(imports / floor, 2),
        },
    )


if __name__ == "__main__":
    main()
