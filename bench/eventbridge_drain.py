"""EventBridge drain throughput: the sink against a bare boto3 loop measured in the same run.

(a) Drain: a journal of N events (default 20,000: presses, rejections, food levels) is sent
    by ``EventBridgeSink`` from cursor 0 to the end, to moto's server (a subprocess) on a bus
    with no targets; timed from the sink's start until its cursor reaches the last seq. The
    baseline is a bare loop of 10-entry ``put_events`` calls over the very same entries
    (built beforehand, untimed), with the same client settings, against the same server;
    both are timed from a new client (the sink makes its own on its first call).
    Rounds alternate the order; the ratio is taken within a round and the median reported
    (target ≥ 0.95), and the CPU this process spends per delivered event (every thread), sink
    against the bare loop (target ≤ 1.2).
(b) Latency: the same drain of M events (default 2,000) through a loopback proxy that adds
    50 ms to every request, against the ceiling of 10 entries per round trip (200 events/s at
    50 ms); a bare loop through the same proxy is shown for comparison.

    python bench/eventbridge_drain.py [--quick] [--events N] [--rounds R] [--latency-events M]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import logging
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from _common import (
    bench_tmpdir,
    emit_json,
    machine_note,
    median,
    print_table,
    rounded,
)

from gateway.clock import SystemClock
from gateway.config import Config, parse_config
from gateway.counters import InputCounters
from gateway.devstack.mosquitto import free_port
from gateway.devstack.processes import stop_process
from gateway.echo import EchoLedger
from gateway.eventbridge_entries import EntrySpec, SendStep, plan
from gateway.events import (
    Bowl,
    ClickType,
    FeedRejected,
    FeedRequested,
    FoodLevelChanged,
    NewEvent,
    Origin,
    Payload,
    RefusedBy,
)
from gateway.intake import Intake
from gateway.journal import Journal, JournalReader, open_new_event
from gateway.policy import Limits
from gateway.sinks.base import SinkContext
from gateway.sinks.eventbridge import EventBridgeSink
from gateway.sinks.eventbridge_calls import events_client
from gateway.state import GatewayState

BUS = "feedmyfurbabies"
REGION = "us-east-1"
LATENCY_S = 0.050
TARGET_RATIO = 0.95
TARGET_CPU_RATIO = 1.2
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
}

# --- moto's server, in a process of its own ------------------------------------------------


class MotoProcess:
    """``python -m moto.server`` on a free loopback port (its CPU is not the benchmark's)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        out = (self.workdir / "moto.out").open("ab")
        with out:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **AWS_ENV},
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                text = (self.workdir / "moto.out").read_text(errors="replace")
                raise RuntimeError(f"moto exited ({self._process.returncode}): {text}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                conn.request("GET", "/moto-api/")
                conn.getresponse().read()
                conn.close()
            except OSError:
                time.sleep(0.1)
                continue
            return
        self.close()
        raise RuntimeError(f"moto did not answer on {self.url}")

    def close(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop_process(process)


# --- a proxy that adds latency ---------------------------------------------------------------


class _Relay(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: with Nagle on, the body would wait for the
    # client's delayed ACK (~40 ms) on every call.
    disable_nagle_algorithm = True
    server: _RelayServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        time.sleep(self.server.latency_s)
        conn = http.client.HTTPConnection("127.0.0.1", self.server.upstream_port, timeout=30)
        try:
            headers = {
                k: v
                for k, v in self.headers.items()
                if k.lower() not in {"host", "content-length", "connection"}
            }
            headers["Content-Length"] = str(len(body))
            conn.request("POST", self.path, body=body, headers=headers)
            response = conn.getresponse()
            answer = response.read()
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() in {"content-type", "x-amzn-requestid"}:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
        finally:
            conn.close()


class _RelayServer(ThreadingHTTPServer):
    daemon_threads = True
    latency_s = 0.0
    upstream_port = 0


class LatencyProxy:
    def __init__(self, upstream_port: int, latency_s: float) -> None:
        self.server = _RelayServer(("127.0.0.1", 0), _Relay)
        self.server.latency_s = latency_s
        self.server.upstream_port = upstream_port
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LatencyProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- the journal ---------------------------------------------------------------------------


def payload_for(i: int, now_ms: int) -> Payload:
    """A mix like a busy day's: presses (most refused by the caps), food levels."""
    request = FeedRequested(
        request_id=f"bench-{i:08d}",
        bowls=(Bowl.LEFT, Bowl.RIGHT) if i % 3 == 2 else (Bowl.LEFT,),
        portion_ms=10_000,
        expires_at_ms=now_ms + 300_000,
        origin=Origin.BUTTON,
        button="zigbee2mqtt/kitchen-feeder-button",
        click_type=(ClickType.SINGLE, ClickType.DOUBLE, ClickType.LONG)[i % 3],
    )
    if i % 5 == 4:
        return FoodLevelChanged(level=100 - i % 100, previous=100 - (i - 1) % 100)
    if i % 5 in (1, 3):
        return FeedRejected.of(request, "cap", RefusedBy.GATEWAY)
    return request


async def build_journal(path: Path, n: int) -> int:
    journal = Journal.open(path)
    journal.start()
    now = time.time_ns() // 1_000_000
    try:
        for start in range(0, n, 1_000):
            news: list[NewEvent] = [
                open_new_event(
                    payload_for(i, now),
                    origin=Origin.BUTTON,
                    now_ms=now + i,
                    clock_synced=True,
                )
                for i in range(start, min(n, start + 1_000))
            ]
            await asyncio.gather(*(journal.append_nowait(new) for new in news))
        return journal.visible_seq
    finally:
        await journal.aclose()


def make_config(state_dir: Path, endpoint: str) -> Config:
    return parse_config(
        {
            "gateway_id": "bench-gateway",
            "state_dir": str(state_dir),
            "buttons": {"pin_factory": "mock", "gpio": [], "mqtt": []},
            "sinks": {"eventbridge": {"endpoint_url": endpoint, "bus": BUS}},
        }
    )


def batches_of(journal_path: Path, config: Config) -> list[list[dict[str, Any]]]:
    """The requests the sink sends, built from the journal (for the bare loop, untimed)."""
    eb = config.sinks.eventbridge
    assert eb is not None
    spec = EntrySpec(bus=eb.bus, source=eb.source, gateway_id=config.gateway_id)
    with JournalReader.open(journal_path) as reader:
        events = list(reader.query())
    return [
        [dict(e.request) for e in step.entries]
        for step in plan(events, spec)
        if isinstance(step, SendStep)
    ]


# --- the measurements ------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    events_per_s: float
    cpu_ms_per_event: float  # this process's CPU (every thread) per delivered event


async def sink_drain(master: Path, workdir: Path, endpoint: str, last_seq: int) -> Run:
    """The sink sending the whole journal (a fresh copy of it)."""
    state = workdir / f"sink-{time.monotonic_ns()}"
    state.mkdir()
    copy = state / "journal.db"
    shutil.copyfile(master, copy)
    config = make_config(state, endpoint)
    journal = Journal.open(copy)
    journal.start()
    clock = SystemClock()
    intake = Intake(
        journal,
        GatewayState(60_000),
        Limits(cap_per_bowl=10, cap_period_ms=86_400_000, min_gap_ms=0),
        config.feeding,
        clock,
        echoes=EchoLedger(600_000),
    )
    eb = config.sinks.eventbridge
    assert eb is not None
    sink = EventBridgeSink(SinkContext(config, journal, intake, clock, InputCounters()), eb)
    # Woken by the cursor's last move rather than by polling it: a poll every 10 ms costs this
    # process ~5 ms of CPU a second here, which would be counted against the sink.
    finished = asyncio.Event()
    advance = sink.follower.advance

    def advance_and_watch(seq: int) -> None:
        advance(seq)
        if sink.follower.cursor >= last_seq:
            finished.set()

    sink.follower.advance = advance_and_watch  # type: ignore[method-assign]
    start = time.perf_counter()
    cpu = time.process_time()
    task = asyncio.create_task(sink.run())
    try:
        waiter = asyncio.create_task(finished.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if not finished.is_set():
            waiter.cancel()
            task.result()
            raise RuntimeError("the sink stopped before the end of the journal")
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await journal.aclose()
        shutil.rmtree(state, ignore_errors=True)
    status = sink.status()
    if status.delivered != last_seq or status.dead_lettered:
        raise RuntimeError(f"the sink did not send everything exactly once: {status}")
    return Run(last_seq / elapsed, cpu * 1000 / last_seq)


def new_client(config: Config) -> Any:
    """The client as the sink makes it (same settings), for the bare loop."""
    return events_client(config, config.sinks.eventbridge)


def bare_loop(config: Config, batches: Sequence[list[dict[str, Any]]]) -> Run:
    """A plain loop of put_events calls over the same entries, timed like the sink's drain
    from the client's creation on."""
    start = time.perf_counter()
    cpu = time.process_time()
    client = new_client(config)
    sent = 0
    for batch in batches:
        answer = client.put_events(Entries=batch)
        if answer.get("FailedEntryCount"):
            raise RuntimeError(f"moto refused entries: {answer}")
        sent += len(batch)
    elapsed = time.perf_counter() - start
    return Run(sent / elapsed, (time.process_time() - cpu) * 1000 / sent)


def setup_bus(endpoint: str) -> None:
    config = make_config(Path("/nonexistent"), endpoint)
    client = new_client(config)
    with contextlib.suppress(Exception):
        client.create_event_bus(Name=BUS)


# --- main ------------------------------------------------------------------------------------


@dataclass
class Figures:
    events: int
    rounds: int
    latency_events: int
    sink_rates: list[float] = field(default_factory=list)
    bare_rates: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    sink_cpu: list[float] = field(default_factory=list)
    bare_cpu: list[float] = field(default_factory=list)
    cpu_ratios: list[float] = field(default_factory=list)
    latency_sink: float = math.nan
    latency_bare: float = math.nan
    machine: str = ""

    @property
    def ratio(self) -> float:
        return median(self.ratios)

    @property
    def cpu_ratio(self) -> float:
        return median(self.cpu_ratios)


def measure(n: int, rounds: int, m: int) -> Figures:
    figures = Figures(events=n, rounds=rounds, latency_events=m)
    workdir = bench_tmpdir("eventbridge")
    moto = MotoProcess(workdir)
    try:
        moto.start()
        setup_bus(moto.url)
        figures.machine = machine_note()
        print(f"machine: {figures.machine}")
        print(f"moto: {moto.url} (subprocess), bus {BUS!r} with no targets")
        master = workdir / "journal.db"
        last = asyncio.run(build_journal(master, n))
        small = workdir / "small.db"
        small_last = asyncio.run(build_journal(small, m))
        config = make_config(workdir, moto.url)
        batches = batches_of(master, config)
        for r in range(rounds):
            if r % 2 == 0:
                s = asyncio.run(sink_drain(master, workdir, moto.url, last))
                b = bare_loop(config, batches)
            else:
                b = bare_loop(config, batches)
                s = asyncio.run(sink_drain(master, workdir, moto.url, last))
            figures.sink_rates.append(s.events_per_s)
            figures.bare_rates.append(b.events_per_s)
            figures.ratios.append(s.events_per_s / b.events_per_s)
            figures.sink_cpu.append(s.cpu_ms_per_event)
            figures.bare_cpu.append(b.cpu_ms_per_event)
            figures.cpu_ratios.append(s.cpu_ms_per_event / b.cpu_ms_per_event)
            print(
                f"round {r + 1}: sink {s.events_per_s:,.0f} events/s "
                f"({s.cpu_ms_per_event:.3f} ms CPU each), bare loop {b.events_per_s:,.0f} "
                f"events/s ({b.cpu_ms_per_event:.3f} ms CPU each)"
            )
        with LatencyProxy(moto.port, LATENCY_S) as proxy:
            slow = make_config(workdir, proxy.url)
            figures.latency_sink = asyncio.run(
                sink_drain(small, workdir, proxy.url, small_last)
            ).events_per_s
            figures.latency_bare = bare_loop(slow, batches_of(small, slow)).events_per_s
    finally:
        moto.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return figures


def report(f: Figures) -> None:
    ceiling = 10 / LATENCY_S
    added = f"+{LATENCY_S * 1000:.0f} ms per call"
    print()
    print_table(
        ["measurement", "events", "events/s", "baseline events/s", "ratio", "target"],
        [
            [
                "drain to moto / bare 10-entry loop",
                f.events,
                median(f.sink_rates),
                median(f.bare_rates),
                f.ratio,
                f">= {TARGET_RATIO}",
            ],
            [
                "CPU ms per event: sink / bare loop",
                f.events,
                median(f.sink_cpu),
                median(f.bare_cpu),
                f.cpu_ratio,
                f"<= {TARGET_CPU_RATIO}",
            ],
            [
                f"drain, {added} / ceiling",
                f.latency_events,
                f.latency_sink,
                ceiling,
                f.latency_sink / ceiling,
                "-",
            ],
            [
                f"bare loop, {added} / ceiling",
                f.latency_events,
                f.latency_bare,
                ceiling,
                f.latency_bare / ceiling,
                "-",
            ],
        ],
    )
    verdict = "ok" if f.ratio >= TARGET_RATIO else "MISSED"
    print(f"\nratio {f.ratio:.3f}: {verdict} (target >= {TARGET_RATIO})")
    cpu_verdict = "ok" if f.cpu_ratio <= TARGET_CPU_RATIO else "MISSED"
    print(f"CPU per event {f.cpu_ratio:.3f}x: {cpu_verdict} (target <= {TARGET_CPU_RATIO})")
    emit_json(
        "eventbridge_drain",
        {
            "events": f.events,
            "rounds": f.rounds,
            "sink_events_per_s": rounded(median(f.sink_rates), 1),
            "bare_events_per_s": rounded(median(f.bare_rates), 1),
            "ratio": rounded(f.ratio),
            "ratio_target": TARGET_RATIO,
            "ratio_ok": f.ratio >= TARGET_RATIO,
            "sink_cpu_ms_per_event": rounded(median(f.sink_cpu), 4),
            "bare_cpu_ms_per_event": rounded(median(f.bare_cpu), 4),
            "cpu_ratio": rounded(f.cpu_ratio),
            "cpu_ratio_target": TARGET_CPU_RATIO,
            "cpu_ratio_ok": f.cpu_ratio <= TARGET_CPU_RATIO,
            "latency_ms": LATENCY_S * 1000,
            "latency_events": f.latency_events,
            "latency_sink_events_per_s": rounded(f.latency_sink, 1),
            "latency_bare_events_per_s": rounded(f.latency_bare, 1),
            "latency_ceiling_events_per_s": ceiling,
            "latency_ratio": rounded(f.latency_sink / ceiling),
            "machine": f.machine,
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer events and rounds")
    parser.add_argument("--events", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--latency-events", type=int, default=None)
    args = parser.parse_args()
    os.environ.update(AWS_ENV)
    logging.basicConfig(level=logging.ERROR)
    report(
        measure(
            n=args.events or (3_000 if args.quick else 20_000),
            rounds=args.rounds or (1 if args.quick else 5),
            m=args.latency_events or (400 if args.quick else 2_000),
        )
    )


if __name__ == "__main__":
    main()
