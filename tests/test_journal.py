"""The journal against a real SQLite file: ordering, durability, tamper evidence, refusal."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import sqlite3
import threading
from pathlib import Path

import pytest

from gateway.errors import (
    JournalCorruptError,
    JournalError,
    JournalVersionError,
    NotAJournalError,
)
from gateway.events import (
    Bowl,
    ClickType,
    FeedRequested,
    FoodLevelChanged,
    Origin,
    canonical_json,
)
from gateway.journal import Journal, JournalReader, open_new_event
from gateway.journal.chain import GENESIS_HASH, chain_hash
from gateway.journal.schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION
from gateway.journal.writer import CommitThread


def level(n: int, at: int = 1_800_000_000_000):
    return open_new_event(
        FoodLevelChanged(level=n), origin=Origin.FEEDER, now_ms=at, clock_synced=True
    )


def request(i: int):
    payload = FeedRequested(
        request_id=f"req-{i}",
        bowls=(Bowl.LEFT,),
        portion_ms=5000,
        expires_at_ms=1_800_000_300_000,
        origin=Origin.BUTTON,
        button="kitchen",
        click_type=ClickType.SINGLE,
    )
    return open_new_event(
        payload, origin=Origin.BUTTON, now_ms=1_800_000_000_000 + i, clock_synced=False
    )


async def write(path: Path, events) -> list:
    journal = Journal.open(path)
    journal.start()
    try:
        return [await journal.append(e) for e in events]
    finally:
        await journal.aclose()


def copy_without_triggers(src: Path, dst: Path) -> sqlite3.Connection:
    """A copy of the journal whose append-only triggers are gone: a stand-in for someone
    editing the file behind the schema's back."""
    with sqlite3.connect(src) as s, sqlite3.connect(dst) as d:
        s.backup(d)
    conn = sqlite3.connect(dst, isolation_level=None)
    for trigger in ("events_no_update", "events_no_delete", "events_gapless"):
        conn.execute(f"DROP TRIGGER {trigger}")
    return conn


