"""Replay: in order, marked, resumable after a kill, and never a feed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from daemon_process import FMFB, DaemonProcess, fmfb_env, run_fmfb, toml_text
from fault_proxy import FaultProxy
from mqtt_probe import Subscriber
from test_iot_core_sink import Cloud, tls_of
from waiting import wait_for

from gateway.devstack.aws import Feeds, MotoServer, first_arrivals
from gateway.devstack.mosquitto import Mosquitto
from gateway.devstack.pki import make_pki
from gateway.errors import FilterError
from gateway.events import Bowl, Event, FeedRequested, Origin
from gateway.journal import EventFilter, JournalReader
from gateway.replay import (
    ReplayUsageError,
    cursor_name,
    jsonl_line,
    parse_target,
    replay_source,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from verify_and_project import make_journal

REPLAY_SOURCE = replay_source("com.feedmyfurbabies")


# --- pure parts ------------------------------------------------------------------------------


def test_names_targets_and_ranges() -> None:
    assert cursor_name("backfill-1") == "replay:backfill-1"
    for bad in ("", "a b", "-x", "x" * 65, "a/b"):
        with pytest.raises(ReplayUsageError):
            cursor_name(bad)
    assert parse_target("jsonl:/tmp/x.jsonl").path == Path("/tmp/x.jsonl")
    assert str(parse_target("eventbridge")) == "eventbridge"
    with pytest.raises(ReplayUsageError):
        parse_target("feeder")  # there is no such target: a replay never feeds
    s = EventFilter(from_seq=10, to_seq=20)
    assert s.start_after(None) == 9
    assert s.start_after(15) == 15  # a cursor past from_seq resumes after it
    assert s.end(100) == 20
    assert s.end(12) == 12
    assert EventFilter().end(7) == 7
    with pytest.raises(FilterError):
        EventFilter(from_seq=5, to_seq=4).checked()
    with pytest.raises(FilterError):
        EventFilter(from_seq=0).checked()
    narrowed = EventFilter(types=("FeedRequested",), from_seq=10, to_seq=20).between(14, 30)
    assert (narrowed.from_seq, narrowed.to_seq, narrowed.types) == (15, 20, ("FeedRequested",))
    assert EventFilter().between(5, 5).to_seq == 5  # empty: (5, 5] selects nothing


def test_a_jsonl_line_is_the_cloud_detail_marked() -> None:
    payload = FeedRequested("r1", (Bowl.LEFT,), 5000, 10**13, Origin.CLI)
    event = Event(7, "id-7", 1_800_000_000_000, True, Origin.CLI, payload, hash="h" * 64)
    line = jsonl_line(event, "gw", "n1")
    assert "\n" not in line
    detail = json.loads(line)
    assert detail["seq"] == 7
    assert detail["type"] == "FeedRequested"
    assert detail["replay"] == {
        "name": "n1",
        "original-seq": 7,
        "original-time-ms": 1_800_000_000_000,
    }


# --- JSONL -----------------------------------------------------------------------------------


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_jsonl_replay_by_range_and_type_resumes(tmp_path: Path) -> None:
    journal = tmp_path / "j.db"
    make_journal(journal, 1_200)
    out = tmp_path / "out.jsonl"
    base = ["replay", "--to", f"jsonl:{out}", "--name", "r", "--journal", journal]
    first = run_fmfb(*base, "--type", "FeedRequested", "--to-seq", "600")
    assert first.returncode == 0, first.stderr
    assert "replay r:" in first.stderr  # progress
    with JournalReader.open(journal) as reader:
        assert reader.cursor("replay:r") == 600
        expected = [e.seq for e in reader.query(EventFilter(types=("FeedRequested",)))]
    again = run_fmfb(*base, "--type", "FeedRequested")
    assert again.returncode == 0, again.stderr
    assert "resuming after seq 600" in again.stderr
    lines = _lines(out)
    assert [d["seq"] for d in lines] == expected
    assert all(d["replay"]["name"] == "r" for d in lines)
    assert all(d["replay"]["original-seq"] == d["seq"] for d in lines)
    # Done: running it again sends nothing more.
    assert run_fmfb(*base, "--type", "FeedRequested").returncode == 0
    assert len(_lines(out)) == len(expected)
    # --from-seq/--since on another name.
    with JournalReader.open(journal) as reader:
        e100 = reader.get(100)
    assert e100 is not None
    since = datetime.fromtimestamp(e100.occurred_at_ms / 1000, tz=UTC).isoformat()
    out2 = tmp_path / "out2.jsonl"
    ranged = run_fmfb(
        "replay",
        "--to",
        f"jsonl:{out2}",
        "--name",
        "r2",
        "--journal",
        journal,
        "--from-seq",
        "50",
        "--to-seq",
        "150",
        "--since",
        since,
    )
    assert ranged.returncode == 0, ranged.stderr
    assert [d["seq"] for d in _lines(out2)] == list(range(100, 151))


# --- EventBridge (moto) ----------------------------------------------------------------------


def replay_bus(moto: MotoServer) -> Feeds:
    """A new bus (not the live one) whose rule takes the replay source to an SQS queue."""
    return moto.setup_feeds(
        bus=f"history-{uuid.uuid4().hex[:6]}", rule="replays", source=REPLAY_SOURCE
    )


def test_eventbridge_replay_arrives_in_order_marked(moto: MotoServer, tmp_path: Path) -> None:
    journal = tmp_path / "j.db"
    n = 137
    make_journal(journal, n)
    feeds = replay_bus(moto)
    done = run_fmfb(
        "replay",
        "--to",
        "eventbridge",
        "--name",
        "eb1",
        "--journal",
        journal,
        "--bus",
        feeds.bus,
        "--endpoint-url",
        moto.url,
    )
    assert done.returncode == 0, done.stderr
    seen = moto.collect(feeds, lambda s: len(s) >= n, what=f"{n} replayed events")
    assert [int(e["detail"]["seq"]) for e in seen] == list(range(1, n + 1))
    assert {e["source"] for e in seen} == {REPLAY_SOURCE}
    for e in seen:
        assert e["detail"]["replay"]["name"] == "eb1"
        assert e["detail"]["replay"]["original-seq"] == e["detail"]["seq"]
        assert e["detail"]["replay"]["original-time-ms"] == e["detail"]["occurred-at-ms"]
    with JournalReader.open(journal) as reader:
        assert reader.cursor("replay:eb1") == n


def test_eventbridge_replay_resumes_after_a_kill(moto: MotoServer, tmp_path: Path) -> None:
    journal = tmp_path / "j.db"
    n = 120
    make_journal(journal, n)
    feeds = replay_bus(moto)
    with FaultProxy(moto.url) as proxy:
        proxy.latency_s = 0.15  # slow enough to be killed midway
        args = [
            "replay",
            "--to",
            "eventbridge",
            "--name",
            "killed",
            "--journal",
            str(journal),
            "--bus",
            feeds.bus,
            "--endpoint-url",
            proxy.url,
            "--batch-size",
            "3",
        ]
        proc = subprocess.Popen(
            [*FMFB, *args],
            env=fmfb_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:

            def cursor() -> int:
                with JournalReader.open(journal) as reader:
                    return reader.cursor("replay:killed") or 0

            wait_for(lambda: cursor() >= 30, timeout=30, what="the replay under way")
            os.kill(proc.pid, signal.SIGKILL)
            assert proc.wait(timeout=10) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        stopped_at = cursor()
        assert 30 <= stopped_at < n
        proxy.latency_s = 0.0
        resumed = run_fmfb(*args)
        assert resumed.returncode == 0, resumed.stderr
        assert f"resuming after seq {stopped_at}" in resumed.stderr
    seen = moto.collect(
        feeds, lambda s: {int(e["detail"]["seq"]) for e in s} >= set(range(1, n + 1))
    )
    seqs = [int(e["detail"]["seq"]) for e in seen]
    first = first_arrivals(seqs)
    assert first == list(range(1, n + 1))  # none missing, in order
    # Only the batch in flight at the kill may have arrived twice.
    assert len(seqs) - n <= 3
    assert all(e["detail"]["replay"]["name"] == "killed" for e in seen)


# --- a replay never feeds --------------------------------------------------------------------


def test_a_replayed_feed_request_never_reaches_the_feeder(
    broker, moto: MotoServer, tmp_path: Path
) -> None:
    feeds = replay_bus(moto)
    with DaemonProcess(broker.port, workdir=tmp_path / "d") as daemon:
        daemon.start()
        daemon.wait_feeder_connected()
        for bowl in ("left", "right"):
            assert daemon.cli("feed", bowl).returncode == 0
        requested = daemon.events(["FeedRequested"])
        assert len(requested) == 2
        # The live feeds reached the feeder topic (the sink's cursor moved past them).
        wait_for(
            lambda: daemon.sink_status("feeder")["cursor"] >= requested[-1].seq,
            what="the feeder sink to publish the live requests",
        )
        before = len(daemon.events())
        with Subscriber.on(broker, "cat-feeder/#") as feeder_side:
            out = tmp_path / "replay.jsonl"
            to_jsonl = daemon.cli("replay", "--to", f"jsonl:{out}", "--name", "j")
            assert to_jsonl.returncode == 0, to_jsonl.stderr
            to_eb = daemon.cli(
                "replay",
                "--to",
                "eventbridge",
                "--name",
                "eb",
                "--type",
                "FeedRequested",
                "--bus",
                feeds.bus,
                "--endpoint-url",
                moto.url,
            )
            assert to_eb.returncode == 0, to_eb.stderr
            # The replay itself did arrive at its targets...
            seen = moto.collect(feeds, lambda s: len(s) >= 2, what="the replayed requests")
            assert [e["detail"]["request_id"] for e in seen] == [
                e.payload.request_id for e in requested
            ]
            assert all(e["detail"]["replay"]["name"] == "eb" for e in seen)
            replayed = [d for d in _lines(out) if d["type"] == "FeedRequested"]
            assert [d["seq"] for d in replayed] == [e.seq for e in requested]
            assert all(d["replay"]["name"] == "j" for d in replayed)
            # ...and nothing reached the feeder: give a stray publish time to show up.
            with pytest.raises(AssertionError):
                feeder_side.wait(
                    lambda m: [x for x in m if x.topic == "cat-feeder/action"], timeout=1.5
                )
        # The daemon took nothing in: no new request, no new event of any kind.
        assert len(daemon.events(["FeedRequested"])) == 2
        assert len(daemon.events()) == before
        assert daemon.running
        with daemon.reader() as reader:
            cursors = {c.sink: c.seq for c in reader.cursors()}
        assert cursors["replay:eb"] == cursors["replay:j"] == before


# --- IoT Core (a Mosquitto with mTLS standing in for it) --------------------------------------


def test_iot_core_replay_arrives_in_order_marked(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    journal = tmp_path / "j.db"
    n = 40
    make_journal(journal, n)
    with Mosquitto(tls=tls_of(pki)) as tls_broker:
        config = tmp_path / "config.toml"
        config.write_text(
            toml_text(
                {
                    "gateway_id": "gw-replay",
                    "state_dir": str(tmp_path / "state"),
                    "sinks": {
                        "iot_core": {
                            "endpoint": "localhost",
                            "port": tls_broker.port,
                            "cert_file": str(pki.client_cert),
                            "key_file": str(pki.client_key),
                            "ca_file": str(pki.ca),
                            "metrics": False,
                            "publish_rate_per_s": 100.0,
                        }
                    },
                }
            ),
            encoding="utf-8",
        )
        topic = "feedmyfurbabies/gw-replay/events"
        with Cloud(tls_broker, pki, [topic]).start() as cloud:
            done = run_fmfb(
                "replay",
                "--to",
                "iot-core",
                "--name",
                "iot",
                "--journal",
                journal,
                "--config",
                config,
                "--to-seq",
                "30",
            )
            assert done.returncode == 0, done.stderr
            again = run_fmfb(
                "replay",
                "--to",
                "iot-core",
                "--name",
                "iot",
                "--journal",
                journal,
                "--config",
                config,
            )
            assert again.returncode == 0, again.stderr
            bodies = wait_for(
                lambda: (b := cloud.bodies(topic)) and len(b) >= n and b,
                timeout=20,
                what="the replay on the IoT Core topic",
            )
    assert [b["seq"] for b in bodies] == list(range(1, n + 1))
    assert all(b["replay"]["name"] == "iot" for b in bodies)
    assert all(b["gateway-id"] == "gw-replay" for b in bodies)
