"""Run every benchmark (each in its own subprocess) and print a combined summary.

Each benchmark's output is passed through as it runs; its last line (a JSON object) feeds the
summary. Missing a target is reported, not an error: the exit status is non-zero only when a
benchmark itself failed.

    python bench/run_all.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import emit_json, machine_note, print_table

HERE = Path(__file__).resolve().parent
BENCHES = (
    "journal_append",
    "click_latency",
    "idle_rss",
    "eventbridge_drain",
    "iot_core_drain",
    "verify_and_project",
    "startup",
)


def run_one(name: str, quick: bool) -> dict[str, Any] | None:
    command = [sys.executable, str(HERE / f"{name}.py"), *(["--quick"] if quick else [])]
    print(f"=== {name}: {' '.join(command)}", flush=True)
    started = time.monotonic()
    last = ""
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, bufsize=1) as process:
        assert process.stdout is not None
        for line in process.stdout:
            print(line, end="", flush=True)
            if line.strip():
                last = line
    took = time.monotonic() - started
    if process.returncode != 0:
        print(f"=== {name} FAILED (exit {process.returncode}) after {took:.0f} s\n", flush=True)
        return None
    print(f"=== {name} done in {took:.0f} s\n", flush=True)
    try:
        figures: dict[str, Any] = json.loads(last)
    except json.JSONDecodeError:
        print(f"=== {name}: its last line was not JSON: {last!r}", flush=True)
        return None
    return figures


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def summary_rows(results: dict[str, dict[str, Any] | None]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    j = results.get("journal_append")
    if j:
        rows += [
            [
                "journal: durable append / bare sqlite in a thread + future",
                f"{j['ratio_journal_vs_threaded']:.2f}",
                ">= 0.8",
                verdict(j["ratio_journal_vs_threaded"] >= 0.8),
            ],
            [
                "journal: durable append / bare sqlite",
                f"{j['ratio_journal_vs_sqlite']:.2f}",
                "",
                "",
            ],
            ["journal: durable append / bare fsync", f"{j['ratio_journal_vs_fsync']:.2f}", "", ""],
            [
                "journal: burst / single append",
                f"{j['ratio_burst_vs_single']:.1f}x",
                ">= 10x",
                verdict(j["ratio_burst_vs_single"] >= 10),
            ],
        ]
    c = results.get("click_latency")
    if c:
        rows += [
            [
                "click: gateway p50 / p99 (ms)",
                f"{c['gateway_p50_ms']:.2f} / {c['gateway_p99_ms']:.2f}",
                "",
                "",
            ],
            [
                "click: baseline sum p50 / p99 (ms)",
                f"{c['baseline_sum_p50_ms']:.2f} / {c['baseline_sum_p99_ms']:.2f}",
                "",
                "",
            ],
            [
                "click: overhead p50 / p99 (ms)",
                f"{c['overhead_p50_ms']:.2f} / {c['overhead_p99_ms']:.2f}",
                "p99 < 2",
                verdict(c["overhead_p99_ms"] < 2.0),
            ],
            [
                "click: overhead vs bare relay p50 / p99",
                f"{c['overhead_vs_relay_p50_ms']:.2f} / {c['overhead_vs_relay_p99_ms']:.2f}",
                "",
                "",
            ],
        ]
        if "long_p50_ms" in c:
            rows.append(
                [
                    "click: LONG deadline->action p50 / p99",
                    f"{c['long_p50_ms']:.2f} / {c['long_p99_ms']:.2f}",
                    "",
                    "",
                ]
            )
    r = results.get("idle_rss")
    if r:
        rows.append(
            [
                "idle RSS: fmfb run / python+asyncio+sqlite3",
                f"{r['daemon_rss_mib']:.1f} / {r['baseline_rss_mib']:.1f} MiB "
                f"= {r['ratio_daemon_vs_baseline']:.2f}x",
                "",
                "",
            ]
        )
    for name in ("eventbridge_drain", "iot_core_drain", "verify_and_project", "startup"):
        figures = results.get(name)
        if figures:
            ratios = {k: v for k, v in figures.items() if "ratio" in k}
            rows.append([name, ", ".join(f"{k} {v}" for k, v in ratios.items()), "", ""])
    for name, figures in results.items():
        if figures is None:
            rows.append([name, "FAILED", "", ""])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="pass --quick to every benchmark")
    args = parser.parse_args()
    print(f"run_all: {machine_note()}\n", flush=True)
    results = {name: run_one(name, args.quick) for name in BENCHES}
    print("=== summary")
    print_table(["figure", "measured", "target", "verdict"], summary_rows(results))
    emit_json("all", {"quick": args.quick, **results})
    if any(figures is None for figures in results.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
