"""Metrics: the real daemon scraped over HTTP with a real client, parsed with prometheus_client's
own parser; the node_exporter textfile read while it is being rewritten."""

from __future__ import annotations

import os
import threading
import urllib.request
from pathlib import Path
from typing import Any

import paho.mqtt.publish as mqtt_publish
import pytest
from daemon_process import DaemonProcess
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from waiting import wait_for

from gateway.devstack.mosquitto import Mosquitto, free_port
from gateway.metrics import registry_for
from gateway.metrics_export import write_textfile
from gateway.status import FeederStatus, GatewayStatus, JournalStatus, SinkStatus

pytestmark = pytest.mark.timeout(90)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample by (name, sorted labels); the parser raises on anything malformed."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/plain")
        return parse(answer.read().decode())


def test_the_daemon_serves_its_status_as_metrics(broker: Mosquitto, tmp_path: Path) -> None:
    port = free_port()
    textfile = tmp_path / "textfile" / "fmfb.prom"
    textfile.parent.mkdir()
    daemon = DaemonProcess(
        broker.port,
        workdir=tmp_path / "d",
        extra_config={"metrics": {"port": port, "textfile": str(textfile), "every_s": 1.0}},
    )
    with daemon:
        daemon.start()
        daemon.wait_feeder_connected()
        assert daemon.cli("feed", "left").returncode == 0
        # Garbage on the button's topic: counted by field.
        mqtt_publish.single(
            daemon.button_topic, b"\xff\xfe", hostname=broker.host, port=broker.port, qos=1
        )
        wait_for(lambda: daemon.status()["bad_inputs"], timeout=10, what="the bad input")
        wait_for(
            lambda: daemon.sink_status()["delivered"] >= 1, timeout=10, what="the feed to be sent"
        )
        m = wait_for(
            lambda: (
                (s := scrape(port))[("fmfb_sink_delivered_total", (("sink", "feeder"),))] >= 1 and s
            ),
            timeout=10,
            what="the scrape to show the delivery",
        )
        status = daemon.status()
        shown = daemon.cli("status")
    assert m[("fmfb_info", (("gateway_id", daemon.gateway_id), ("version", status["version"])))]
    feeder = (("sink", "feeder"),)
    assert m[("fmfb_sink_up", feeder)] == 1
    assert m[("fmfb_sink_backlog_events", feeder)] == 0
    assert m[("fmfb_sink_oldest_pending_age_seconds", feeder)] == 0
    assert m[("fmfb_sink_dead_lettered_total", feeder)] == 0
    assert m[("fmfb_sink_last_success_timestamp_seconds", feeder)] > 1.7e9
    assert m[("fmfb_link_up", (("input", "mqtt-buttons"),))] == 1
    assert m[("fmfb_journal_rows", ())] >= 2  # GatewayStarted, FeedRequested
    assert m[("fmfb_journal_size_bytes", ())] > 0
    assert m[("fmfb_journal_held_events", ())] == 0
    assert m[("fmfb_journal_disk_failing", ())] == 0
    assert m[("fmfb_journal_commit_seconds_count", ())] >= 2
    assert (
        m[("fmfb_journal_commit_seconds_bucket", (("le", "+Inf"),))]
        == (m[("fmfb_journal_commit_seconds_count", ())])
    )
    assert m[("fmfb_feeds_in_cap_period", (("bowl", "left"),))] == 1
    assert m[("fmfb_feeds_in_cap_period", (("bowl", "right"),))] == 0
    assert m[("fmfb_feed_cap_per_bowl", ())] == 1000
    bad = (("field", "payload"), ("source", f"button:{daemon.button_name}"))
    assert m[("fmfb_bad_input_total", bad)] == 1
    # `fmfb status` shows the same figures.
    assert shown.returncode == 0, shown.stderr
    assert "delivered 1" in shown.stdout and "dead-lettered 0" in shown.stdout
    assert "feeds    left 1, right 0 (cap 1000 per 1d00h)" in shown.stdout
    assert f"rows {status['journal']['durable_seq']}" in shown.stdout
    # The textfile carries the same names (written by the daemon, parsed whole).
    from_file = parse(textfile.read_text(encoding="utf-8"))
    assert ("fmfb_sink_up", feeder) in from_file
    assert not [p for p in textfile.parent.iterdir() if p.name != "fmfb.prom"]


