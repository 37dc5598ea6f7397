"""``fmfb journal list | show | tail | stats | export | chart | verify`` against a journal written
by the real daemon (a subprocess), while it runs and on a copy of its file.

One daemon for the module, driven as a person would: feeds with ``fmfb feed`` and ``fmfb press``,
and a fake feeder on the broker reporting availability, food level and one dispensed feed. The
known figures: accepted left 2 (cli), right 2 (cli, button); one rejection (cap); one feed
confirmed (left); food level 80 then 60; the feeder online throughout.
"""

from __future__ import annotations

import csv
import io
import json
import queue
import re
import sqlite3
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from daemon_process import FMFB, DaemonProcess, fmfb_env, run_fmfb
from e2e_probe import Probe
from waiting import wait_for

from gateway import cli
from gateway.commands import journal as journal_commands
from gateway.devstack.mosquitto import Mosquitto
from gateway.journal import EventFilter

ACCEPTED = re.compile(r"^accepted: feed (\S+) \(seq (\d+), request ([0-9a-f-]{36})\)", re.M)
POLICY = {"cap_per_bowl": 2, "cap_period_s": 86_400, "min_gap_s": 0}


@dataclass
class Scene:
    daemon: DaemonProcess
    topics: dict[str, str]
    feeds: list[tuple[str, int, str]]  # (bowls, seq, request id) accepted
    rejected_seq: int
    last_seq: int  # the journal's seq once the scene was set


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def accepted(done: subprocess.CompletedProcess[str]) -> tuple[int, str]:
    assert done.returncode == 0, done.stdout + done.stderr
    m = ACCEPTED.search(done.stdout)
    assert m, done.stdout
    return int(m.group(2)), m.group(3)


def journaled(done: subprocess.CompletedProcess[str]) -> int:
    """The seq a feed or press was journaled at, accepted or refused."""
    m = re.search(r"\(seq (\d+)", done.stdout)
    assert m, done.stdout + done.stderr
    return int(m.group(1))


def types_in(daemon: DaemonProcess) -> list[str]:
    return [e.type.value for e in daemon.events()]


