"""Reading the whole journal: ``verify`` and a projection rebuild, against bare loops.

Over a generated journal of N events (default 1,000,000; the journal's own schema, meta and
hash chain, written in big transactions — see :func:`make_journal`), in the same run:

(a) ``JournalReader.verify()`` (the core of ``fmfb journal verify``) vs a bare loop that reads
    every row and SHA-256-hashes the same bytes with hashlib (target: ratio >= 0.8);
(b) a full rebuild of the feeding-history projection (``Runner.run`` from seq 0 into a new
    file) vs a bare loop that reads every row and ``json.loads`` its payload (target >= 0.5).

Ratios are baseline time / measured time (1.0 = as fast as the bare loop). Rounds alternate
the order of the measurements; the median ratio over rounds is reported.

    python bench/verify_and_project.py [--events N] [--rounds R] [--keep]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sqlite3
import time
from pathlib import Path

from _common import bench_tmpdir, emit_json, filesystem_of, machine_note, median, print_table

from gateway.events import canonical_json
from gateway.journal import JournalReader, new_event_id
from gateway.journal.chain import GENESIS_HASH, chain_hash
from gateway.journal.schema import migrate
from gateway.projections import Runner
from gateway.projections.feeding_history import PROJECTION

_COLUMNS = (
    "seq, event_id, type, occurred_at_ms, clock_synced, origin, recovered, payload, prev_hash, hash"
)
MINUTE_MS = 60_000


def _request(request_id: str, bowls: list[str], origin: str, now_ms: int) -> dict[str, object]:
    data: dict[str, object] = {
        "request_id": request_id,
        "bowls": bowls,
        "portion_ms": 10_000,
        "expires_at_ms": now_ms + 300_000,
        "origin": origin,
    }
    if origin == "button":
        data["button"] = "kitchen"
        data["click_type"] = "SINGLE"
    return data


def _cycle(i: int, now_ms: int) -> list[tuple[str, str, dict[str, object]]]:
    """Ten events as a feeder's day has them: (type, envelope origin, payload)."""
    r1, r2, r3, r4 = (f"req-{i}-{k}" for k in range(4))
    level = 100 - (i % 100)
    return [
        ("FeedRequested", "button", _request(r1, ["left"], "button", now_ms)),
        ("FeedDispensed", "feeder", {"request_id": r1, "bowls": ["left"], "ran_ms": 10_000}),
        ("FoodLevelChanged", "feeder", {"level": level, "previous": min(100, level + 1)}),
        ("FeedRequested", "cli", _request(r2, ["right"], "cli", now_ms)),
        ("FeedDispensed", "feeder", {"request_id": r2, "bowls": ["right"], "ran_ms": 9_800}),
        (
            "FeedRejected",
            "button",
            {
                **_request(r3, ["left"], "button", now_ms),
                "reason": "too-soon",
                "refused_by": "gateway",
            },
        ),
        ("FeedRequested", "cloud", _request(r4, ["left", "right"], "cloud", now_ms)),
        (
            "FeedUnconfirmed",
            "gateway",
            {"request_id": r4, "bowls": ["left", "right"], "waited_ms": 60_000},
        ),
        ("FoodLevelChanged", "feeder", {"level": level, "previous": level}),
        ("FeederOnline", "feeder", {}),
    ]


