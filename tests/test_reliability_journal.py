"""Reliability under real faults, the journal's half (docs/reliability.md, faults 1-4).

Each test injects the fault itself, not an imitation: a small tmpfs filled to the last byte,
files cut and bytes overwritten on disk, the ``-wal`` file deleted under a running daemon,
SIGTERM and SIGKILL of the real ``fmfb run`` process. Each asserts the promise a person relies
on (nothing answered is lost, no seq is ever reused, the policy still refuses a press inside
the gap, no traceback), not how the code keeps it.

The tmpfs needs root (``mount -t tmpfs``): outside CI a machine without it skips those tests;
in CI (``CI`` set) they fail instead.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_process import DaemonProcess
from test_e2e import NotifyListener
from waiting import wait_for

from gateway.control import call
from gateway.devstack.mosquitto import Mosquitto
from gateway.journal import JournalReader

pytestmark = pytest.mark.e2e

# Feeds are refused within an hour of the last one per bowl: the policy state must survive.
GAP_POLICY = {"cap_per_bowl": 1000, "cap_period_s": 86_400, "min_gap_s": 3600}
TMPFS_SIZE = "4m"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 4 MiB tmpfs mounted for one test (the daemon's state directory goes on it)."""
    mount = tmp_path / "state"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"cannot mount a tmpfs in CI: {done.stderr.strip()}")
        pytest.skip(f"cannot mount a tmpfs here (root needed): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Write a file until the disk says ENOSPC; returns it (delete it to free the space)."""
    filler = disk / f"filler-{uuid.uuid4().hex[:6]}"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
        with contextlib.suppress(OSError):  # the last partial page
            while True:
                os.write(fd, b"\0")
    finally:
        os.close(fd)
    assert os.statvfs(disk).f_bavail == 0
    return filler


def feed(daemon: DaemonProcess, bowl: str) -> dict[str, Any]:
    answer = call(daemon.control_path, {"op": "feed", "bowls": [bowl]}, timeout_s=10.0)
    assert answer.get("ok"), answer
    event: dict[str, Any] = answer["event"]
    event["held"] = answer["held"]
    return event


def journal_status(daemon: DaemonProcess) -> dict[str, Any]:
    status: dict[str, Any] = daemon.status()["journal"]
    return status


def journal_id(path: Path) -> str:
    with JournalReader.open(path) as reader:
        return reader.meta()["journal_id"]


def all_events(path: Path) -> dict[int, Any]:
    with JournalReader.open(path) as reader:
        problem = reader.verify()[1]
        assert problem is None, problem
        return {e.seq: e for e in reader.query()}


def assert_no_traceback(daemon: DaemonProcess) -> None:
    assert "Traceback" not in daemon.stderr_text(), daemon.stderr_text()


def damaged_files(state: Path) -> list[Path]:
    return sorted(p for p in state.iterdir() if ".damaged-" in p.name and p.name[-4] != "-")


# --- fault 1: a full disk at start-up --------------------------------------------------------


def test_a_full_disk_at_start_up_feeds_degraded_and_continues_the_same_file(
    broker: Mosquitto, tmp_path: Path, small_disk: Path
) -> None:
    listener = NotifyListener()
    env = {"NOTIFY_SOCKET": str(listener.path)}
    daemon = DaemonProcess(broker.port, workdir=tmp_path, policy=GAP_POLICY, env=env)
    with daemon, contextlib.closing(listener):
        daemon.start()
        before = feed(daemon, "left")
        assert not before["held"]
        assert daemon.stop() == 0
        identity = journal_id(daemon.journal_path)
        filler = fill(small_disk)

        daemon.start()  # not exit 2, not a restart loop: it starts, degraded
        status = journal_status(daemon)
        assert status["disk_failing"], status
        # systemd hears it with READY: `systemctl status` shows the journal failing.
        wait_for(
            lambda: [
                d
                for d in listener.datagrams
                if "READY=1" in d.split("\n") and "JOURNAL FAILING" in d
            ],
            what="READY=1 with a STATUS saying the journal is failing",
        )
        # Feeding goes on, and the policy still remembers the feed before the restart.
        refused = feed(daemon, "left")
        assert refused["type"] == "FeedRejected"
        assert refused["payload"]["reason"] == "too-soon"
        fed = feed(daemon, "right")
        assert fed["type"] == "FeedRequested" and fed["held"]
        assert list(small_disk.glob("journal.db.damaged-*")) == []

        filler.unlink()  # space returns: the same file takes the held events
        freed = time.monotonic()
        wait_for(
            lambda: (
                not journal_status(daemon)["disk_failing"]
                and journal_status(daemon)["durable_seq"] >= fed["seq"]
            ),
            timeout=20,
            what="the held events to reach the journal",
        )
        print(f"fault 1: durable {time.monotonic() - freed:.2f} s after space returned")
        assert daemon.stop() == 0
    assert journal_id(daemon.journal_path) == identity  # the same journal, continued
    events = all_events(daemon.journal_path)
    assert events[before["seq"]].event_id == before["event_id"]
    assert events[fed["seq"]].event_id == fed["event_id"]
    assert events[fed["seq"]].recovered
    assert list(small_disk.glob("journal.db.damaged-*")) == []
    assert_no_traceback(daemon)


# --- fault 2: a full disk, then SIGTERM or SIGKILL -------------------------------------------


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGKILL"])
def test_events_answered_while_the_disk_is_full_survive_a_stop_with_their_seqs(
    broker: Mosquitto, tmp_path: Path, small_disk: Path, stop: str
) -> None:
    daemon = DaemonProcess(broker.port, workdir=tmp_path, policy=GAP_POLICY)
    with daemon:
        daemon.start()
        first = feed(daemon, "left")
        filler = fill(small_disk)
        held = [feed(daemon, "right"), feed(daemon, "right"), feed(daemon, "left")]
        assert all(e["held"] for e in held), held
        if stop == "SIGTERM":
            assert daemon.stop() == 0
        else:
            daemon.kill()

        daemon.start()  # the disk is still full
        assert journal_status(daemon)["disk_failing"]
        after = feed(daemon, "right")  # inside the gap of a held feed: refused
        assert after["payload"]["reason"] == "too-soon"
        answered = [first, *held, after]
        # No seq is given twice: the held ones kept theirs across the stop.
        assert len({e["seq"] for e in answered}) == len(answered)
        assert after["seq"] > max(e["seq"] for e in held)

        filler.unlink()
        wait_for(
            lambda: journal_status(daemon)["durable_seq"] >= after["seq"],
            timeout=20,
            what="the spilled and held events to reach the journal",
        )
        assert daemon.stop() == 0
    events = all_events(daemon.journal_path)
    print(f"fault 2 ({stop}): seqs {[e['seq'] for e in answered]} all in the journal")
    for e in answered:
        stored = events[e["seq"]]
        assert stored.event_id == e["event_id"], f"seq {e['seq']} holds another event"
    assert sorted(events) == list(range(1, max(events) + 1))
    assert_no_traceback(daemon)


# --- fault 3: damage of every kind ------------------------------------------------------------


def _cut_mid_last_page(path: Path, last_event_id: str) -> None:
    """Cut the file mid-way through the page that holds its last row (the file's last page
    may be an index's, whose loss no read of the events notices)."""
    page = _find_last(path, last_event_id.encode()) // 4096
    with path.open("r+b") as f:
        f.truncate(page * 4096 + 4096 // 2)


def _bad_page_2(path: Path) -> None:
    with path.open("r+b") as f:
        f.seek(4096)
        f.write(bytes(range(256)) * 16)


def _find_last(path: Path, needle: bytes) -> int:
    data = path.read_bytes()
    at = data.rfind(needle)
    assert at >= 0, f"{needle!r} not found in {path}"
    return at


def _bad_row_in_window(path: Path) -> None:
    at = _find_last(path, b'"bowls":["left"]')  # the last feed's payload, in the window
    with path.open("r+b") as f:
        f.seek(at + 2)
        f.write(b"X")


def _hash_not_utf8(path: Path, last_hash: str) -> None:
    at = _find_last(path, last_hash.encode())
    with path.open("r+b") as f:
        f.seek(at)
        f.write(b"\xff\xfe")


DAMAGE = ["cut mid-way through its last rows' page", "a bad row in the window", "a bad page 2"]
DAMAGE.append("a hash that is not UTF-8")


@pytest.mark.parametrize("damage", DAMAGE)
def test_damage_is_set_aside_byte_identical_and_the_policy_state_carried(
    broker: Mosquitto, tmp_path: Path, damage: str
) -> None:
    daemon = DaemonProcess(broker.port, workdir=tmp_path, policy=GAP_POLICY)
    with daemon:
        daemon.start()
        for _ in range(60):  # some history, so the file has pages to damage
            feed(daemon, "right")
        fed = feed(daemon, "left")
        assert fed["type"] == "FeedRequested"
        assert daemon.stop() == 0
        path = daemon.journal_path
        with JournalReader.open(path) as reader:
            last_seq = reader.last_seq()
            last = reader.get(last_seq)
        assert last is not None
        if damage.startswith("cut"):
            _cut_mid_last_page(path, last.event_id)
        elif damage.startswith("a bad row"):
            _bad_row_in_window(path)
        elif damage.startswith("a bad page"):
            _bad_page_2(path)
        else:
            _hash_not_utf8(path, last.hash)
        damaged = path.read_bytes()

        # verify names where it breaks, never a traceback
        out = daemon.cli("journal", "verify")
        assert out.returncode != 0
        assert "Traceback" not in out.stderr + out.stdout
        assert "seq" in out.stdout + out.stderr or "unreadable" in out.stdout + out.stderr

        print(f"fault 3 ({damage}): verify says {(out.stdout + out.stderr).strip()!r}")
        daemon.start()  # set aside, a new journal: not a restart loop
        aside = [p for p in path.parent.iterdir() if p.name.endswith(tuple("0123456789Z"))]
        aside = [p for p in aside if ".damaged-" in p.name]
        assert len(aside) == 1, sorted(p.name for p in path.parent.iterdir())
        assert aside[0].read_bytes() == damaged  # untouched
        status = daemon.status()["journal"]
        assert status["alert"] and "set aside" in status["alert"]
        # The policy remembers the feed from the damaged journal: inside the gap, refused.
        again = feed(daemon, "left")
        assert again["type"] == "FeedRejected", again
        assert again["payload"]["reason"] == "too-soon"
        # No seq the old journal showed (and a sink may have sent) is used again.
        assert again["seq"] > last_seq
        print(f"fault 3 ({damage}): old journal to seq {last_seq}, next seq {again['seq']}")
        assert daemon.stop() == 0
    with JournalReader.open(path) as reader:
        meta = reader.meta()
        assert reader.verify()[1] is None
    assert meta["predecessor"] == aside[0].name
    assert int(meta["base_seq"]) >= last_seq
    # Linked to the last hash that verifies in the damaged file.
    assert meta["genesis_hash"] != "0" * 64 or damage.startswith("a bad page")
    out = run_verify(daemon, aside[0])
    assert out.returncode != 0 and "Traceback" not in out.stderr
    # The successor's first row checks out for the tools too: it links to its genesis hash.
    first = int(meta["base_seq"]) + 1
    shown = daemon.cli("journal", "show", str(first), "--json")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert '"link_ok": true' in shown.stdout
    assert_no_traceback(daemon)


def run_verify(daemon: DaemonProcess, path: Path) -> subprocess.CompletedProcess[str]:
    from daemon_process import run_fmfb  # noqa: PLC0415

    return run_fmfb("journal", "verify", "--journal", path)


# --- fault 4: the -wal file deleted under a running daemon, then a crash --------------------


def test_a_lost_wal_is_detected_and_no_seq_is_reused(broker: Mosquitto, tmp_path: Path) -> None:
    daemon = DaemonProcess(broker.port, workdir=tmp_path)
    with daemon:
        daemon.start()
        for _ in range(10):
            feed(daemon, "left")
        assert daemon.stop() == 0  # a clean stop: the main file holds these
        daemon.start()
        wal = Path(f"{daemon.journal_path}-wal")
        wait_for(wal.exists, what="the WAL file")
        wal.unlink()
        answered = [feed(daemon, "right") for _ in range(40)]
        assert not any(e["held"] for e in answered)
        daemon.kill()

        daemon.start()
        highest = max(e["seq"] for e in answered)
        status = daemon.status()["journal"]
        assert status["alert"], status  # said loudly: in the status ...
        assert "CRITICAL" in daemon.stderr_text()  # ... and the log
        after = feed(daemon, "right")
        assert after["seq"] > highest, "a seq a sink may have sent is used again"
        print(f"fault 4: answered up to seq {highest}; after the kill, next seq {after['seq']}")
        assert daemon.stop() == 0
    with JournalReader.open(daemon.journal_path) as reader:
        assert reader.verify()[1] is None
        assert int(reader.meta()["base_seq"]) >= highest
    assert_no_traceback(daemon)


def test_verify_on_an_unreadable_file_reports_instead_of_crashing(tmp_path: Path) -> None:
    from daemon_process import run_fmfb  # noqa: PLC0415

    path = tmp_path / "j.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA application_id = 1179469378")  # "FMFB"
    conn.execute("PRAGMA user_version = 4")
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    out = run_fmfb("journal", "verify", "--journal", path)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr, out.stderr
