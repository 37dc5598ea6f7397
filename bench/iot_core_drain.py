"""Draining a journal backlog to IoT Core: the sink against a bare awsiotsdk publish loop.

A private Mosquitto with mTLS (client certificates required, as IoT Core does) on a free port,
with certificates made here. Two ways to publish the same N events at QoS 1:

- sink: N events already in a fresh journal; ``IotCoreSink`` runs in this process's event loop
  and drains them (reading the journal, building each cloud detail, pacing, a bounded window
  of unacknowledged publishes, moving and saving its cursor as PUBACKs come back).
- bare: one awsiotsdk MQTT 5 client publishing the same payloads from a list, with the same
  in-flight window and the same pacer, and nothing else (no journal, no cursor).

Both are timed from the connection's success to the last PUBACK, at a publish rate limit of
100/s (IoT Core's per-connection limit) and unlimited, in interleaved rounds; the figure is the
sink's events/s as a ratio of the bare loop's (1.0: the sink costs nothing the rate does not).

    python bench/iot_core_drain.py [--quick] [--events N] [--rounds R]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
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
from awscrt import mqtt5
from awsiot import mqtt5_client_builder

from gateway.clock import SystemClock
from gateway.config import Config, parse_config
from gateway.counters import InputCounters
from gateway.devstack.mosquitto import Mosquitto
from gateway.devstack.pki import Pki, make_pki
from gateway.events import Event, FoodLevelChanged, Origin
from gateway.intake import Intake
from gateway.journal import Journal
from gateway.policy import Limits
from gateway.rate import Pacer
from gateway.sinks.base import SinkContext
from gateway.sinks.iot_core import MAX_IN_FLIGHT, IotCoreSink, event_payload
from gateway.state import GatewayState

GATEWAY_ID = "bench-gw"
TOPIC = f"feedmyfurbabies/{GATEWAY_ID}/events"
RATE_LIMITED = 100.0
TIMEOUT_S = 300.0


# --- certificates and an mTLS broker ---------------------------------------------------------


def tls_broker(pki: Pki, workdir: Path) -> Mosquitto:
    """A private, non-persistent mosquitto with an mTLS listener on a free loopback port."""
    return Mosquitto(tls=pki.broker_tls(), workdir=workdir)


# --- the two ways to publish -----------------------------------------------------------------


def make_config(state_dir: Path, broker: Mosquitto, pki: Pki) -> Config:
    return parse_config(
        {
            "gateway_id": GATEWAY_ID,
            "state_dir": str(state_dir),
            "buttons": {"pin_factory": "mock", "gpio": [], "mqtt": []},
            "sinks": {
                "feeder": {"enabled": False},
                "iot_core": {
                    "endpoint": "localhost",
                    "port": broker.port,
                    "cert_file": str(pki.client_cert),
                    "key_file": str(pki.client_key),
                    "ca_file": str(pki.ca),
                    "metrics": False,
                },
            },
        }
    )


def flow_control(rate: float | None) -> dict[str, Any]:
    """Unlimited means unlimited: without this the SDK caps publishes at IoT Core's 100/s."""
    if rate is not None:
        return {}
    none = mqtt5.ExtendedValidationAndFlowControlOptions.NONE
    return {"extended_validation_and_flow_control_options": none}


def pacer_for(rate: float | None) -> Pacer:
    return Pacer.unlimited() if rate is None else Pacer(rate)