def snapshot(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


# --- appending ------------------------------------------------------------------------------


async def test_append_returns_durable_events_in_seq_order(tmp_path):
    path = tmp_path / "j.db"
    events = await write(path, [request(i) for i in range(5)])
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert all(not e.held and not e.recovered for e in events)
    assert events[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(events))
    with JournalReader.open(path) as reader:
        assert reader.verify() == (5, None)
        stored = reader.read_after(0)
    assert [e.hash for e in stored] == [e.hash for e in events]
    assert stored[2].payload == events[2].payload


async def test_burst_is_group_committed_and_each_caller_waits_for_its_own(tmp_path):
    journal = Journal.open(tmp_path / "j.db")
    journal.start()
    futures = [journal.append_nowait(level(i)) for i in range(2000)]
    # Nothing is durable before the writer has committed it.
    assert journal.durable_seq == 0
    done = await asyncio.gather(*futures)
    assert [e.seq for e in done] == list(range(1, 2001))
    assert journal.durable_seq == 2000
    assert journal.health.commits < 2000  # grouped, not one fsync per event
    await journal.aclose()


def test_appends_from_several_threads_are_gapless_and_not_interleaved(tmp_path):
    """Two threads append 2,000 events each through the daemon's loop at once."""
    loop = asyncio.new_event_loop()
    journal: Journal | None = None

    async def start():
        nonlocal journal
        journal = Journal.open(tmp_path / "j.db")
        journal.start()

    loop.run_until_complete(start())
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()
    results: dict[str, list[int]] = {"a": [], "b": []}

    def appender(name: str) -> None:
        assert journal is not None
        for i in range(2000):
            new = open_new_event(
                FeedRequested(
                    request_id=f"{name}-{i}",
                    bowls=(Bowl.LEFT,),
                    portion_ms=1,
                    expires_at_ms=1,
                    origin=Origin.CLI,
                ),
                origin=Origin.CLI,
                now_ms=1,
                clock_synced=True,
            )
            event = asyncio.run_coroutine_threadsafe(journal.append(new), loop).result(30)
            results[name].append(event.seq)

    threads = [threading.Thread(target=appender, args=(n,)) for n in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert journal is not None
    asyncio.run_coroutine_threadsafe(journal.aclose(), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    runner.join(10)

    assert sorted(results["a"] + results["b"]) == list(range(1, 4001))
    with JournalReader.open(tmp_path / "j.db") as reader:
        assert reader.verify() == (4000, None)
        ids = [e.payload.request_id for e in reader.read_after(0, limit=5000)]  # type: ignore[union-attr]
    for name in results:
        mine = [int(i.split("-")[1]) for i in ids if i.startswith(name)]
        assert mine == list(range(2000)), f"thread {name}'s events out of its own order"


async def test_reopen_continues_the_chain(tmp_path):
    path = tmp_path / "j.db"
    first = await write(path, [level(1), level(2)])
    second = await write(path, [level(3)])
    assert second[0].seq == 3
    assert second[0].prev_hash == first[-1].hash
    with JournalReader.open(path) as reader:
        assert reader.verify() == (3, None)


async def test_cursors_persist_in_the_same_database(tmp_path):
    path = tmp_path / "j.db"
    journal = Journal.open(path)
    journal.start()
    await journal.append(level(1))
    assert journal.register_cursor("feeder", start_at=1) == 1
    journal.save_cursor("feeder", 1)
    with pytest.raises(JournalError, match="cannot move back"):
        journal.save_cursor("feeder", 0)
    await journal.aclose()
    with JournalReader.open(path) as reader:
        assert reader.cursor("feeder") == 1
        (pending,) = reader.pending()
    assert pending.backlog == 0
    assert pending.updated_at_ms > 0


async def test_a_second_appender_is_refused(tmp_path):
    path = tmp_path / "j.db"
    journal = Journal.open(path)
    with pytest.raises(JournalError, match="already open for writing"):
        Journal.open(path)
    journal.close()
    Journal.open(path).close()  # released on close


async def test_reader_on_a_live_journal_does_not_block_appends(tmp_path):
    path = tmp_path / "j.db"
    journal = Journal.open(path)
    journal.start()
    await journal.append(level(1))
    reader = JournalReader.open(path)
    rows = reader._conn.execute("SELECT seq FROM events")  # an open read transaction
    assert rows.fetchone() == (1,)
    appended = await asyncio.wait_for(journal.append(level(2)), timeout=5)
    assert appended.seq == 2 and not appended.held
    reader.close()
    await journal.aclose()


# --- the schema refuses edits ----------------------------------------------------------------


async def test_update_and_delete_are_refused_by_the_schema(tmp_path):
    path = tmp_path / "j.db"
    await write(path, [level(1), level(2)])
    conn = sqlite3.connect(path)
    with pytest.raises(sqlite3.IntegrityError, match="UPDATE refused"):
        conn.execute("UPDATE events SET payload = '{}' WHERE seq = 1")
    with pytest.raises(sqlite3.IntegrityError, match="DELETE refused"):
        conn.execute("DELETE FROM events WHERE seq = 2")
    with pytest.raises(sqlite3.IntegrityError, match="gapless"):
        conn.execute(
            "INSERT INTO events VALUES (5, 'x', 'FeederOnline', 1, 1, 'feeder', 0, '{}', '', '')"
        )
    conn.close()
    with JournalReader.open(path) as reader:
        assert reader.verify() == (2, None)


# --- verify finds what was done behind the triggers' back -----------------------------------


async def test_verify_finds_an_edited_row(tmp_path):
    await write(tmp_path / "j.db", [level(i) for i in range(1, 6)])
    conn = copy_without_triggers(tmp_path / "j.db", tmp_path / "edited.db")
    conn.execute("""UPDATE events SET payload = '{"level":99,"previous":null}' WHERE seq = 3""")
    conn.close()
    with JournalReader.open(tmp_path / "edited.db") as reader:
        checked, problem = reader.verify()
    assert checked == 2
    assert problem is not None
    assert problem.startswith("seq 3: hash mismatch")


async def test_verify_finds_a_deleted_row(tmp_path):
    await write(tmp_path / "j.db", [level(i) for i in range(1, 6)])
    conn = copy_without_triggers(tmp_path / "j.db", tmp_path / "deleted.db")
    conn.execute("DELETE FROM events WHERE seq = 2")
    conn.close()
    with JournalReader.open(tmp_path / "deleted.db") as reader:
        checked, problem = reader.verify()
    assert checked == 1
    assert problem is not None
    assert "seq 3: expected seq 2" in problem


async def test_verify_finds_a_broken_link_even_when_the_row_rehashes_itself(tmp_path):
    await write(tmp_path / "j.db", [level(i) for i in range(1, 6)])
    conn = copy_without_triggers(tmp_path / "j.db", tmp_path / "relinked.db")
    row = conn.execute(
        "SELECT seq, event_id, type, occurred_at_ms, clock_synced, origin, recovered, payload "
        "FROM events WHERE seq = 4"
    ).fetchone()
    fake_prev = "f" * 64
    rehashed = chain_hash(
        fake_prev,
        seq=row[0],
        event_id=row[1],
        type_=row[2],
        occurred_at_ms=row[3],
        clock_synced=bool(row[4]),
        origin=row[5],
        recovered=bool(row[6]),
        payload=row[7],
    )
    conn.execute("UPDATE events SET prev_hash = ?, hash = ? WHERE seq = 4", (fake_prev, rehashed))
    conn.close()
    with JournalReader.open(tmp_path / "relinked.db") as reader:
        checked, problem = reader.verify()
    assert checked == 3
    assert problem is not None
    assert problem.startswith("seq 4: broken link")


async def test_rows_recompute_with_plain_hashlib_from_the_documented_layout(tmp_path):
    events = await write(tmp_path / "j.db", [request(1), level(2)])
    conn = sqlite3.connect(tmp_path / "j.db")
    prev = GENESIS_HASH
    for (
        seq,
        eid,
        type_,
        ms,
        synced,
        origin,
        recovered,
        payload,
        stored_prev,
        stored,
    ) in conn.execute("SELECT * FROM events ORDER BY seq"):
        text = "\n".join(
            [prev, str(seq), eid, type_, str(ms), str(synced), origin, str(recovered), payload]
        )
        assert hashlib.sha256(text.encode()).hexdigest() == stored
        assert stored_prev == prev
        prev = stored
    conn.close()
    assert prev == events[-1].hash
    assert json.loads(payload) == events[-1].payload.to_dict()
    assert payload == canonical_json(events[-1].payload.to_dict())


# --- opening: refuse what is not ours, never touch it -----------------------------------------


def test_a_file_of_another_application_is_refused_untouched(tmp_path):
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE recipes (name TEXT)")
    conn.execute("INSERT INTO recipes VALUES ('tuna')")
    conn.commit()
    conn.close()
    before = snapshot(path)
    with pytest.raises(NotAJournalError, match="another application"):
        Journal.open(path)
    with pytest.raises(NotAJournalError):
        JournalReader.open(path)
    assert snapshot(path) == before
    assert not Path(f"{path}-wal").exists()


def test_a_file_that_is_not_sqlite_is_refused_untouched(tmp_path):
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not a database, it is a shopping list\n" * 100)
    before = snapshot(path)
    with pytest.raises(JournalCorruptError):
        Journal.open(path)
    with pytest.raises(JournalCorruptError):
        JournalReader.open(path)
    assert snapshot(path) == before


async def test_a_newer_journal_is_refused_untouched(tmp_path):
    path = tmp_path / "j.db"
    await write(path, [level(1)])
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    before = snapshot(path)
    with pytest.raises(JournalVersionError, match="newer than this gateway"):
        Journal.open(path)
    with pytest.raises(JournalVersionError):
        JournalReader.open(path)
    assert snapshot(path) == before


async def test_an_old_schema_is_migrated_without_rewriting_events(tmp_path):
    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("BEGIN")
    MIGRATIONS[0](conn)  # the schema as version 1 shipped it
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 1")
    conn.execute("COMMIT")
    prev = GENESIS_HASH
    for seq in (1, 2, 3):
        payload = canonical_json({"level": seq, "previous": None})
        h = chain_hash(
            prev,
            seq=seq,
            event_id=f"id-{seq}",
            type_="FoodLevelChanged",
            occurred_at_ms=seq,
            clock_synced=True,
            origin="feeder",
            recovered=False,
            payload=payload,
        )
        conn.execute(
            "INSERT INTO events VALUES (?, ?, 'FoodLevelChanged', ?, 1, 'feeder', 0, ?, ?, ?)",
            (seq, f"id-{seq}", seq, payload, prev, h),
        )
        prev = h
    conn.execute("INSERT INTO cursors (sink, seq) VALUES ('feeder', 2)")
    rows_before = conn.execute("SELECT * FROM events ORDER BY seq").fetchall()
    conn.close()

    with pytest.raises(JournalVersionError, match="migrates it"):
        JournalReader.open(path)  # readers never migrate
    journal = Journal.open(path)
    journal.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    assert conn.execute("SELECT * FROM events ORDER BY seq").fetchall() == rows_before
    assert conn.execute("SELECT sink, seq, updated_at_ms FROM cursors").fetchall() == [
        ("feeder", 2, 0)
    ]
    conn.close()
    with JournalReader.open(path) as reader:
        assert reader.verify() == (3, None)


async def test_a_torn_tail_is_found_at_open_and_the_journal_set_aside(tmp_path):
    path = tmp_path / "j.db"
    events = await write(path, [level(1), level(2), level(3)])
    conn = copy_without_triggers(path, tmp_path / "torn.db")
    conn.execute("""UPDATE events SET payload = '{"level":0,"previous":null}' WHERE seq = 3""")
    conn.close()
    torn = tmp_path / "torn.db"
    before = torn.read_bytes()
    with pytest.raises(JournalCorruptError, match="seq 3: its fields do not match its hash"):
        Journal.open(torn)

    # The daemon sets it aside untouched and starts a new journal linked to its last hash.
    journal = Journal.open_or_set_aside(torn)
    journal.close()
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("torn.db.damaged-")]
    main_file = [p for p in aside if not p.name.endswith(("-wal", "-shm"))]
    assert len(main_file) == 1
    assert main_file[0].read_bytes() == before
    with JournalReader.open(torn) as reader:
        meta = reader.meta()
        assert reader.count() == 0
    assert meta["predecessor"] == main_file[0].name
    # Linked to the last hash that verifies (seq 2), numbered on from the highest seq shown.
    assert meta["genesis_hash"] == events[1].hash
    assert meta["base_seq"] == "3"


# --- feeding never waits on the disk --------------------------------------------------------


def _page_count(path: Path) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(conn.execute("PRAGMA page_count").fetchone()[0])
    finally:
        conn.close()


async def test_a_full_disk_holds_events_in_memory_and_records_them_as_recovered(tmp_path):
    path = tmp_path / "j.db"
    journal = Journal.open(path)
    journal.start()
    await journal.append(level(1))
    for _ in range(50):  # grow the file a little so the limit bites on the next commit
        await journal.append(level(2))
    journal.writer_pragma(f"PRAGMA max_page_count = {_page_count(path)}")

    held = [await asyncio.wait_for(journal.append(request(i)), timeout=5) for i in range(40)]
    assert any(e.held for e in held), "the disk limit never bit"
    first_held = next(e for e in held if e.held)
    assert journal.health.failing
    assert journal.health.held >= 1
    # Readers (the feeder sink) see held events, in order, right away.
    seen = journal.read_visible(first_held.seq - 1, limit=1000)
    assert [e.seq for e in seen] == list(range(first_held.seq, held[-1].seq + 1))

    journal.writer_pragma("PRAGMA max_page_count = 1073741823")
    await asyncio.wait_for(journal.wait_durable(held[-1].seq), timeout=10)
    assert not journal.health.failing
    assert journal.health.recovered_total >= 1
    await journal.aclose()

    with JournalReader.open(path) as reader:
        assert reader.verify() == (held[-1].seq, None)
        stored = reader.read_after(first_held.seq - 1, limit=1000)
    assert [e.seq for e in stored] == [e.seq for e in seen]
    assert all(e.recovered for e in stored if e.seq >= first_held.seq)
    assert [e.payload for e in stored] == [e.payload for e in seen]


async def test_events_the_disk_refuses_until_stop_are_spilled_and_written_at_next_open(
    tmp_path, caplog
):
    path = tmp_path / "j.db"
    journal = Journal.open(path)
    journal.STOP_GRACE_S = 0.2
    journal.start()
    for i in range(30):
        await journal.append(level(i))
    journal.writer_pragma(f"PRAGMA max_page_count = {_page_count(path)}")
    results = [await journal.append(request(i)) for i in range(40)]
    assert results[-1].held
    await asyncio.wait_for(journal.aclose(), timeout=10)
    assert journal.health.lost_at_stop == 0
    assert "in the spill file go in at the next start; 0 lost" in caplog.text
    held = [e for e in results if e.held]
    # The next open writes them with their own seqs and ids; the chain verifies.
    await write(path, [])
    with JournalReader.open(path) as reader:
        assert reader.verify() == (results[-1].seq, None)
        stored = [reader.get(e.seq) for e in held]
    assert [(e.event_id, e.recovered) for e in stored if e] == [(e.event_id, True) for e in held]


async def test_a_commit_that_reports_failure_but_reached_the_disk_is_not_written_twice(
    tmp_path, monkeypatch
):
    """SQLite can report an error from COMMIT after the transaction is durable. The retry must
    take those events as written, not trip the gapless trigger for ever."""
    path = tmp_path / "j.db"
    journal = Journal.open(path)
    real_commit = CommitThread._commit
    lied = []

    def commit_then_report_failure(self, items, cursors, letters):
        written = real_commit(self, items, cursors, letters)
        if not lied and items:
            lied.append(len(items))
            raise sqlite3.OperationalError("disk I/O error")
        return written

    monkeypatch.setattr(CommitThread, "_commit", commit_then_report_failure)
    journal.start()
    first = await journal.append(level(1))
    assert lied, "the failure was never injected"
    assert first.held  # the caller was told it was not durable ...
    later = await journal.append(level(2))
    await asyncio.wait_for(journal.wait_durable(later.seq), timeout=10)
    assert not journal.health.failing
    await journal.aclose()
    with JournalReader.open(path) as reader:
        assert reader.verify() == (2, None)
        stored = reader.read_after(0)
    assert [e.seq for e in stored] == [1, 2]
    assert not stored[0].recovered  # ... and the disk holds what that first commit wrote


async def test_when_the_spill_overflows_no_seq_is_reused_and_nothing_spilled_vanishes(
    tmp_path, monkeypatch
):
    """Beyond the spill's room, events are held in memory only: a stop loses those, but the
    fsynced high-water mark keeps their seqs from being given again, and the spilled ones stay
    in a copy beside the set-aside journal."""
    monkeypatch.setattr("gateway.journal.sidecar.SPILL_BYTES", 2048)  # room for a few events
    path = tmp_path / "j.db"
    journal = Journal.open(path)
    journal.STOP_GRACE_S = 0.1
    journal.start()
    for i in range(30):
        await journal.append(level(i))
    journal.writer_pragma(f"PRAGMA max_page_count = {_page_count(path)}")
    results = [await journal.append(request(i)) for i in range(40)]
    held = [e for e in results if e.held]
    assert len(held) > 10, "the disk limit never bit"
    await asyncio.wait_for(journal.aclose(), timeout=10)
    assert journal.health.lost_at_stop >= 1

    again = Journal.open_or_set_aside(path)
    again.start()
    after = await again.append(level(99))
    await again.aclose()
    assert after.seq > results[-1].seq  # no seq that was answered is given again
    spills = list(tmp_path.glob("j.db.damaged-*.spill"))
    assert len(spills) == 1
    assert held[0].event_id.encode() in spills[0].read_bytes()
    with JournalReader.open(path) as reader:
        assert reader.verify()[1] is None
