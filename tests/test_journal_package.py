"""The journal package's boundaries: who may touch its tables, what each module may import,
and where the daemon's appender answers differently from a reader."""

from __future__ import annotations

import ast
import json
import re
import sqlite3
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from waiting import wait_for

from gateway.backoff import Backoff
from gateway.clock import FixedClock
from gateway.errors import JournalCorruptError
from gateway.events import FoodLevelChanged, Origin, canonical_json
from gateway.journal import EventFilter, Journal, JournalReader, OwnCursor, open_new_event

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "gateway" / "journal"

# SQL that reads or writes one of the journal's own tables.
JOURNAL_SQL = re.compile(
    r"\b(FROM|INTO|UPDATE|JOIN|TABLE)\s+\"?(events|cursors|dead_letters|meta)\b\"?(?!\w)"
)
# Benchmarks that build their own databases. Each reason fits on a line.
ALLOWED_OUTSIDE = {
    # generates a million-row journal in big transactions: the journal's API appends durably,
    # one group commit at a time, which would take the benchmark's whole budget
    "bench/verify_and_project.py",
    # its bare-SQLite baselines write their own files, with the journal's schema or a stub
    "bench/journal_append.py",
}


def _sources() -> list[Path]:
    return sorted([*(ROOT / "gateway").rglob("*.py"), *(ROOT / "bench").rglob("*.py")])


def test_no_module_outside_the_package_runs_sql_against_the_journals_tables():
    offenders = []
    for path in _sources():
        rel = path.relative_to(ROOT).as_posix()
        if path.is_relative_to(PACKAGE) or rel in ALLOWED_OUTSIDE:
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if JOURNAL_SQL.search(line):
                offenders.append(f"{rel}:{n}: {line.strip()}")
    assert offenders == [], "go through gateway.journal's API:\n" + "\n".join(offenders)


def test_the_guard_would_catch_a_query():
    assert JOURNAL_SQL.search('conn.execute("SELECT hash FROM events WHERE seq = ?")')
    assert JOURNAL_SQL.search("INSERT INTO cursors (sink, seq) VALUES (?, ?)")
    assert not JOURNAL_SQL.search("SELECT x.seq FROM outcomes AS x")  # a projection's own
    assert not JOURNAL_SQL.search("events from the journal")  # prose, lower case


# What each module may import from the package. Reading never loads the writer, the chain and
# the schema are leaves, and only the appender composes the writer thread with a reader.
ALLOWED_IMPORTS = {
    "chain": set(),
    "schema": set(),
    "rows": {"chain"},
    "ids": set(),
    "filter": set(),
    "files": {"chain", "schema"},
    "cursors": {"files"},
    "verify": {"chain", "rows"},
    "reader": {"chain", "cursors", "files", "filter", "rows", "schema", "verify"},
    "sidecar": set(),
    "opening": {"chain", "files", "rows", "schema", "sidecar"},
    "writer": {"chain", "cursors", "rows", "sidecar"},
    "appender": {
        "chain",
        "cursors",
        "files",
        "ids",
        "opening",
        "reader",
        "sidecar",
        "writer",
    },
}


def _package_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith("gateway.journal."):
                found.add(node.module.removeprefix("gateway.journal."))
            elif node.module == "gateway.journal":
                found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize("module", sorted(ALLOWED_IMPORTS))
def test_each_module_imports_only_what_its_job_needs(module):
    assert _package_imports(PACKAGE / f"{module}.py") <= ALLOWED_IMPORTS[module]


def test_every_module_of_the_package_is_listed_and_small():
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert modules == set(ALLOWED_IMPORTS)
    for path in PACKAGE.glob("*.py"):
        assert len(path.read_text().splitlines()) <= 500, path.name


def test_the_package_exports_every_name_imported_from_it():
    import gateway.journal as package  # noqa: PLC0415

    used = set()
    for path in [*_sources(), *(ROOT / "tests").glob("*.py")]:
        if path.is_relative_to(PACKAGE):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "gateway.journal":
                used.update(alias.name for alias in node.names)
    assert used <= set(package.__all__)
    for name in package.__all__:
        assert hasattr(package, name), name


# --- where the appender and a reader answer differently --------------------------------------


def level(n: int, at: int = 1_800_000_000_000):
    return open_new_event(
        FoodLevelChanged(level=n), origin=Origin.FEEDER, now_ms=at, clock_synced=True
    )