class TimedSink(IotCoreSink):
    """The sink, noting when its connection succeeded and when its cursor reached ``target``
    (on the loop, as the sink itself sees both)."""

    def __init__(self, *args: Any, target: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.target = target
        self.connected_at: float | None = None
        self.drained_at: float | None = None
        self.drained = asyncio.Event()

    def _client_options(self) -> dict[str, Any]:
        return {**super()._client_options(), **flow_control(self.pacer.rate_per_s)}

    def _on_connected(self, session_present: bool) -> None:
        if self.connected_at is None:
            self.connected_at = time.perf_counter()
        super()._on_connected(session_present)

    def _on_publish_done(self, event: Event, done: asyncio.Future[Any]) -> None:
        super()._on_publish_done(event, done)
        if self.drained_at is None and self.cursor >= self.target:
            self.drained_at = time.perf_counter()
            self.drained.set()


async def fill_journal(config: Config, count: int) -> list[bytes]:
    """Journal ``count`` events (durable) and return what each is published as."""
    journal = Journal.open(config.journal_file)
    journal.start()
    clock = SystemClock()
    limits = Limits(cap_per_bowl=1000, cap_period_ms=86_400_000, min_gap_ms=0)
    intake = Intake(journal, GatewayState(86_400_000), limits, config.feeding, clock)
    futures = [
        intake.record_nowait(FoodLevelChanged(i % 101, None), Origin.FEEDER) for i in range(count)
    ]
    events = await asyncio.gather(*futures)
    await journal.aclose()
    return [event_payload(e, GATEWAY_ID) for e in events]


async def run_sink(config: Config, count: int, rate: float | None) -> float:
    """Events/s of the sink draining ``count`` journaled events."""
    journal = Journal.open(config.journal_file)
    journal.start()
    clock = SystemClock()
    limits = Limits(cap_per_bowl=1000, cap_period_ms=86_400_000, min_gap_ms=0)
    intake = Intake(journal, GatewayState(86_400_000), limits, config.feeding, clock)
    assert config.sinks.iot_core is not None
    sink = TimedSink(
        SinkContext(config, journal, intake, clock, InputCounters()),
        config.sinks.iot_core,
        pacer=pacer_for(rate),
        target=count,
    )
    task = asyncio.create_task(sink.run())
    try:
        await asyncio.wait_for(sink.drained.wait(), TIMEOUT_S)
    finally:
        task.cancel()
        await asyncio.wait({task})
        await journal.aclose()
    assert sink.connected_at is not None
    assert sink.drained_at is not None
    assert sink.published == count, (sink.published, count)
    return count / (sink.drained_at - sink.connected_at)


async def run_bare(
    broker: Mosquitto, pki: Pki, payloads: Sequence[bytes], rate: float | None
) -> float:
    """Events/s of a bare awsiotsdk QoS 1 loop: the same payloads, window and pacer."""
    loop = asyncio.get_running_loop()
    connected = asyncio.Event()
    connected_at: list[float] = []

    def on_connected(_data: Any) -> None:
        connected_at.append(time.perf_counter())
        loop.call_soon_threadsafe(connected.set)

    client = mqtt5_client_builder.mtls_from_path(
        endpoint="localhost",
        port=broker.port,
        cert_filepath=str(pki.client_cert),
        pri_key_filepath=str(pki.client_key),
        ca_filepath=str(pki.ca),
        client_id=f"{GATEWAY_ID}-bare",
        enable_metrics_collection=False,
        on_lifecycle_connection_success=on_connected,
        **flow_control(rate),
    )
    client.start()
    try:
        await asyncio.wait_for(connected.wait(), 30)
        pacer = pacer_for(rate)
        window = asyncio.Semaphore(MAX_IN_FLIGHT)
        pending: set[asyncio.Future[Any]] = set()
        for payload in payloads:
            await window.acquire()
            delay = pacer.reserve(loop.time())
            if delay > 0:
                await asyncio.sleep(delay)
            packet = mqtt5.PublishPacket(payload=payload, qos=mqtt5.QoS.AT_LEAST_ONCE, topic=TOPIC)
            done = asyncio.wrap_future(client.publish(packet))
            done.add_done_callback(lambda _f: window.release())
            pending.add(done)
        results = await asyncio.gather(*pending)
        done_at = time.perf_counter()
    finally:
        client.stop()
    codes = {int(r.puback.reason_code) for r in results}
    assert all(code < 0x80 for code in codes), codes
    return len(payloads) / (done_at - connected_at[0])


# --- the run ---------------------------------------------------------------------------------


@dataclass
class Case:
    label: str
    rate: float | None
    count: int
    sink: list[float]
    bare: list[float]

    @property
    def ratio(self) -> float:
        return median(self.sink) / median(self.bare)


async def measure(cases: list[Case], rounds: int, workdir: Path) -> int:
    """Run every case ``rounds`` times; return the payload size in bytes (the median)."""
    pki_dir = workdir / "pki"
    pki_dir.mkdir()
    pki = make_pki(pki_dir, client_id=GATEWAY_ID)
    broker_dir = workdir / "broker"
    broker_dir.mkdir()
    broker = tls_broker(pki, broker_dir)
    broker.start()
    sizes: list[float] = []
    try:
        for r in range(rounds):
            for case in cases:
                state = workdir / f"state-{case.label}-{r}"
                config = make_config(state, broker, pki)
                payloads = await fill_journal(config, case.count)
                sizes.extend(len(p) for p in payloads)
                # Alternate which goes first, so drift hits both alike.
                if r % 2 == 0:
                    case.sink.append(await run_sink(config, case.count, case.rate))
                    case.bare.append(await run_bare(broker, pki, payloads, case.rate))
                else:
                    case.bare.append(await run_bare(broker, pki, payloads, case.rate))
                    case.sink.append(await run_sink(config, case.count, case.rate))
                shutil.rmtree(state, ignore_errors=True)
                print(
                    f"  round {r + 1}/{rounds} {case.label}: sink {case.sink[-1]:,.0f}/s, "
                    f"bare {case.bare[-1]:,.0f}/s",
                    flush=True,
                )
    finally:
        broker.close()
    return round(median(sizes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer events and rounds")
    parser.add_argument("--events", type=int, default=None, help="events per unlimited run")
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args()
    unlimited_n = args.events or (1000 if args.quick else 5000)
    limited_n = 200 if args.quick else 500  # at 100/s: 2 s / 5 s per run
    rounds = args.rounds or (1 if args.quick else 3)
    cases = [
        Case(f"{RATE_LIMITED:g}/s", RATE_LIMITED, limited_n, [], []),
        Case("unlimited", None, unlimited_n, [], []),
    ]
    print(f"IoT Core drain: sink vs bare awsiotsdk loop, mTLS Mosquitto; {machine_note()}")
    print(f"window {MAX_IN_FLIGHT} in flight, QoS 1, {rounds} round(s)", flush=True)
    workdir = bench_tmpdir("iot-drain")
    try:
        payload_bytes = asyncio.run(measure(cases, rounds, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print()
    print_table(
        ["rate limit", "events", "bare events/s", "sink events/s", "sink / bare"],
        [[c.label, c.count, median(c.bare), median(c.sink), c.ratio] for c in cases],
    )
    limited, unlimited = cases
    emit_json(
        "iot_core_drain",
        {
            "rounds": rounds,
            "in_flight": MAX_IN_FLIGHT,
            "limited_rate_per_s": RATE_LIMITED,
            "limited_events": limited.count,
            "limited_bare_per_s": rounded(median(limited.bare), 1),
            "limited_sink_per_s": rounded(median(limited.sink), 1),
            "ratio_sink_vs_bare_limited": rounded(limited.ratio),
            "unlimited_events": unlimited.count,
            "unlimited_bare_per_s": rounded(median(unlimited.bare), 1),
            "unlimited_sink_per_s": rounded(median(unlimited.sink), 1),
            "ratio_sink_vs_bare_unlimited": rounded(unlimited.ratio),
            "payload_bytes": payload_bytes,
        },
    )


if __name__ == "__main__":
    main()
