"""Shared helpers for the benchmarks: temp dirs, a private Mosquitto, statistics, output.

Each benchmark prints a short table and then, as its very last line, one JSON object with its
figures (``run_all.py`` reads that line). Figures are ratios against baselines measured in the
same run, because absolute speeds drift with the disk and the machine's load.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

SYSTEM_BROKER_PORT = 1883
PAYLOAD_BYTES = 300

# --- temp dirs -----------------------------------------------------------------------------


def bench_tmpdir(prefix: str) -> Path:
    """A fresh directory under the system temp dir; every benchmark uses the same parent, so
    every file it fsyncs lives on the same filesystem."""
    return Path(tempfile.mkdtemp(prefix=f"fmfb-bench-{prefix}-"))


def filesystem_of(path: Path) -> str:
    """Which device and filesystem type ``path`` is on, from /proc/self/mountinfo."""
    best = ("?", "?", "")
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return "?"
    resolved = str(path.resolve())
    for line in lines:
        left, _, right = line.partition(" - ")
        fields = left.split()
        extra = right.split()
        if len(fields) < 5 or len(extra) < 2:
            continue
        mount = fields[4]
        inside = resolved == mount or resolved.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best[2]):
            best = (extra[1], extra[0], mount)
    return f"{best[0]} ({best[1]})"


def cpu_busy(sample_s: float = 0.5) -> float | None:
    """Fraction of all CPU time that was busy over ``sample_s`` (from /proc/stat)."""

    def read() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields), idle

    try:
        total0, idle0 = read()
        time.sleep(sample_s)
        total1, idle1 = read()
    except (OSError, ValueError, IndexError):
        return None
    total = total1 - total0
    return None if total <= 0 else 1 - (idle1 - idle0) / total


def machine_note() -> str:
    """How busy the machine is now: timings from a busy machine are not comparable."""
    cores = os.cpu_count() or 1
    busy = cpu_busy()
    load = os.getloadavg()[0]
    note = f"{cores} cores, CPU {'?' if busy is None else f'{busy:.0%}'} busy, load {load:.2f}"
    if busy is not None and busy > 0.25:
        note += " (BUSY: other work is running, expect noisy timings)"
    return note


# --- a private Mosquitto -------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port: int = sock.getsockname()[1]
        if port != SYSTEM_BROKER_PORT:
            return port


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class Broker:
    """A private, non-persistent mosquitto on a free loopback port (never 1883).

    A trimmed copy of tests/mosquitto.py, so bench/ type-checks on its own.
    """

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.port = free_port(self.host)
        self.workdir = bench_tmpdir("mosquitto")
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        conf = self.workdir / "mosquitto.conf"
        lines = [
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            "persistence false",
            "set_tcp_nodelay true",
            "log_dest none",
        ]
        if os.geteuid() == 0:
            lines.append("user root")
        conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
        out = (self.workdir / "mosquitto.out").open("ab")
        with out:
            self._process = subprocess.Popen(
                ["mosquitto", "-c", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                text = (self.workdir / "mosquitto.out").read_text(errors="replace")
                raise RuntimeError(f"mosquitto exited ({self._process.returncode}): {text}")
            if _accepts(self.host, self.port):
                return
            time.sleep(0.01)
        self.close()
        raise RuntimeError(f"mosquitto did not listen on {self.host}:{self.port}")

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def close(self) -> None:
        process = self._process
        self._process = None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Broker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# --- statistics ----------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100), linear between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = math.floor(rank)
    high = math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


# --- output --------------------------------------------------------------------------------


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain, aligned text table (first column left, the rest right)."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        parts = [
            row[i].ljust(widths[i]) if i == 0 else row[i].rjust(widths[i]) for i in range(len(row))
        ]
        return "  ".join(parts).rstrip()

    print(line(cells[0]))
    print("  ".join("-" * w for w in widths))
    for row in cells[1:]:
        print(line(row))


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def rounded(value: float, digits: int = 3) -> float | None:
    return None if math.isnan(value) else round(value, digits)


def emit_json(bench: str, figures: dict[str, Any]) -> None:
    """The last line of every benchmark: its figures as one JSON object."""
    sys.stdout.flush()
    print(json.dumps({"bench": bench, **figures}, sort_keys=False))
    sys.stdout.flush()