def test_reading_loads_neither_the_writer_nor_asyncio():
    """``fmfb journal list`` pays only for what reading needs (start-up on a Pi)."""
    code = (
        "import sys; from gateway.journal import JournalReader; "
        "print(sorted({'asyncio', 'uuid6', 'ctypes', 'gateway.journal.writer'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_appender_is_not_a_reader():
    """Composition: the two answers that differ have different names."""
    assert not issubclass(Journal, JournalReader)
    assert not hasattr(Journal, "read_after")
    assert not hasattr(Journal, "cursor")


async def test_a_saved_cursor_is_not_on_disk_until_the_writer_commits_it(tmp_path):
    clock = FixedClock(now_ms=1_700_000_000_000)
    journal = Journal.open(tmp_path / "j.db", clock=clock)
    journal.CURSOR_FLUSH_S = 60  # nothing commits the cursor alone during the test
    journal.start()
    event = await journal.append(level(1))
    journal.register_cursor("feeder", start_at=0)
    journal.save_cursor("feeder", event.seq)
    journal.add_dead_letter("feeder", event.seq, "refused")
    assert journal.saved_cursor("feeder") == event.seq
    assert journal.reader.cursor("feeder") is None  # not written yet
    await journal.aclose()  # stopping commits what is waiting
    with JournalReader.open(tmp_path / "j.db") as reader:
        (info,) = reader.cursors()
        assert (info.sink, info.seq) == ("feeder", event.seq)
        assert info.updated_at_ms == clock.now_ms()  # time comes from the Clock
        assert reader.dead_letters() == [("feeder", event.seq, "refused", clock.now_ms())]


async def test_read_visible_serves_from_memory_what_read_after_reads_from_disk(tmp_path):
    journal = Journal.open(tmp_path / "j.db")
    journal.start()
    written = [await journal.append(level(i)) for i in range(5)]
    assert journal.read_visible(0) == journal.reader.read_after(0) == written
    assert journal.read_visible(2, upto=4) == written[2:4]
    await journal.aclose()


def test_the_retry_back_off_is_a_backoff(tmp_path):
    journal = Journal.open(tmp_path / "j.db")
    assert isinstance(journal.retry, Backoff)
    assert (journal.retry.first_s, journal.retry.max_s) == (
        Journal.RETRY_FIRST_S,
        Journal.RETRY_MAX_S,
    )
    journal.close()


async def test_a_replays_own_cursor_and_count(tmp_path):
    path = tmp_path / "j.db"
    journal = Journal.open(path)
    journal.start()
    for i in range(10):
        await journal.append(level(i, at=1_800_000_000_000 + i))
    await journal.aclose()
    clock = FixedClock(now_ms=1_700_000_000_123)
    own = OwnCursor(path, "replay:r", clock)
    try:
        assert own.get() is None
        own.save(7)
        assert own.get() == 7
    finally:
        own.close()
    with JournalReader.open(path) as reader:
        assert reader.cursor("replay:r") == 7
        assert reader.cursors()[0].updated_at_ms == clock.now_ms()
        since = 1_800_000_000_003
        assert reader.count(EventFilter(from_seq=3, since_ms=since)) == len(
            list(reader.query(EventFilter(from_seq=3, since_ms=since)))
        )
        assert reader.count() == 10


@given(st.dictionaries(st.text(), st.one_of(st.text(), st.integers(), st.booleans(), st.none())))
def test_the_stored_payload_text_is_json_dumps_with_the_canonical_options(data):
    """canonical_json keeps one encoder (for speed); its text must not change, or new rows
    would hash differently from old ones written with json.dumps."""
    expected = json.dumps(data, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    assert canonical_json(data) == expected


def test_the_package_is_shipped():
    """setuptools lists packages by name: a package missing from the list is left out of a
    wheel while every test (run from the checkout) still passes."""
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "gateway").rglob("__init__.py")
    }
    assert found <= listed


async def test_a_cursor_rides_with_the_next_commit(tmp_path):
    journal = Journal.open(tmp_path / "j.db")
    journal.CURSOR_FLUSH_S = 60  # only an event's commit can take it
    journal.start()
    first = await journal.append(level(1))
    journal.register_cursor("feeder", start_at=0)
    journal.save_cursor("feeder", first.seq)
    commits = journal.health.commits
    await journal.append(level(2))
    assert journal.health.commits == commits + 1  # one fsync for the event and the cursor
    assert journal.reader.cursor("feeder") == first.seq
    await journal.aclose()


async def test_a_cursor_alone_is_written_after_the_flush_time(tmp_path):
    journal = Journal.open(tmp_path / "j.db")
    journal.CURSOR_FLUSH_S = 0.05
    journal.start()
    event = await journal.append(level(1))
    journal.register_cursor("feeder", start_at=0)
    journal.save_cursor("feeder", event.seq)
    wait_for(lambda: journal.reader.cursor("feeder") == event.seq, what="the cursor on disk")
    assert journal.durable_seq == event.seq  # no event was written to carry it
    await journal.aclose()


async def test_a_journal_unreadable_past_its_header_is_refused_as_corrupt_and_left_unlocked(
    tmp_path,
):
    path = tmp_path / "j.db"
    journal = Journal.open(path)
    journal.start()
    await journal.append(level(1))
    await journal.aclose()
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE meta")  # still marked as a journal; its meta is gone
    conn.close()
    for _ in range(2):  # the second try is refused the same way: the lock was released
        with pytest.raises(JournalCorruptError):
            Journal.open(path)
    replacement = Journal.open_or_set_aside(path)
    assert replacement.reader.meta()["predecessor"].startswith("j.db.damaged-")
    replacement.close()