@pytest.fixture(scope="module")
def scene(broker_session: Mosquitto, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    base = f"fmfb-test/inspect-{uuid.uuid4().hex[:8]}"
    topics = {k: f"{base}/{k}" for k in ("action", "dispensed", "states", "availability")}
    with (
        DaemonProcess(
            broker_session.port,
            workdir=tmp_path_factory.mktemp("inspect-gw"),
            policy=POLICY,
            extra_config={"topics": topics},
        ) as daemon,
        Probe(broker_session.host, broker_session.port) as feeder,
    ):
        daemon.start()
        daemon.wait_feeder_connected()
        feeder.publish(topics["availability"], b"online")
        feeder.publish(topics["states"], b'{"food_capacity": 80}')
        wait_for(lambda: "FoodLevelChanged" in types_in(daemon), what="the first food level")

        feeds = []
        for bowl in ("left", "left", "right"):
            seq, rid = accepted(daemon.cli("feed", bowl))
            feeds.append((bowl, seq, rid))
        refused = daemon.cli("feed", "left")
        assert refused.returncode == 1, refused.stdout + refused.stderr
        rejected_seq = journaled(refused)
        seq, rid = accepted(daemon.cli("press", daemon.button_name, "DOUBLE"))
        feeds.append(("right", seq, rid))

        served = {"id": feeds[0][2], "status": "served", "bowls": ["left"], "ran_ms": 800}
        feeder.publish(topics["dispensed"], json.dumps(served))
        feeder.publish(topics["states"], b'{"food_capacity": 60}')
        wait_for(
            lambda: (
                {"FeedDispensed"} <= set(types_in(daemon))
                and types_in(daemon).count("FoodLevelChanged") == 2
            ),
            what="the dispensed feed and the second food level",
        )
        yield Scene(daemon, topics, feeds, rejected_seq, daemon.status()["journal"]["seq"])


def sqlite_copy(source: Path, target: Path) -> None:
    src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


# --- list: filters ---------------------------------------------------------------------------


def test_list_filters_by_origin_seq_range_and_type(scene: Scene) -> None:
    d = scene.daemon
    by_cli = json_lines(d.cli("journal", "list", "--origin", "cli", "--json").stdout)
    assert by_cli
    assert {e["origin"] for e in by_cli} == {"cli"}
    assert {s for _, s, _ in scene.feeds[:3]} <= {e["seq"] for e in by_cli}

    both = json_lines(
        d.cli("journal", "list", "--origin", "cli", "--origin", "button", "--json").stdout
    )
    assert {e["origin"] for e in both} == {"cli", "button"}
    assert scene.feeds[3][1] in {e["seq"] for e in both}

    ranged = json_lines(
        d.cli("journal", "list", "--from-seq", "2", "--to-seq", "5", "--json").stdout
    )
    assert [e["seq"] for e in ranged] == [2, 3, 4, 5]

    requested_by_button = json_lines(
        d.cli("journal", "list", "--type", "FeedRequested", "--origin", "button", "--json").stdout
    )
    assert [e["seq"] for e in requested_by_button] == [scene.feeds[3][1]]

    limited = json_lines(
        d.cli("journal", "list", "--origin", "cli", "--limit", "2", "--json").stdout
    )
    assert [e["seq"] for e in limited] == [e["seq"] for e in by_cli[-2:]]

    table = d.cli("journal", "list", "--to-seq", str(scene.last_seq))
    assert table.returncode == 0, table.stderr
    assert re.search(
        rf"^\s+{scene.rejected_seq}\s.*\sFeedRejected\s.*reason=cap", table.stdout, re.M
    )


def test_list_help_says_seq_is_the_order() -> None:
    done = run_fmfb("journal", "list", "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    for word in ("--origin", "--from-seq", "--to-seq", "--since", "--until", "--json"):
        assert word in text
    assert "seq, not time, is the journal's order" in text
    assert "not synchronised" in text


# --- show ------------------------------------------------------------------------------------


def test_show_by_seq_and_by_event_id(scene: Scene, tmp_path: Path) -> None:
    d = scene.daemon
    _, seq, rid = scene.feeds[0]
    shown = d.cli("journal", "show", str(seq))
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert re.search(rf"^seq\s+{seq}$", shown.stdout, re.M)
    assert re.search(r"^type\s+FeedRequested$", shown.stdout, re.M)
    assert re.search(r"^hash check\s+ok$", shown.stdout, re.M)
    assert re.search(r"^chain link\s+ok$", shown.stdout, re.M)
    assert f'"request_id": "{rid}"' in shown.stdout  # payload, pretty

    as_json = json.loads(d.cli("journal", "show", str(seq), "--json").stdout)
    with d.reader() as reader:
        event = reader.get(seq)
        before = reader.get(seq - 1)
    assert event is not None
    assert before is not None
    assert as_json == {**event.to_dict(), "hash_ok": True, "link_ok": True}
    assert as_json["prev_hash"] == before.hash
    assert re.search(rf"^hash\s+{event.hash}$", shown.stdout, re.M)
    assert re.search(rf"^prev_hash\s+{before.hash}$", shown.stdout, re.M)

    by_id = d.cli("journal", "show", event.event_id, "--json")
    assert by_id.returncode == 0, by_id.stderr
    assert json.loads(by_id.stdout) == as_json

    missing = d.cli("journal", "show", "999999")
    assert missing.returncode == 2
    assert "no event '999999'" in missing.stderr

    # On a copy with the row edited behind the triggers' back, show says so (exit 1).
    copy = tmp_path / "copy.db"
    sqlite_copy(d.journal_path, copy)
    conn = sqlite3.connect(copy, isolation_level=None)
    conn.execute("DROP TRIGGER events_no_update")
    conn.execute("UPDATE events SET origin = 'cloud' WHERE seq = ?", (seq,))
    conn.close()
    bad = run_fmfb("journal", "show", str(seq), "--journal", copy)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert re.search(r"^hash check\s+MISMATCH", bad.stdout, re.M)


# --- tail -f ---------------------------------------------------------------------------------


def test_tail_follow_sees_an_event_appended_after_it_started(scene: Scene) -> None:
    d = scene.daemon
    last = run_fmfb("journal", "tail", "-n", "3", "--json", "--config", d.config_path)
    assert last.returncode == 0, last.stderr
    shown = [e["seq"] for e in json_lines(last.stdout)]
    assert len(shown) == 3
    assert shown == sorted(shown)

    proc = subprocess.Popen(
        [*FMFB, "journal", "tail", "-f", "-n", "2", "--json", "--config", str(d.config_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=fmfb_env(),
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        first = [json.loads(lines.get(timeout=20)) for _ in range(2)]
        assert first[1]["seq"] > first[0]["seq"]
        # Both bowls are at their cap by now: the refusal is the new event.
        seq = journaled(d.cli("feed", "right"))
        seen: list[dict[str, Any]] = []
        while not any(e["seq"] == seq for e in seen):
            seen.append(json.loads(lines.get(timeout=20)))
        new = next(e for e in seen if e["seq"] == seq)
        assert new["type"] == "FeedRejected"
        assert new["payload"]["reason"] == "cap"
        assert all(e["seq"] > first[1]["seq"] for e in seen)
    finally:
        proc.terminate()
        code = proc.wait(timeout=10)
    assert code == 0, proc.stderr.read() if proc.stderr else ""


# --- stats and chart -------------------------------------------------------------------------


def test_stats_figures_match_the_known_presses(scene: Scene) -> None:
    d = scene.daemon
    args = ("--to-seq", str(scene.last_seq))
    stats = json.loads(d.cli("journal", "stats", "--json", *args).stdout)
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    assert stats["feeds_per_day"] == [
        {"day": today, "requested": {"left": 2, "right": 2}, "dispensed": {"left": 1, "right": 0}}
    ]
    assert stats["rejections"] == {"cap": 1}
    assert stats["unconfirmed"] == 0
    assert [p["level"] for p in stats["food_levels"]] == [80, 60]
    assert stats["uptime"]["fraction"] == 1.0
    assert stats["last_seq"] == scene.last_seq

    table = d.cli("journal", "stats", "--days", "7", *args)
    assert table.returncode == 0, table.stderr
    assert re.search(rf"^\s+{today}\s+2 / 1\s+2 / 0\s*$", table.stdout, re.M), table.stdout
    assert "rejections by reason: cap 1" in table.stdout
    assert "unconfirmed feeds: 0" in table.stdout
    assert re.search(r"^\s+\S+ \S+\s+60%", table.stdout, re.M)
    assert "feeder uptime: 100.0% online" in table.stdout

    only_button = json.loads(d.cli("journal", "stats", "--json", "--origin", "button").stdout)
    assert only_button["feeds_per_day"][0]["requested"] == {"left": 0, "right": 1}


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.stack: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def test_chart_writes_html_with_one_bar_per_bowl_per_day(scene: Scene, tmp_path: Path) -> None:
    out = tmp_path / "history.html"
    done = scene.daemon.cli(
        "journal", "chart", "--out", out, "--days", "3", "--to-seq", str(scene.last_seq)
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert str(out.resolve()) in done.stdout
    html = out.read_text(encoding="utf-8")
    parser = Tags()
    parser.feed(html)
    parser.close()
    assert html.startswith("<!DOCTYPE html>")
    assert "<script" not in html
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert sum(1 for t, _ in parser.tags if t == "svg") == 2
    bars = [a for t, a in parser.tags if t == "rect" and a.get("class") == "bar"]
    assert len(bars) == 3 * 2
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    counts = {(a["data-day"], a["data-bowl"]): a["data-count"] for a in bars}
    assert counts[(today, "left")] == "2"
    assert counts[(today, "right")] == "2"
    line = next(a for t, a in parser.tags if t == "polyline")
    assert len((line["points"] or "").split()) == 2


# --- export ----------------------------------------------------------------------------------


def test_export_jsonl_round_trips_and_csv_parses(scene: Scene, tmp_path: Path) -> None:
    d = scene.daemon
    upto = str(scene.last_seq)
    with d.reader() as reader:
        expected = [e.to_dict() for e in reader.query(EventFilter(to_seq=scene.last_seq))]

    out = tmp_path / "all.jsonl"
    done = d.cli("journal", "export", "--format", "jsonl", "--out", out, "--to-seq", upto)
    assert done.returncode == 0, done.stderr
    assert f"wrote {len(expected)} events to {out}" in done.stderr
    assert json_lines(out.read_text(encoding="utf-8")) == expected
    to_stdout = d.cli("journal", "export", "--to-seq", upto)
    assert json_lines(to_stdout.stdout) == expected

    csv_out = tmp_path / "all.csv"
    done = d.cli("journal", "export", "--format", "csv", "--out", csv_out, "--to-seq", upto)
    assert done.returncode == 0, done.stderr
    with csv_out.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0].keys()) == [
        "seq",
        "event_id",
        "type",
        "occurred_at",
        "clock_synced",
        "origin",
        "recovered",
        "payload",
        "hash",
    ]
    assert len(rows) == len(expected)
    for row, e in zip(rows, expected, strict=True):
        assert int(row["seq"]) == e["seq"]
        assert row["event_id"] == e["event_id"]
        assert row["type"] == e["type"]
        at = datetime.fromisoformat(row["occurred_at"])
        assert at.tzinfo is not None
        assert round(at.timestamp() * 1000) == e["occurred_at_ms"]
        assert row["clock_synced"] == str(e["clock_synced"]).lower()
        assert row["origin"] == e["origin"]
        assert json.loads(row["payload"]) == e["payload"]
        assert row["hash"] == e["hash"]

    filtered = d.cli(
        "journal", "export", "--format", "csv", "--type", "FeedRejected", "--to-seq", upto
    )
    rows = list(csv.DictReader(io.StringIO(filtered.stdout)))
    assert [int(r["seq"]) for r in rows] == [scene.rejected_seq]
    assert json.loads(rows[0]["payload"])["reason"] == "cap"


# --- a copied file, and the daemon still feeds ------------------------------------------------


def test_every_command_works_on_a_copy_and_the_daemon_still_feeds(
    scene: Scene, tmp_path: Path
) -> None:
    d = scene.daemon
    copy = tmp_path / "copy.db"
    sqlite_copy(d.journal_path, copy)
    upto = ("--to-seq", str(scene.last_seq))
    on_copy = {
        "list": run_fmfb("journal", "list", "--json", "--limit", "1000", *upto, "--journal", copy),
        "stats": run_fmfb("journal", "stats", "--json", *upto, "--journal", copy),
        "export": run_fmfb("journal", "export", *upto, "--journal", copy),
    }
    live = {
        "list": d.cli("journal", "list", "--json", "--limit", "1000", *upto),
        "stats": d.cli("journal", "stats", "--json", *upto),
        "export": d.cli("journal", "export", *upto),
    }
    for name, done in on_copy.items():
        assert done.returncode == 0, (name, done.stderr)
        if name == "stats":  # uptime runs to "now", which moved on between the two runs
            a, b = json.loads(done.stdout), json.loads(live[name].stdout)
            a.pop("uptime")
            b.pop("uptime")
            assert a == b
        else:
            assert done.stdout == live[name].stdout, name
    for command in (
        ["show", "1"],
        ["tail", "-n", "2"],
        ["verify"],
        ["pending"],
        ["chart", "--out", str(tmp_path / "c.html")],
    ):
        done = run_fmfb("journal", *command, "--journal", copy)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
    assert (tmp_path / "c.html").exists()

    # Both bowls are at their cap (2 a day), so the feed is refused: but it is journaled.
    after = d.cli("feed", "right")
    assert after.returncode == 1, after.stdout + after.stderr
    assert "refused: feed right: cap" in after.stdout
    seq = journaled(after)
    assert seq > scene.last_seq
    listed = json_lines(d.cli("journal", "list", "--json", "--limit", "1").stdout)
    assert listed[0]["seq"] == seq


# --- verify: progress on a big journal -------------------------------------------------------


def test_verify_reports_progress_on_stderr(
    scene: Scene, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / "copy.db"
    sqlite_copy(scene.daemon.journal_path, copy)
    monkeypatch.setattr(journal_commands, "VERIFY_PROGRESS_ROWS", 3)
    result = CliRunner().invoke(cli.main, ["journal", "verify", "--journal", str(copy)])
    assert result.exit_code == 0, result.output
    assert re.search(r"^ok: \d+ rows", result.stdout, re.M)
    assert re.search(r"^verify: 3/\d+ rows", result.stderr, re.M)
    assert "verify:" not in result.stdout
