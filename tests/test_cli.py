"""The ``fmfb`` command line, run as a real process: help, exit codes, config errors, and the
journal commands against a running daemon and against copied, tampered and foreign files."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_process import HIGH_CAPS, LOW_LIMITS, DaemonProcess, run_fmfb, toml_text

from gateway.devstack.mosquitto import Mosquitto

ACCEPTED = re.compile(r"^accepted: feed (\S+) \(seq (\d+), request ([0-9a-f-]{36})\)", re.M)


def isolated_topics() -> dict[str, str]:
    """Topics of its own, so a daemon on the shared session broker disturbs no other test."""
    base = f"fmfb-test/cli-{uuid.uuid4().hex[:8]}"
    return {
        "action": f"{base}/action",
        "dispensed": f"{base}/dispensed",
        "states": f"{base}/states",
        "availability": f"{base}/availability",
    }


@pytest.fixture(scope="module")
def running(
    broker_session: Mosquitto, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DaemonProcess]:
    """One daemon for the module's read-mostly tests (high caps: every feed is accepted)."""
    with DaemonProcess(
        broker_session.port,
        workdir=tmp_path_factory.mktemp("cli-gw"),
        policy=HIGH_CAPS,
        extra_config={"topics": isolated_topics()},
    ) as daemon:
        daemon.start()
        yield daemon