def test_metrics_are_off_by_default(broker: Mosquitto, tmp_path: Path) -> None:
    with DaemonProcess(broker.port, workdir=tmp_path / "d") as daemon:
        daemon.start()
        daemon.wait_feeder_connected()
        assert "connected to" in daemon.stderr_text()
        assert "metrics on http" not in daemon.stderr_text()


def _status(now_ms: int) -> GatewayStatus:
    return GatewayStatus(
        version="1",
        gateway_id="gw",
        pid=1,
        journal=JournalStatus(
            path="j", seq=9, durable_seq=7, disk_failing=True, held=2, commit_counts=(1, 2)
        ),
        feeder=FeederStatus(online=False, food_level=40, feeds_in_period={"left": 3}),
        sinks=(
            SinkStatus(
                "eventbridge",
                connected=False,
                cursor=3,
                backlog=6,
                oldest_pending_ms=now_ms - 90_000,
            ),
        ),
    )


def test_the_collector_reads_the_status_at_each_scrape() -> None:
    now = 1_800_000_000_000
    calls: list[int] = []

    def status() -> GatewayStatus:
        calls.append(1)
        return _status(now)

    registry = registry_for(status, now_ms=lambda: now)
    m = parse(generate_latest(registry).decode())
    assert calls == [1]
    eb = (("sink", "eventbridge"),)
    assert m[("fmfb_sink_oldest_pending_age_seconds", eb)] == 90.0
    assert m[("fmfb_sink_backlog_events", eb)] == 6
    assert m[("fmfb_sink_up", eb)] == 0
    assert ("fmfb_sink_last_success_timestamp_seconds", eb) not in m  # never succeeded
    assert m[("fmfb_journal_held_events", ())] == 2
    assert m[("fmfb_journal_disk_failing", ())] == 1
    assert m[("fmfb_feeder_online", ())] == 0
    assert m[("fmfb_feeder_food_level_percent", ())] == 40
    assert m[("fmfb_journal_commit_seconds_bucket", (("le", "0.001"),))] == 1
    assert m[("fmfb_journal_commit_seconds_bucket", (("le", "0.0025"),))] == 3
    generate_latest(registry)
    assert calls == [1, 1]


def test_the_textfile_is_replaced_whole_while_readers_read(tmp_path: Path) -> None:
    """A reader never sees a half-written file: each read parses, and ends with the last
    sample; the old file is replaced (a new inode), and no temporary file is left."""
    path = tmp_path / "fmfb.prom"
    bodies = [
        (
            "# TYPE fmfb_x gauge\n" + "".join(f'fmfb_x{{i="{i}"}} {n}\n' for i in range(2000))
        ).encode()
        for n in range(2)
    ]
    write_textfile(path, bodies[0])
    # Held open so that its inode cannot be freed and given to a later file (ext4 reuses
    # inode numbers: comparing numbers alone failed once in CI).
    first = path.open("rb")
    stop = threading.Event()
    seen: list[Any] = []
    errors: list[BaseException] = []

    def reader() -> None:
        while not stop.is_set():
            text = path.read_text(encoding="utf-8")
            try:
                samples = parse(text)
                assert len(samples) == 2000, len(samples)
                seen.append(samples[("fmfb_x", (("i", "1999"),))])
            except BaseException as e:
                errors.append(e)
                return

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for n in range(200):
            write_textfile(path, bodies[n % 2])
    finally:
        stop.set()
        thread.join(10)
    with first:
        # Replaced, not rewritten in place: the first file is unlinked and still whole.
        assert os.fstat(first.fileno()).st_nlink == 0
        assert path.stat().st_ino != os.fstat(first.fileno()).st_ino
        assert first.read() == bodies[0]
    assert not errors, errors[0]
    assert len(seen) > 1
    assert [p.name for p in tmp_path.iterdir()] == ["fmfb.prom"]
    assert path.stat().st_mode & 0o777 == 0o644
