"""Cold start of the CLI: ``fmfb --version`` and ``fmfb journal list`` against bare Python.

Every ``fmfb journal …`` typed by hand on a Pi pays the CLI's start-up, and a Pi Zero 2 W is
several times slower than this machine: what the CLI imports before it does anything is the
cost. Runs, alternating, R rounds of each:

- the baseline: ``python -c "import sqlite3, asyncio"`` (the interpreter and what any command
  of ours needs at the least);
- ``fmfb --version`` (the console script, as a person types it);
- ``fmfb journal list --journal J`` on a 1,000-event journal (output to /dev/null).

Targets: median(--version) / median(bare) <= 1.5; median(journal list) / median(bare) <= 2.

    python bench/cli_startup.py [--rounds R] [--events N]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _common import bench_tmpdir, emit_json, machine_note, median, print_table
from verify_and_project import make_journal

FMFB = str(Path(sys.executable).with_name("fmfb"))


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--events", type=int, default=1_000)
    args = parser.parse_args()
    if not Path(FMFB).exists():
        raise SystemExit(f"no fmfb console script at {FMFB}: run from the project's .venv")
    workdir = bench_tmpdir("cli")
    try:
        journal = workdir / "journal.db"
        make_journal(journal, args.events)
        runs: dict[str, list[float]] = {"bare": [], "version": [], "journal list": []}
        commands = {
            "bare": [sys.executable, "-c", "import sqlite3, asyncio"],
            "version": [FMFB, "--version"],
            "journal list": [FMFB, "journal", "list", "--journal", str(journal)],
        }
        for argv in commands.values():  # warm the page cache once
            timed(argv)
        for _ in range(args.rounds):
            for name, argv in commands.items():
                runs[name].append(timed(argv))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    bare = median(runs["bare"])
    version = median(runs["version"])
    listing = median(runs["journal list"])
    print(machine_note())
    print_table(
        ["command", "median ms", "x bare", "target"],
        [
            ["python -c 'import sqlite3, asyncio'", bare * 1000, 1.0, ""],
            ["fmfb --version", version * 1000, version / bare, "<= 1.5"],
            [f"fmfb journal list ({args.events} events)", listing * 1000, listing / bare, "<= 2"],
        ],
    )
    emit_json(
        "cli_startup",
        {
            "bare_ms": bare * 1000,
            "version_ms": version * 1000,
            "journal_list_ms": listing * 1000,
            "version_ratio": version / bare,
            "journal_list_ratio": listing / bare,
            "rounds": args.rounds,
        },
    )


if __name__ == "__main__":
    main()