def feed(daemon: DaemonProcess, bowls: str = "left") -> tuple[int, str]:
    """``fmfb feed BOWLS``; returns the accepted seq and request id."""
    done = daemon.cli("feed", bowls)
    assert done.returncode == 0, done.stdout + done.stderr
    m = ACCEPTED.search(done.stdout)
    assert m, done.stdout
    return int(m.group(2)), m.group(3)


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def write_config(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --- help ------------------------------------------------------------------------------------


def test_top_level_help_lists_the_commands() -> None:
    done = run_fmfb("--help")
    assert done.returncode == 0, done.stderr
    for word in ("run", "feed", "press", "status", "journal", "config", "Usage:"):
        assert word in done.stdout


HELP_CASES = [
    (["run"], ["daemon", "SIGTERM", "--config"]),
    (["feed"], ["BOWLS", "left", "right", "both", "--portion-ms", "Exit status"]),
    (["press"], ["BUTTON", "SINGLE", "DOUBLE", "LONG"]),
    (["status"], ["--json", "sinks"]),
    (["journal"], ["list", "pending", "verify", "seq"]),
    (["journal", "list"], ["--type", "--since", "--until", "--limit", "--json", "--journal"]),
    (["journal", "pending"], ["cursor", "--json"]),
    (["journal", "verify"], ["hash chain", "--journal"]),
    (["config"], ["check", "show"]),
    (["config", "check"], ["Validate"]),
    (["config", "show"], ["JSON"]),
]


@pytest.mark.parametrize(
    ("command", "words"), HELP_CASES, ids=["-".join(command) for command, _ in HELP_CASES]
)
def test_each_subcommand_has_help(command: list[str], words: list[str]) -> None:
    done = run_fmfb(*command, "--help")
    assert done.returncode == 0, done.stderr
    assert f"Usage: fmfb {' '.join(command)}" in done.stdout
    for word in words:
        assert word in done.stdout, f"{word!r} not in `fmfb {' '.join(command)} --help`"


def test_version_and_console_script() -> None:
    done = run_fmfb("--version")
    assert done.returncode == 0
    assert re.search(r"fmfb, version \d+\.\d+", done.stdout), done.stdout
    # The installed console script is the same entry point.
    script = Path(sys.executable).parent / "fmfb"
    found = str(script) if script.exists() else shutil.which("fmfb")
    assert found, "the fmfb console script is not installed"
    env = {**os.environ, "AWS_EC2_METADATA_DISABLED": "true"}
    import subprocess  # noqa: PLC0415 - only this test runs the script directly

    scripted = subprocess.run(
        [found, "--version"], capture_output=True, text=True, timeout=30, env=env, check=False
    )
    assert scripted.returncode == 0, scripted.stderr
    assert scripted.stdout == done.stdout


# --- configuration errors --------------------------------------------------------------------


def test_unknown_key_is_named_and_nothing_starts(tmp_path: Path) -> None:
    state = tmp_path / "state"
    bad = write_config(
        tmp_path / "bad.toml",
        toml_text({"state_dir": str(state), "broker": {"port": 1}, "polcy": {"min_gap_s": 0}}),
    )
    done = run_fmfb("run", "--config", bad, timeout=30)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "polcy" in done.stderr
    assert "unknown key" in done.stderr
    assert "Traceback" not in done.stderr
    assert not state.exists()  # refused before anything was created

    nested = write_config(tmp_path / "nested.toml", "[policy]\nmin_gap = 5\n")
    done = run_fmfb("config", "check", "--config", nested)
    assert done.returncode == 2
    assert "policy.min_gap" in done.stderr


def test_wrong_type_is_named(tmp_path: Path) -> None:
    bad = write_config(tmp_path / "bad.toml", '[policy]\nmin_gap_s = "sixty"\n')
    done = run_fmfb("run", "--config", bad)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "policy.min_gap_s" in done.stderr
    assert "Traceback" not in done.stderr

    port = write_config(tmp_path / "port.toml", "[broker]\nport = 70000\n")
    done = run_fmfb("config", "check", "--config", port)
    assert done.returncode == 2
    assert "broker.port" in done.stderr


def test_missing_or_unparsable_config_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.toml"
    done = run_fmfb("run", "--config", missing)
    assert done.returncode == 2
    assert str(missing) in done.stderr
    assert "cannot read" in done.stderr
    assert "Traceback" not in done.stderr

    broken = write_config(tmp_path / "broken.toml", "[policy\nmin_gap_s = 1\n")
    done = run_fmfb("config", "check", "--config", broken)
    assert done.returncode == 2
    assert "not valid TOML" in done.stderr


# --- talking to the daemon -------------------------------------------------------------------


def test_feed_with_no_daemon_running_exits_3(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.toml", toml_text({"state_dir": str(tmp_path / "state")}))
    done = run_fmfb("feed", "left", "--config", cfg)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "no gateway is running" in done.stderr
    status = run_fmfb("status", "--config", cfg)
    assert status.returncode == 3


def test_a_gateway_running_with_another_config_is_named(
    broker_session: Mosquitto, tmp_path: Path
) -> None:
    other = write_config(tmp_path / "c.toml", toml_text({"state_dir": str(tmp_path / "state")}))
    with DaemonProcess(broker_session.port, workdir=tmp_path / "gw") as daemon:
        daemon.start()
        done = run_fmfb("status", "--config", other)
        assert done.returncode == 3, done.stdout + done.stderr
        assert f"(the socket named by {other})" in done.stderr
        assert f"a gateway runs with --config {daemon.config_path} (pid {daemon.pid})" in (
            done.stderr
        )


def test_refused_feed_exits_1_with_its_reason(broker_session: Mosquitto, tmp_path: Path) -> None:
    with DaemonProcess(
        broker_session.port,
        workdir=tmp_path / "gw",
        policy=LOW_LIMITS,
        extra_config={"topics": isolated_topics()},
    ) as daemon:
        daemon.start()
        first = daemon.cli("feed", "left")
        assert first.returncode == 0, first.stderr
        again = daemon.cli("feed", "left")
        assert again.returncode == 1, again.stdout + again.stderr
        assert "refused: feed left: too-soon" in again.stdout
        # LOW_LIMITS: 3600 s apart, so the next is allowed in just under an hour.
        assert "next feed of left allowed at " in again.stdout
        assert "(in 59m" in again.stdout, again.stdout
        assert [e.type.value for e in daemon.events(["FeedRequested", "FeedRejected"])] == [
            "FeedRequested",
            "FeedRejected",
        ]


def test_press_unknown_button_names_the_known_ones(running: DaemonProcess) -> None:
    before = running.status()["journal"]["seq"]
    done = running.cli("press", "nosuchbutton", "SINGLE")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "nosuchbutton" in done.stderr
    assert running.button_name in done.stderr
    assert running.status()["journal"]["seq"] == before  # nothing journaled

    pressed = running.cli("press", running.button_name, "double")
    assert pressed.returncode == 0, pressed.stderr
    assert "accepted: feed right" in pressed.stdout


def test_status_and_journal_reads_while_running_do_not_block_it(running: DaemonProcess) -> None:
    status = running.cli("status")
    assert status.returncode == 0, status.stderr
    assert "journal" in status.stdout
    assert "feeder" in status.stdout
    as_json = json.loads(running.cli("status", "--json").stdout)
    assert as_json["pid"] == running.pid

    listed = running.cli("journal", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    events = json_lines(listed.stdout)
    assert events, "no events listed"
    assert events[0]["type"] == "GatewayStarted"
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs)
    assert {"seq", "event_id", "type", "occurred_at_ms", "payload", "hash"} <= events[0].keys()

    pending = running.cli("journal", "pending")
    assert pending.returncode == 0, pending.stderr
    assert re.search(r"^feeder\s+cursor\s+\d+", pending.stdout, re.M), pending.stdout
    rows = json_lines(running.cli("journal", "pending", "--json").stdout)
    assert [r["sink"] for r in rows] == ["feeder"]
    assert isinstance(rows[0]["cursor"], int)
    assert rows[0]["last_seq"] >= seqs[-1]

    # The readers are gone and the daemon still journals: a press after listing works.
    seq, request_id = feed(running, "both")
    assert seq > seqs[-1]
    after = json_lines(running.cli("journal", "list", "--json", "--limit", "1").stdout)
    assert len(after) == 1
    assert after[0]["seq"] == seq
    assert after[0]["type"] == "FeedRequested"
    payload = after[0]["payload"]
    assert isinstance(payload, dict)
    assert payload["request_id"] == request_id
    assert payload["bowls"] == ["left", "right"]


def test_journal_list_filters_by_type_and_time(running: DaemonProcess) -> None:
    fed = [feed(running, "left")[0], feed(running, "right")[0]]
    only = json_lines(
        running.cli("journal", "list", "--type", "FeedRequested", "--since", "1h", "--json").stdout
    )
    assert only
    assert {e["type"] for e in only} == {"FeedRequested"}
    assert set(fed) <= {e["seq"] for e in only}
    everything = json_lines(running.cli("journal", "list", "--json", "--limit", "1000").stdout)
    assert {e["type"] for e in everything} > {"FeedRequested"}  # the filter removed something

    future = running.cli("journal", "list", "--since", "2099-01-01")
    assert future.returncode == 0, future.stderr
    assert future.stdout == ""
    assert "no events match" in future.stderr
    old = json_lines(running.cli("journal", "list", "--until", "1h", "--json").stdout)
    assert old == []

    bad = running.cli("journal", "list", "--since", "yesterday-ish")
    assert bad.returncode == 2
    assert "ISO 8601" in bad.stderr


# --- verify, tampering, foreign files --------------------------------------------------------


def sqlite_copy(source: Path, target: Path) -> None:
    """A consistent copy with SQLite's backup API (safe while the daemon writes)."""
    src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


def test_verify_passes_then_finds_a_tampered_row(running: DaemonProcess, tmp_path: Path) -> None:
    seq, _ = feed(running, "left")
    good = running.cli("journal", "verify")
    assert good.returncode == 0, good.stdout + good.stderr
    assert re.search(r"^ok: \d+ rows", good.stdout), good.stdout

    copy = tmp_path / "copy.db"
    sqlite_copy(running.journal_path, copy)
    assert run_fmfb("journal", "verify", "--journal", copy).returncode == 0

    conn = sqlite3.connect(copy, isolation_level=None)
    try:
        tampered = '{"bowls":["left","right"]}'
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("UPDATE events SET payload = ? WHERE seq = ?", (tampered, seq))
        conn.execute("DROP TRIGGER events_no_update")
        conn.execute("UPDATE events SET payload = ? WHERE seq = ?", (tampered, seq))
    finally:
        conn.close()

    broken = run_fmfb("journal", "verify", "--journal", copy)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert f"seq {seq}" in broken.stdout
    assert "BROKEN" in broken.stdout
    # The live journal is untouched and still verifies.
    assert running.cli("journal", "verify").returncode == 0


def test_non_journal_files_are_refused_and_left_untouched(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    content = b"this is not an sqlite journal\x00\xff" * 200
    garbage.write_bytes(content)
    before = sorted(p.name for p in tmp_path.iterdir())
    for command in (["journal", "list"], ["journal", "verify"], ["journal", "pending"]):
        done = run_fmfb(*command, "--journal", garbage)
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        assert str(garbage) in done.stderr
        assert "journal" in done.stderr
        assert "Traceback" not in done.stderr
    assert garbage.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no -wal, -shm or lock made

    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("PRAGMA application_id = 12345")
    conn.execute("CREATE TABLE notes (x)")
    conn.commit()
    conn.close()
    other_bytes = other.read_bytes()
    done = run_fmfb("journal", "list", "--journal", other)
    assert done.returncode == 2
    assert "another application" in done.stderr
    assert other.read_bytes() == other_bytes

    missing = run_fmfb("journal", "list", "--journal", tmp_path / "none.db")
    assert missing.returncode == 2
    assert "no such journal" in missing.stderr
