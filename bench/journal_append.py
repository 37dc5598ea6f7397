"""Journal append throughput, against bare SQLite and bare fsync measured in the same run.

(a) Durable single append: N sequential ``await journal.append(event)`` of a FeedRequested whose
    payload JSON is 300 bytes, each resolving only once committed and fsynced. Baselines: a bare
    sqlite3 loop (WAL, synchronous=FULL, one INSERT of the same payload text per transaction,
    into a one-column table) and a bare ``os.write`` + ``os.fsync`` loop of 300 bytes.
(b) Burst with group commit: B ``append_nowait`` futures queued at once, then gathered.

Rounds alternate the order of the measurements (fsync speed drifts); each ratio is taken
within a round (paired) and the median over rounds is reported. The target's ratio, journal /
threaded loop, is also measured interleaved: both open at once, taking turns in blocks of 25
appends, so that drift in the disk's speed cannot swing it (separate runs of the same code
gave 0.44-1.05 on one machine in one hour; interleaved, 0.62-0.78). A third writer takes the
same turns: the threaded loop writing the journal's own rows (schema, chain hash), which
splits the gap into what the schema costs and what the journal's own Python costs.

``--no-fsync`` runs every measurement with ``synchronous=OFF`` (and the bare loop without
``fsync``): not durable, so no target applies, but it shows the journal's own work against the
threaded loop's when other people's disk traffic makes fsync times swing run to run.

    python bench/journal_append.py [--quick] [--no-fsync] [--rounds R] [--n N] [--burst B]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import queue
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from _common import (
    PAYLOAD_BYTES,
    bench_tmpdir,
    emit_json,
    filesystem_of,
    machine_note,
    median,
    print_table,
    rounded,
)

from gateway.events import Bowl, ClickType, FeedRequested, NewEvent, Origin, canonical_json
from gateway.journal import Journal, new_event_id, open_new_event
from gateway.journal.chain import GENESIS_HASH, stored_hash
from gateway.journal.schema import migrate

WARMUP = 50
BLOCK = 25  # appends per turn in the interleaved measurement
# "FULL" (durable, the measured configuration) or "OFF" with --no-fsync (a diagnostic).
SYNCHRONOUS = "FULL"
BUTTON = "zigbee2mqtt/kitchen-feeder-button-0x00158d0001a2b3c4"
SHAPED_INSERT = (
    "INSERT INTO events (seq, event_id, type, occurred_at_ms, clock_synced, origin, "
    "recovered, payload, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?)"
)
Job = tuple[NewEvent | None, str, asyncio.Future[None]]  # (shaped only: the event), payload


def make_event(now_ms: int) -> NewEvent:
    """A button's LONG press as the intake builds it, its request id (a cloud-command-style id)
    sized so that the stored payload JSON is exactly PAYLOAD_BYTES."""

    def payload(request_id: str) -> FeedRequested:
        return FeedRequested(
            request_id=request_id,
            bowls=(Bowl.LEFT, Bowl.RIGHT),
            portion_ms=10_000,
            expires_at_ms=now_ms + 300_000,
            origin=Origin.BUTTON,
            button=BUTTON,
            click_type=ClickType.LONG,
        )

    base = f"cmd-{new_event_id()}"
    short = len(canonical_json(payload(base).to_dict()))
    filler = (new_event_id().replace("-", "") * 4)[: max(0, PAYLOAD_BYTES - short - 1)]
    request_id = f"{base}-{filler}" if filler else base
    return open_new_event(
        payload(request_id), origin=Origin.BUTTON, now_ms=now_ms, clock_synced=True
    )


def make_events(n: int) -> list[NewEvent]:
    now = time.time_ns() // 1_000_000
    return [make_event(now + i) for i in range(n)]


# --- the measurements (each returns events per second) -------------------------------------


def bare_sqlite(workdir: Path, payloads: list[str]) -> float:
    conn = sqlite3.connect(workdir / "bare.db", isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {SYNCHRONOUS}")
        conn.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY, payload TEXT NOT NULL)")
        for text in payloads[:WARMUP]:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO events (payload) VALUES (?)", (text,))
            conn.execute("COMMIT")
        timed = payloads[WARMUP:]
        start = time.perf_counter()
        for text in timed:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO events (payload) VALUES (?)", (text,))
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - start
    finally:
        conn.close()
    return len(timed) / elapsed


def journal_row(
    prev: str, seq: int, new: NewEvent, payload: str
) -> tuple[tuple[int | str, ...], str]:
    """The journal's row for ``new`` (not recovered) after ``prev``, and its hash."""
    synced, origin = int(new.clock_synced), new.origin.value
    stored = (seq, new.event_id, new.type.value, new.occurred_at_ms, synced, origin, 0)
    h = stored_hash(prev, *stored, payload)
    return (*stored, payload, prev, h), h


