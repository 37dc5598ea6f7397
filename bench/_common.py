"""Shared helpers for the benchmarks: temp dirs, a private Mosquitto, statistics, output.

Each benchmark prints a short table and then, as its very last line, one JSON object with its
figures (``run_all.py`` reads that line). Figures are ratios against baselines measured in the
same run, because absolute speeds drift with the disk and the machine's load.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway.devstack.mosquitto import Mosquitto

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


def private_broker() -> Mosquitto:
    """A private, non-persistent mosquitto on a free loopback port (``gateway.devstack``), with
    Nagle off on the broker: a benchmark measures the gateway, not delayed ACKs."""
    return Mosquitto(extra_config=["set_tcp_nodelay true"])


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