def make_journal(path: Path, n: int, *, end_ms: int | None = None, chunk: int = 50_000) -> None:
    """A journal of ``n`` events, one a minute, ending at ``end_ms`` (default: now), written
    with the journal's schema, meta and chain hash in transactions of ``chunk`` rows. The
    feeder sink's cursor is set at the end (as a daemon that had caught up would leave it)."""
    end_ms = time.time_ns() // 1_000_000 if end_ms is None else end_ms
    start_ms = end_ms - n * MINUTE_MS
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = OFF")
    migrate(conn)
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(
        "INSERT INTO meta (key, value) VALUES (?, ?)",
        [
            ("journal_id", new_event_id()),
            ("created_at_ms", str(start_ms)),
            ("genesis_hash", GENESIS_HASH),
        ],
    )
    conn.execute("COMMIT")
    prev = GENESIS_HASH
    rows: list[tuple[object, ...]] = []
    seq = 0
    i = 0
    while seq < n:
        cycle_ms = start_ms + seq * MINUTE_MS
        for type_, origin, data in _cycle(i, cycle_ms):
            if seq >= n:
                break
            seq += 1
            at_ms = start_ms + seq * MINUTE_MS
            payload = canonical_json(data)
            event_id = new_event_id()
            h = chain_hash(
                prev,
                seq=seq,
                event_id=event_id,
                type_=type_,
                occurred_at_ms=at_ms,
                clock_synced=True,
                origin=origin,
                recovered=False,
                payload=payload,
            )
            rows.append((seq, event_id, type_, at_ms, 1, origin, 0, payload, prev, h))
            prev = h
            if len(rows) >= chunk:
                _insert(conn, rows)
                rows = []
        i += 1
    if rows:
        _insert(conn, rows)
    conn.execute(
        "INSERT INTO cursors (sink, seq, updated_at_ms) VALUES ('feeder', ?, ?)", (n, end_ms)
    )
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def _insert(conn: sqlite3.Connection, rows: list[tuple[object, ...]]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(
        f"INSERT INTO events ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",  # noqa: S608 - constant
        rows,
    )
    conn.execute("COMMIT")


# --- the measurements (each returns seconds) -----------------------------------------------


def bare_hash(path: Path) -> float:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    start = time.perf_counter()
    sha256 = hashlib.sha256
    bad = 0
    for row in conn.execute(f"SELECT {_COLUMNS} FROM events ORDER BY seq"):  # noqa: S608
        seq, event_id, type_, at_ms, synced, origin, recovered, payload, prev, h = row
        data = "\n".join(
            (
                prev,
                str(seq),
                event_id,
                type_,
                str(at_ms),
                str(synced),
                origin,
                str(recovered),
                payload,
            )
        ).encode()
        if sha256(data).hexdigest() != h:
            bad += 1
    elapsed = time.perf_counter() - start
    conn.close()
    assert bad == 0, f"{bad} rows did not hash to themselves"
    return elapsed


def verify(path: Path) -> float:
    start = time.perf_counter()
    with JournalReader.open(path) as reader:
        checked, problem = reader.verify()
    elapsed = time.perf_counter() - start
    assert problem is None, problem
    assert checked > 0
    return elapsed


def bare_decode(path: Path) -> float:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    start = time.perf_counter()
    loads = json.loads
    count = 0
    for row in conn.execute(
        "SELECT seq, type, occurred_at_ms, clock_synced, origin, payload FROM events ORDER BY seq"
    ):
        loads(row[5])
        count += 1
    elapsed = time.perf_counter() - start
    conn.close()
    assert count > 0
    return elapsed


def rebuild(path: Path, out: Path) -> float:
    Runner.remove(out)
    start = time.perf_counter()
    with JournalReader.open(path) as reader, Runner(PROJECTION, out) as runner:
        result = runner.run(reader)
    elapsed = time.perf_counter() - start
    assert result.seq > 0
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="journal size")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of all four loops")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    args = parser.parse_args()

    workdir = bench_tmpdir("verify")
    journal = workdir / "journal.db"
    out = workdir / "history.db"
    try:
        print(f"{machine_note()}; files on {filesystem_of(workdir)}")
        t0 = time.perf_counter()
        make_journal(journal, args.events)
        made = time.perf_counter() - t0
        print(f"generated {args.events:,} events in {made:.1f}s ({journal})")
        verify_ratios: list[float] = []
        project_ratios: list[float] = []
        rows = []
        for r in range(args.rounds):
            if r % 2 == 0:
                b_hash, t_verify = bare_hash(journal), verify(journal)
                b_decode, t_rebuild = bare_decode(journal), rebuild(journal, out)
            else:
                t_rebuild, b_decode = rebuild(journal, out), bare_decode(journal)
                t_verify, b_hash = verify(journal), bare_hash(journal)
            verify_ratios.append(b_hash / t_verify)
            project_ratios.append(b_decode / t_rebuild)
            rows.append(
                [
                    r + 1,
                    f"{b_hash:.2f}",
                    f"{t_verify:.2f}",
                    f"{b_hash / t_verify:.2f}",
                    f"{b_decode:.2f}",
                    f"{t_rebuild:.2f}",
                    f"{b_decode / t_rebuild:.2f}",
                ]
            )
        print_table(
            ["round", "bare hash s", "verify s", "ratio", "bare decode s", "rebuild s", "ratio"],
            rows,
        )
        v, p = median(verify_ratios), median(project_ratios)
        print(f"verify vs bare hash loop:        {v:.2f} (target >= 0.8)")
        print(f"rebuild vs bare JSON decode loop: {p:.2f} (target >= 0.5)")
        emit_json(
            "verify_and_project",
            {
                "events": args.events,
                "generate_s": round(made, 2),
                "verify_ratio": round(v, 3),
                "verify_target": 0.8,
                "verify_ok": v >= 0.8,
                "project_ratio": round(p, 3),
                "project_target": 0.5,
                "project_ok": p >= 0.5,
            },
        )
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
