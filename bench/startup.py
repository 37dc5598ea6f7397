"""Daemon start-up to READY with a big journal vs with a small one.

Runs ``fmfb run --config FILE`` as a subprocess with ``NOTIFY_SOCKET`` pointing to a datagram
socket of our own, against a private Mosquitto, and times from spawn to ``READY=1``: once on a
journal of N events (default 1,000,000, generated as ``bench/verify_and_project.py`` does) and
once on one of 1,000 events, alternating, R rounds each. The daemon is stopped with SIGTERM
after each start. Target: median(big) / median(small) <= 1.2 — start-up must not read the
whole ledger.

    python bench/startup.py [--events N] [--rounds R]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from _common import (
    bench_tmpdir,
    emit_json,
    filesystem_of,
    machine_note,
    median,
    print_table,
    private_broker,
)
from verify_and_project import make_journal

from gateway.devstack.mosquitto import Mosquitto
from gateway.devstack.processes import stop_process

FMFB = [sys.executable, "-c", "from gateway.cli import main; main(prog_name='fmfb')"]
SMALL = 1_000
READY_TIMEOUT_S = 120.0


def write_config(workdir: Path, journal: Path, broker: Mosquitto) -> Path:
    config = workdir / "config.toml"
    config.write_text(
        f'gateway_id = "bench-{workdir.name}"\n'
        f'state_dir = "{workdir / "state"}"\n'
        f'journal_path = "{journal}"\n'
        'log_level = "WARNING"\n'
        "[broker]\n"
        f'host = "{broker.host}"\n'
        f"port = {broker.port}\n"
        "[buttons]\n"
        'pin_factory = "mock"\n'
        "[[buttons.mqtt]]\n"
        'name = "bench-button"\n'
        f'topic = "fmfb-bench/{workdir.name}/button"\n',
        encoding="utf-8",
    )
    return config


def time_to_ready(config: Path, workdir: Path) -> float:
    """Seconds from spawning ``fmfb run`` to its READY=1; the daemon is stopped after."""
    path = workdir / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(READY_TIMEOUT_S)
        env = {k: v for k, v in os.environ.items() if k not in ("WATCHDOG_USEC", "WATCHDOG_PID")}
        env.update({"NOTIFY_SOCKET": str(path), "AWS_EC2_METADATA_DISABLED": "true"})
        start = time.perf_counter()
        process = subprocess.Popen(
            [*FMFB, "run", "--config", str(config)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=(workdir / "daemon.stderr").open("ab"),
            start_new_session=True,
        )
        try:
            while True:
                message = sock.recv(4096)
                if b"READY=1" in message.split(b"\n"):
                    elapsed = time.perf_counter() - start
                    break
        finally:
            stop_process(process, timeout=30)
            path.unlink(missing_ok=True)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="the big journal's size")
    parser.add_argument("--rounds", type=int, default=5, help="starts of each")
    args = parser.parse_args()

    root = bench_tmpdir("startup")
    try:
        print(f"{machine_note()}; files on {filesystem_of(root)}")
        dirs = {"big": root / "big", "small": root / "small"}
        sizes = {"big": args.events, "small": SMALL}
        with private_broker() as broker:
            configs = {}
            for key, d in dirs.items():
                d.mkdir()
                journal = d / "journal.db"
                t0 = time.perf_counter()
                make_journal(journal, sizes[key])
                print(f"{key}: {sizes[key]:,} events generated in {time.perf_counter() - t0:.1f}s")
                configs[key] = write_config(d, journal, broker)
            # One start each to warm the page cache and the interpreter's bytecode cache.
            for key, d in dirs.items():
                time_to_ready(configs[key], d)
            times: dict[str, list[float]] = {"big": [], "small": []}
            for r in range(args.rounds):
                order = ("big", "small") if r % 2 == 0 else ("small", "big")
                for key in order:
                    times[key].append(time_to_ready(configs[key], dirs[key]))
        rows = [
            [key, f"{sizes[key]:,}", *(f"{t:.3f}" for t in times[key]), f"{median(times[key]):.3f}"]
            for key in ("big", "small")
        ]
        print_table(
            ["journal", "events", *(f"start {i + 1} s" for i in range(args.rounds)), "median s"],
            rows,
        )
        ratio = median(times["big"]) / median(times["small"])
        print(
            f"start-up to READY, {args.events:,} vs {SMALL:,} events: {ratio:.2f}x (target <= 1.2)"
        )
        emit_json(
            "startup",
            {
                "events": args.events,
                "ready_big_s": round(median(times["big"]), 3),
                "ready_small_s": round(median(times["small"]), 3),
                "ratio": round(ratio, 3),
                "target": 1.2,
                "ok": ratio <= 1.2,
            },
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
