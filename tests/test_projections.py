"""Projections: the feeding history's statuses, "as of" builds, exactly-once after a kill."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from daemon_process import FMFB, DaemonProcess, fmfb_env, run_fmfb
from waiting import wait_for

from gateway.events import (
    Bowl,
    ClickType,
    FeedDispensed,
    FeedRejected,
    FeedRequested,
    FeedUnconfirmed,
    FoodLevelChanged,
    Origin,
    RefusedBy,
)
from gateway.journal import Journal, JournalReader, open_new_event
from gateway.projections import ProjectionError, Runner, table_contents
from gateway.projections.feeding_history import PROJECTION

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from verify_and_project import make_journal

T0 = 1_800_000_000_000


def _req(rid: str, bowls: tuple[Bowl, ...] = (Bowl.LEFT,), origin: Origin = Origin.BUTTON):
    return FeedRequested(
        request_id=rid,
        bowls=bowls,
        portion_ms=5000,
        expires_at_ms=T0 + 10**9,
        origin=origin,
        button="b" if origin is Origin.BUTTON else None,
        click_type=ClickType.SINGLE if origin is Origin.BUTTON else None,
    )


async def _write(path: Path, payloads: list) -> None:
    journal = Journal.open(path)
    journal.start()
    try:
        for i, p in enumerate(payloads):
            await journal.append(
                open_new_event(
                    p, origin=Origin.BUTTON, now_ms=T0 + i * 3_600_000, clock_synced=True
                )
            )
    finally:
        await journal.aclose()


def _build(journal: Path, out: Path, **kw) -> int:
    with JournalReader.open(journal) as reader, Runner(PROJECTION, out) as runner:
        return runner.run(reader, **kw).seq


def _rows(out: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(out)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


async def test_statuses_from_a_real_journal(tmp_path: Path) -> None:
    journal = tmp_path / "j.db"
    r = _req
    payloads = [
        r("r1"),  # 1: never answered -> requested
        r("r2", (Bowl.LEFT, Bowl.RIGHT), Origin.CLI),  # 2
        FeedDispensed("r2", (Bowl.LEFT, Bowl.RIGHT), 4900),  # 3: r2 dispensed
        FeedRejected.of(r("r3"), "too-soon", RefusedBy.GATEWAY),  # 4: refused on arrival
        r("r4"),  # 5
        FeedRejected.of(r("r4"), "expired", RefusedBy.FEEDER),  # 6: r4 expired at the feeder
        r("r5", (Bowl.RIGHT,)),  # 7
        FeedUnconfirmed("r5", (Bowl.RIGHT,), 60_000),  # 8: r5 unconfirmed
        r("r6"),  # 9
        FeedUnconfirmed("r6", (Bowl.LEFT,), 60_000),  # 10
        FeedDispensed("r6", (Bowl.LEFT,), 5000),  # 11: a late answer wins
        FeedRejected.of(r("r2"), "duplicate", RefusedBy.GATEWAY),  # 12: its own row
        FoodLevelChanged(80, None),  # 13
        FoodLevelChanged(60, 80),  # 14
    ]
    await _write(journal, payloads)
    out = tmp_path / "h.db"
    assert _build(journal, out) == 14
    feeds = _rows(
        out, "SELECT seq, request_id, status, reason, refused_by, resolved_seq FROM feeds"
    )
    assert sorted(feeds) == [
        (1, "r1", "requested", None, None, None),
        (2, "r2", "dispensed", None, None, 3),
        (4, "r3", "refused", "too-soon", "gateway", 4),
        (5, "r4", "expired", "expired", "feeder", 6),
        (7, "r5", "unconfirmed", None, None, 8),
        (9, "r6", "dispensed", None, None, 11),
        (12, "r2", "refused", "duplicate", "gateway", 12),
    ]
    assert _rows(out, "SELECT ran_ms, waited_ms FROM feeds WHERE seq = 2") == [(4900, None)]
    assert _rows(out, "SELECT level, previous FROM food_levels ORDER BY seq") == [
        (80, None),
        (60, 80),
    ]
    per_day = _rows(
        out,
        "SELECT bowl, sum(requests), sum(dispensed) FROM feeds_per_bowl_per_day "
        "GROUP BY bowl ORDER BY bowl",
    )
    assert per_day == [("left", 6, 2), ("right", 2, 1)]
    # apply is pure: the same row gives the same output, and unknown types give nothing.
    with JournalReader.open(journal) as reader:
        assert reader.last_seq() == 14


def test_as_of_seq_equals_incremental_stopped_there(tmp_path: Path) -> None:
    journal = tmp_path / "j.db"
    make_journal(journal, 2_345)
    for n in (0, 1, 7, 1000, 1733, 2345):
        clean = tmp_path / f"clean-{n}.db"
        with JournalReader.open(journal) as reader, Runner(PROJECTION, clean) as runner:
            assert runner.run(reader, until_seq=n).seq == n
        inc = tmp_path / f"inc-{n}.db"
        # Stopped many times on the way, with windows that do not line up with the clean ones.
        stops = sorted({s for s in (1, 3, n // 3, n // 2, n - 1, n) if 0 <= s <= n})
        for stop in stops:
            with JournalReader.open(journal) as reader, Runner(PROJECTION, inc, window=97) as r:
                r.run(reader, until_seq=stop)
                assert r.position().seq == stop
        if n == 0:
            with Runner(PROJECTION, inc):
                pass
        assert table_contents(inc) == table_contents(clean)
        assert sum(len(v) for v in table_contents(clean).values()) > 0 or n < 1


def test_until_time_is_the_prefix_before_it(tmp_path: Path) -> None:
    journal = tmp_path / "j.db"
    make_journal(journal, 500, end_ms=T0)
    with JournalReader.open(journal) as reader:
        at_300 = reader.get(300)
    assert at_300 is not None
    by_time = tmp_path / "t.db"
    iso = datetime.fromtimestamp(at_300.occurred_at_ms / 1000, tz=UTC).isoformat()
    done = run_fmfb(
        "project", "feeding-history", "--out", by_time, "--journal", journal, "--until", iso
    )
    assert done.returncode == 0, done.stderr
    assert "at seq 299" in done.stdout
    by_seq = tmp_path / "s.db"
    assert _build(journal, by_seq, until_seq=299) == 299
    assert table_contents(by_time) == table_contents(by_seq)


def test_a_file_ahead_of_the_asked_point_must_be_rebuilt(tmp_path: Path) -> None:
    journal = tmp_path / "j.db"
    make_journal(journal, 300)
    out = tmp_path / "h.db"
    assert (
        run_fmfb("project", "feeding-history", "--out", out, "--journal", journal).returncode == 0
    )
    behind = run_fmfb(
        "project", "feeding-history", "--out", out, "--journal", journal, "--until-seq", "100"
    )
    assert behind.returncode == 2
    assert "past the asked seq 100" in behind.stderr
    rebuilt = run_fmfb(
        "project",
        "feeding-history",
        "--out",
        out,
        "--journal",
        journal,
        "--until-seq",
        "100",
        "--rebuild",
    )
    assert rebuilt.returncode == 0, rebuilt.stderr
    clean = tmp_path / "c.db"
    _build(journal, clean, until_seq=100)
    assert table_contents(out) == table_contents(clean)
    # Another journal's file is refused (its chain does not match at the file's position).
    other = tmp_path / "other.db"
    make_journal(other, 300)
    refused = run_fmfb("project", "feeding-history", "--out", out, "--journal", other)
    assert refused.returncode == 2
    assert "another journal" in refused.stderr


def test_a_window_is_applied_only_if_the_position_is_where_it_started(tmp_path: Path) -> None:
    journal = tmp_path / "j.db"
    make_journal(journal, 400)
    out = tmp_path / "h.db"
    with JournalReader.open(journal) as reader:
        slow = Runner(PROJECTION, out)
        slow.run(reader, until_seq=100)
        # Another builder moves the same file on meanwhile.
        with Runner(PROJECTION, out) as fast:
            fast.run(reader, until_seq=250)
        before = table_contents(out)
        try:
            with pytest.raises(ProjectionError, match="moved away from seq 100"):
                slow._fold_window(reader, 100, 200)
        finally:
            slow.close()
    assert table_contents(out) == before  # nothing applied twice
    clean = tmp_path / "c.db"
    _build(journal, clean, until_seq=250)
    assert table_contents(out) == table_contents(clean)


def test_a_build_killed_midway_resumes_exactly_once(tmp_path: Path) -> None:
    journal = tmp_path / "j.db"
    n = 300_000
    make_journal(journal, n)
    out = tmp_path / "killed.db"
    args = ["project", "feeding-history", "--out", str(out), "--journal", str(journal)]
    proc = subprocess.Popen(
        [*FMFB, *args],
        env=fmfb_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:

        def position() -> int:
            if not out.exists():
                return 0
            try:
                rows = _rows(out, "SELECT seq FROM projection_position")
            except sqlite3.Error:
                return 0
            return int(rows[0][0]) if rows else 0

        wait_for(lambda: position() >= 40_000, timeout=60, what="the build to be under way")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    stopped_at = position()
    assert 0 < stopped_at < n, stopped_at
    resumed = run_fmfb(*args, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert f"from {stopped_at}" in resumed.stdout
    clean = tmp_path / "clean.db"
    t = time.monotonic()
    assert _build(journal, clean) == n
    assert time.monotonic() - t < 120
    assert table_contents(out) == table_contents(clean)


def test_project_while_the_daemon_is_writing(broker, tmp_path: Path) -> None:
    with DaemonProcess(broker.port, workdir=tmp_path / "d") as daemon:
        daemon.start()
        for bowl in ("left", "right", "both"):
            fed = daemon.cli("feed", bowl)
            assert fed.returncode == 0, fed.stderr
        out = tmp_path / "h.db"
        done = daemon.cli("project", "feeding-history", "--out", out)
        assert done.returncode == 0, done.stderr
        requested = daemon.events(["FeedRequested"])
        feeds = _rows(out, "SELECT request_id, bowls FROM feeds ORDER BY seq")
        assert [f[0] for f in feeds][: len(requested)] == [e.payload.request_id for e in requested]
        assert ("left,right") in [f[1] for f in feeds]
        assert daemon.running
        # Incremental: more events, the same file brought up to date.
        assert daemon.cli("feed", "left").returncode == 0
        again = daemon.cli("project", "feeding-history", "--out", out)
        assert again.returncode == 0, again.stderr
        assert len(_rows(out, "SELECT * FROM feeds")) == len(daemon.events(["FeedRequested"]))