def shaped_sqlite(workdir: Path, events: list[NewEvent]) -> float:
    """Diagnostic: the journal's own schema, row and chain hash, one row per transaction, in
    the calling thread (no writer thread, no event loop). The gap from ``bare_sqlite`` is the
    schema's cost (a wider row, two secondary indexes, the gapless trigger, the hash); the gap
    from here to the journal is the cost of the writer thread and the asyncio hand-offs."""
    conn = sqlite3.connect(workdir / "shaped.db", isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {SYNCHRONOUS}")
        migrate(conn)
        prev = GENESIS_HASH
        start = 0.0
        for seq, new in enumerate(events, 1):
            if seq == WARMUP + 1:
                start = time.perf_counter()
            row, prev = journal_row(prev, seq, new, canonical_json(new.payload.to_dict()))
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(SHAPED_INSERT, row)
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - start
    finally:
        conn.close()
    return (len(events) - WARMUP) / elapsed


class ThreadedSqlite:
    """``bare_sqlite``'s loop moved into a writer thread that answers an asyncio future per row:
    the least the journal's design (loop -> writer thread -> loop) can cost.

    ``shaped``: the same loop writing the journal's own rows instead of one column: its schema
    (wider row, two secondary indexes, the gapless trigger) and the chain hash, computed in
    the writer thread as the journal does. Set against the plain loop, it is what the schema
    alone costs; set against the journal, what the journal's own Python costs."""

    def __init__(self, path: Path, *, shaped: bool = False) -> None:
        self._loop = asyncio.get_running_loop()
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute(f"PRAGMA synchronous = {SYNCHRONOUS}")
        if shaped:
            migrate(self._conn)
        else:
            self._conn.execute(
                "CREATE TABLE events (seq INTEGER PRIMARY KEY, payload TEXT NOT NULL)"
            )
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        write = self._write_shaped if shaped else self._write
        self._thread = threading.Thread(target=write, name="bench-writer", daemon=True)
        self._thread.start()

    def _write(self) -> None:
        conn = self._conn
        while (job := self._jobs.get()) is not None:
            _, text, future = job
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO events (payload) VALUES (?)", (text,))
            conn.execute("COMMIT")
            self._loop.call_soon_threadsafe(future.set_result, None)

    def _write_shaped(self) -> None:
        conn, prev, seq = self._conn, GENESIS_HASH, 0
        while (job := self._jobs.get()) is not None:
            new, text, future = job
            assert new is not None
            seq += 1
            row, prev = journal_row(prev, seq, new, text)
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(SHAPED_INSERT, row)
            conn.execute("COMMIT")
            self._loop.call_soon_threadsafe(future.set_result, None)

    async def append(self, text: str, new: NewEvent | None = None) -> None:
        """Write ``text`` (shaped: as ``new``'s payload, ``new`` being synchronised)."""
        future: asyncio.Future[None] = self._loop.create_future()
        self._jobs.put((new, text, future))
        await future

    async def aclose(self) -> None:
        self._jobs.put(None)
        await asyncio.to_thread(self._thread.join)
        self._conn.close()


async def threaded_sqlite(workdir: Path, payloads: list[str]) -> tuple[float, float]:
    """Diagnostic: :class:`ThreadedSqlite`; the gap from ``bare_sqlite`` is the two
    cross-thread wake-ups per append.

    Returns (appends per second, process CPU microseconds per append)."""
    threaded = ThreadedSqlite(workdir / "threaded.db")
    try:
        for text in payloads[:WARMUP]:
            await threaded.append(text)
        timed = payloads[WARMUP:]
        start, cpu = time.perf_counter(), time.process_time()
        for text in timed:
            await threaded.append(text)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    finally:
        await threaded.aclose()
    return len(timed) / elapsed, cpu / len(timed) * 1e6


@dataclass(frozen=True, slots=True)
class Interleaved:
    """Ratios of wall time (higher: the first is faster) and CPU differences per append."""

    journal_vs_threaded: float
    shaped_vs_threaded: float  # what the journal's schema and hash alone leave of the loop
    journal_vs_shaped: float  # what the journal's own Python leaves of the shaped loop
    own_cpu_us: float  # journal minus threaded
    python_cpu_us: float  # journal minus shaped


async def interleaved(workdir: Path, events: list[NewEvent], payloads: list[str]) -> Interleaved:
    """The target's ratio measured so that drift cannot swing it: the journal, the threaded
    loop and the shaped threaded loop all open, taking turns in blocks of BLOCK appends, so
    each sees the same moments of the disk."""
    journal = open_journal(workdir)
    threaded = ThreadedSqlite(workdir / "threaded.db")
    shaped = ThreadedSqlite(workdir / "shaped.db", shaped=True)
    walls, cpus = [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]

    async def turn(which: int, block: range) -> None:
        start, cpu = time.perf_counter(), time.process_time()
        for i in block:
            if which == 0:
                await journal.append(events[i])
            else:
                await (threaded if which == 1 else shaped).append(payloads[i], events[i])
        walls[which] += time.perf_counter() - start
        cpus[which] += time.process_time() - cpu

    try:
        for which in range(3):
            await turn(which, range(WARMUP))
        walls[:], cpus[:] = [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]
        for at in range(WARMUP, len(events), BLOCK):
            for which in range(3):
                await turn(which, range(at, min(at + BLOCK, len(events))))
    finally:
        await journal.aclose()
        await threaded.aclose()
        await shaped.aclose()
    per_append = 1e6 / (len(events) - WARMUP)
    return Interleaved(
        walls[1] / walls[0],
        walls[1] / walls[2],
        walls[2] / walls[0],
        (cpus[0] - cpus[1]) * per_append,
        (cpus[0] - cpus[2]) * per_append,
    )


def bare_fsync(workdir: Path, count: int) -> float:
    block = b"x" * (PAYLOAD_BYTES - 1) + b"\n"
    fd = os.open(workdir / "bare.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for _ in range(WARMUP):
            os.write(fd, block)
            if SYNCHRONOUS == "FULL":
                os.fsync(fd)
        start = time.perf_counter()
        for _ in range(count):
            os.write(fd, block)
            if SYNCHRONOUS == "FULL":
                os.fsync(fd)
        elapsed = time.perf_counter() - start
    finally:
        os.close(fd)
    return count / elapsed


def open_journal(workdir: Path) -> Journal:
    journal = Journal.open(workdir / "journal.db")
    if SYNCHRONOUS != "FULL":
        journal.writer_pragma(f"PRAGMA synchronous = {SYNCHRONOUS}")
    journal.start()
    return journal


async def journal_single(workdir: Path, events: list[NewEvent]) -> tuple[float, float]:
    """(appends per second, process CPU microseconds per append): the CPU figure, set against
    ``threaded_sqlite``'s, is the journal's own work per event (both threads), which a busy
    machine disturbs far less than it disturbs the rates."""
    journal = open_journal(workdir)
    try:
        for new in events[:WARMUP]:
            await journal.append(new)
        timed = events[WARMUP:]
        start, cpu = time.perf_counter(), time.process_time()
        for new in timed:
            await journal.append(new)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    finally:
        await journal.aclose()
    return len(timed) / elapsed, cpu / len(timed) * 1e6


async def journal_burst(workdir: Path, events: list[NewEvent]) -> tuple[float, float]:
    """Events per second, and the mean number of events per commit."""
    journal = open_journal(workdir)
    try:
        for new in events[:WARMUP]:
            await journal.append(new)
        timed = events[WARMUP:]
        commits_before = journal.health.commits
        start = time.perf_counter()
        futures = [journal.append_nowait(new) for new in timed]
        done = await asyncio.gather(*futures)
        elapsed = time.perf_counter() - start
        commits = journal.health.commits - commits_before
        assert all(not e.held for e in done), "an event was held: the disk refused a write"
    finally:
        await journal.aclose()
    return len(timed) / elapsed, len(timed) / max(1, commits)


# --- the run -------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts (a smoke run)")
    parser.add_argument(
        "--no-fsync", action="store_true", help="diagnostic: synchronous=OFF everywhere"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n", type=int, default=None, help="single appends per round")
    parser.add_argument("--burst", type=int, default=None, help="events per burst")
    args = parser.parse_args()
    n = args.n or (400 if args.quick else 2000)
    burst = args.burst or (4000 if args.quick else 20_000)
    rounds = max(1, args.rounds)
    global SYNCHRONOUS  # noqa: PLW0603 - one switch for every measurement of the run
    SYNCHRONOUS = "OFF" if args.no_fsync else "FULL"

    root = bench_tmpdir("journal")
    try:
        figures = asyncio.run(run(root, n, burst, rounds))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    emit_json("journal_append", figures)


SAMPLES = (
    "sqlite",
    "fsync",
    "shaped",
    "threaded",
    "threaded_cpu",
    "journal",
    "journal_cpu",
    "burst",
    "group",
    "interleaved",
    "interleaved_cpu",
    "interleaved_shaped",
    "interleaved_python",
    "interleaved_python_cpu",
)


async def one_round(
    root: Path, r: int, n: int, burst: int, samples: dict[str, list[float]]
) -> list[str]:
    """Take every measurement once, in this round's rotated order, appending to ``samples``.
    Returns the order."""
    single_events = make_events(WARMUP + n)
    burst_events = make_events(WARMUP + burst)
    payloads = [canonical_json(e.payload.to_dict()) for e in single_events]
    names = ["sqlite", "fsync", "journal", "shaped", "threaded", "burst", "interleaved"]
    order = names[r % len(names) :] + names[: r % len(names)]
    for name in order:
        workdir = root / f"r{r}-{name}"
        workdir.mkdir()
        if name == "sqlite":
            samples["sqlite"].append(bare_sqlite(workdir, payloads))
        elif name == "fsync":
            samples["fsync"].append(bare_fsync(workdir, n))
        elif name == "threaded":
            rate, cpu = await threaded_sqlite(workdir, payloads)
            samples["threaded"].append(rate)
            samples["threaded_cpu"].append(cpu)
        elif name == "shaped":
            samples["shaped"].append(shaped_sqlite(workdir, single_events))
        elif name == "journal":
            rate, cpu = await journal_single(workdir, single_events)
            samples["journal"].append(rate)
            samples["journal_cpu"].append(cpu)
        elif name == "interleaved":
            turns = await interleaved(workdir, single_events, payloads)
            samples["interleaved"].append(turns.journal_vs_threaded)
            samples["interleaved_cpu"].append(turns.own_cpu_us)
            samples["interleaved_shaped"].append(turns.shaped_vs_threaded)
            samples["interleaved_python"].append(turns.journal_vs_shaped)
            samples["interleaved_python_cpu"].append(turns.python_cpu_us)
        else:
            rate, group = await journal_burst(workdir, burst_events)
            samples["burst"].append(rate)
            samples["group"].append(group)
        shutil.rmtree(workdir, ignore_errors=True)
    return order


async def run(root: Path, n: int, burst: int, rounds: int) -> dict[str, object]:
    sample = make_event(time.time_ns() // 1_000_000)
    payload_len = len(canonical_json(sample.payload.to_dict()).encode())
    print(
        f"journal_append: N={n} single appends, burst={burst}, {rounds} rounds, "
        f"synchronous={SYNCHRONOUS}"
        + ("  (NOT DURABLE: a diagnostic, no target)" if SYNCHRONOUS != "FULL" else "")
    )
    print(f"  {machine_note()}")
    print(f"  temp dir {root} on {filesystem_of(root)}; payload JSON {payload_len} B")

    samples: dict[str, list[float]] = {name: [] for name in SAMPLES}
    for r in range(rounds):
        order = await one_round(root, r, n, burst, samples)
        last = {name: values[-1] for name, values in samples.items()}
        print(
            f"  round {r + 1}: sqlite {last['sqlite']:,.0f}/s  fsync {last['fsync']:,.0f}/s  "
            f"shaped {last['shaped']:,.0f}/s  threaded {last['threaded']:,.0f}/s  "
            f"journal {last['journal']:,.0f}/s  burst {last['burst']:,.0f}/s "
            f"({last['group']:.0f} per commit)  CPU us/append journal {last['journal_cpu']:.0f} "
            f"threaded {last['threaded_cpu']:.0f}  interleaved journal/threaded "
            f"{last['interleaved']:.2f} (shaped/threaded {last['interleaved_shaped']:.2f}, "
            f"journal/shaped {last['interleaved_python']:.2f})  [order: {', '.join(order)}]",
            flush=True,
        )
    sqlite_rates, fsync_rates = samples["sqlite"], samples["fsync"]
    shaped_rates, threaded_rates = samples["shaped"], samples["threaded"]
    single_rates, burst_rates = samples["journal"], samples["burst"]
    single_cpu, threaded_cpu = samples["journal_cpu"], samples["threaded_cpu"]
    group_sizes = samples["group"]

    vs_sqlite = median([j / s for j, s in zip(single_rates, sqlite_rates, strict=True)])
    vs_fsync = median([j / f for j, f in zip(single_rates, fsync_rates, strict=True)])
    shaped_vs_sqlite = median([h / s for h, s in zip(shaped_rates, sqlite_rates, strict=True)])
    threaded_vs_sqlite = median([t / s for t, s in zip(threaded_rates, sqlite_rates, strict=True)])
    vs_threaded = median([j / t for j, t in zip(single_rates, threaded_rates, strict=True)])
    vs_shaped = median([j / h for j, h in zip(single_rates, shaped_rates, strict=True)])
    burst_vs_single = median([b / j for b, j in zip(burst_rates, single_rates, strict=True)])
    own_cpu = median([j - t for j, t in zip(single_cpu, threaded_cpu, strict=True)])
    vs_threaded_interleaved = median(samples["interleaved"])
    own_cpu_interleaved = median(samples["interleaved_cpu"])
    shaped_vs_threaded_interleaved = median(samples["interleaved_shaped"])
    vs_shaped_interleaved = median(samples["interleaved_python"])
    python_cpu_interleaved = median(samples["interleaved_python_cpu"])

    noisy = [
        name
        for name, rates in (("sqlite", sqlite_rates), ("fsync", fsync_rates))
        if max(rates) > 1.5 * min(rates)
    ]
    if noisy:
        print(
            f"  NOISY: the {' and '.join(noisy)} baseline varied over 1.5x between rounds "
            "(other disk or CPU work?): compare the paired ratios, or run again"
        )
    print(f"  after: {machine_note()}")
    print()
    print_table(
        ["measurement", "events/s (median)", "ratio", "target"],
        [
            ["bare sqlite3, WAL, FULL, 1 row/txn", median(sqlite_rates), "", ""],
            ["bare write+fsync, 300 B", median(fsync_rates), "", ""],
            ["journal.append (durable, sequential)", median(single_rates), "", ""],
            ["  journal / bare sqlite", "", vs_sqlite, ""],
            ["  journal / bare fsync", "", vs_fsync, ""],
            ["diag: journal schema+hash, same thread", median(shaped_rates), "", ""],
            ["  diag: schema+hash / bare sqlite", "", shaped_vs_sqlite, ""],
            ["  diag: journal / schema+hash", "", vs_shaped, ""],
            ["diag: bare sqlite in a thread + future", median(threaded_rates), "", ""],
            ["  diag: threaded / bare sqlite", "", threaded_vs_sqlite, ""],
            ["  diag: journal / threaded, separate runs", "", vs_threaded, ""],
            ["  journal / threaded, interleaved", "", vs_threaded_interleaved, ">= 0.8"],
            [
                "  diag: shaped threaded / threaded, interleaved",
                "",
                shaped_vs_threaded_interleaved,
                "",
            ],
            ["  diag: journal / shaped threaded, interleaved", "", vs_shaped_interleaved, ""],
            ["diag: CPU us per append, journal", median(single_cpu), "", ""],
            ["diag: CPU us per append, threaded", median(threaded_cpu), "", ""],
            ["  diag: the journal's own CPU us per append", own_cpu, "", ""],
            ["  diag: the same, interleaved", own_cpu_interleaved, "", ""],
            ["  diag: of which not schema or hash, interleaved", python_cpu_interleaved, "", ""],
            ["journal burst (append_nowait + gather)", median(burst_rates), "", ""],
            ["  burst / journal single", "", burst_vs_single, ">= 10"],
            ["  events per commit (burst)", "", median(group_sizes), ""],
        ],
    )
    return {
        "n": n,
        "burst": burst,
        "rounds": rounds,
        "payload_bytes": payload_len,
        "bare_sqlite_per_s": rounded(median(sqlite_rates), 0),
        "bare_fsync_per_s": rounded(median(fsync_rates), 0),
        "shaped_sqlite_per_s": rounded(median(shaped_rates), 0),
        "threaded_sqlite_per_s": rounded(median(threaded_rates), 0),
        "journal_single_per_s": rounded(median(single_rates), 0),
        "journal_burst_per_s": rounded(median(burst_rates), 0),
        "burst_events_per_commit": rounded(median(group_sizes), 1),
        "ratio_journal_vs_sqlite": rounded(vs_sqlite),
        "ratio_journal_vs_fsync": rounded(vs_fsync),
        "ratio_shaped_vs_sqlite": rounded(shaped_vs_sqlite),
        "ratio_journal_vs_shaped": rounded(vs_shaped),
        "ratio_threaded_vs_sqlite": rounded(threaded_vs_sqlite),
        "ratio_journal_vs_threaded": rounded(vs_threaded),
        "ratio_journal_vs_threaded_interleaved": rounded(vs_threaded_interleaved),
        "journal_own_cpu_us_per_append_interleaved": rounded(own_cpu_interleaved, 1),
        "ratio_shaped_threaded_vs_threaded_interleaved": rounded(shaped_vs_threaded_interleaved),
        "ratio_journal_vs_shaped_threaded_interleaved": rounded(vs_shaped_interleaved),
        "journal_python_cpu_us_per_append_interleaved": rounded(python_cpu_interleaved, 1),
        "ratio_burst_vs_single": rounded(burst_vs_single, 2),
        "journal_cpu_us_per_append": rounded(median(single_cpu), 1),
        "threaded_cpu_us_per_append": rounded(median(threaded_cpu), 1),
        "journal_own_cpu_us_per_append": rounded(own_cpu, 1),
        "target_journal_vs_threaded": 0.8,
        "target_burst_vs_single": 10,
        "noisy": bool(noisy),
        "synchronous": SYNCHRONOUS,
        "pass": SYNCHRONOUS == "FULL" and vs_threaded_interleaved >= 0.8 and burst_vs_single >= 10,
    }


if __name__ == "__main__":
    main()
