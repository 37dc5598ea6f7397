"""The IoT Core sink against a real Mosquitto that looks like IoT Core: TLS with client
certificates required (certificates from ``gateway.devstack.pki.make_pki``).

The sink runs in the test's event loop with the real awsiotsdk client, a real journal and
intake (or inside a whole in-process Daemon, for commands that must reach the local feeder).
The cloud side is a separate paho-mqtt client with its own client certificate: it records what
the gateway publishes on its events topic and sends commands on ``cat-feeder/action``.

Faults are real: the TLS broker is killed and restarted under the sink; the journal's disk is
filled. Waiting is on conditions; a test that proves a duplicate or an echo is ignored first
proves that it arrived (the sink counts every command it receives).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace, TracebackType
from typing import Any, Self

import paho.mqtt.client as mqtt
import pytest
from inprocess import journaled
from mqtt_probe import Received, Subscriber, until
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from waiting import wait_for

from gateway.clock import SystemClock
from gateway.config import Config, parse_config
from gateway.counters import InputCounters
from gateway.daemon import Daemon
from gateway.devstack.daemon import running, task_stacks
from gateway.devstack.mosquitto import Mosquitto, Tls
from gateway.devstack.pki import Pki, make_pki
from gateway.events import (
    Bowl,
    ClickType,
    Event,
    EventDeadLettered,
    EventType,
    FeedRejected,
    FeedRequested,
    FoodLevelChanged,
    GatewayStarted,
    Origin,
    RefusedBy,
)
from gateway.intake import FeedCommand, Intake
from gateway.journal import EventFilter, Journal, JournalReader
from gateway.policy import Limits
from gateway.rate import Pacer
from gateway.sinks.base import SinkContext
from gateway.sinks.iot_core import IotCoreSink, events_topic
from gateway.state import GatewayState
from gateway.wire import rfc3339_ms

GATEWAY_ID = "gw-iot"
EVENTS = f"feedmyfurbabies/{GATEWAY_ID}/events"
COMMANDS = "cat-feeder/action"  # on the cloud broker
ACTION = "cat-feeder/action"  # on the local broker, to the feeder
WITHIN = 15.0


# --- the cloud side --------------------------------------------------------------------------


class Cloud:
    """The cloud's end of the TLS broker: paho-mqtt 2.x over MQTT 5 with a client certificate.

    It subscribes to ``topics`` at every connect (a restarted broker may have forgotten it),
    records every message thread-safely, and publishes commands. ``persistent`` keeps an MQTT
    session, so a broker with persistence queues messages for it while it is away.
    """

    def __init__(
        self,
        broker: Mosquitto,
        pki: Pki,
        topics: Sequence[str] = (),
        *,
        persistent: bool = False,
    ) -> None:
        self.broker = broker
        self.topics = list(topics)
        self.persistent = persistent
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"cloud-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        self.client.tls_set(
            ca_certs=str(pki.ca), certfile=str(pki.client_cert), keyfile=str(pki.client_key)
        )
        self.client.reconnect_delay_set(min_delay=0.1, max_delay=0.5)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self._cond = threading.Condition()
        self._messages: list[Received] = []
        self.connects = 0
        self.subscribes = 0
        self.refused: str | None = None

    def start(self, timeout: float = 10.0) -> Self:
        props = Properties(PacketTypes.CONNECT)
        if self.persistent:
            props.SessionExpiryInterval = 3600
        self.client.connect(
            self.broker.host,
            self.broker.port,
            keepalive=5,
            clean_start=not self.persistent,
            properties=props,
        )
        self.client.loop_start()
        wait_for(
            lambda: self.refused or (self.subscribes if self.topics else self.connects),
            timeout=timeout,
            what="the cloud client to connect and subscribe",
        )
        assert self.refused is None, self.refused
        return self

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, code: Any, _p: Any) -> None:
        if code.is_failure:
            self.refused = str(code)
            return
        self.connects += 1
        if self.topics:
            client.subscribe([(topic, 1) for topic in self.topics])

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, codes: Any, _p: Any) -> None:
        failed = [str(c) for c in codes if c.is_failure]
        if failed:
            self.refused = ", ".join(failed)
        self.subscribes += 1

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        received = Received(
            topic=message.topic,
            payload=bytes(message.payload),
            qos=message.qos,
            retain=bool(message.retain),
            message_expiry_s=None,
        )
        with self._cond:
            self._messages.append(received)

    def messages(self, topic: str = EVENTS) -> list[Received]:
        with self._cond:
            return [m for m in self._messages if m.topic == topic]

    def bodies(self, topic: str = EVENTS) -> list[dict[str, Any]]:
        return [json.loads(m.payload) for m in self.messages(topic)]

    def publish(self, topic: str, payload: bytes | str | dict[str, Any]) -> None:
        if isinstance(payload, dict):
            payload = json.dumps(payload)
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(10.0)
        assert info.is_published(), f"the broker did not acknowledge a publish to {topic}"

    async def send(self, payload: bytes | str | dict[str, Any], topic: str = COMMANDS) -> None:
        """Publish a command without blocking the loop the gateway runs on."""
        await asyncio.to_thread(self.publish, topic, payload)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def first_arrivals(bodies: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each event once, at its first arrival (delivery is at least once)."""
    seen: set[str] = set()
    out = []
    for body in bodies:
        if body["event-id"] not in seen:
            seen.add(body["event-id"])
            out.append(body)
    return out


def whole_seconds_z(t_ms: int) -> str:
    """The published Lambda's reportedTime: RFC 3339, whole seconds, Z."""
    return datetime.fromtimestamp(t_ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- fixtures and config ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def tls_of(pki: Pki) -> Tls:
    return pki.broker_tls()


@pytest.fixture
def tls_broker(pki: Pki) -> Iterable[Mosquitto]:
    """A private Mosquitto that requires a client certificate: IoT Core, as far as the sink
    can tell."""
    with Mosquitto(tls=tls_of(pki)) as broker:
        yield broker


def make_config(
    tmp_path: Path,
    pki: Pki,
    cloud_broker: Mosquitto,
    *,
    local_broker: Mosquitto | None = None,
    **iot_core: Any,
) -> Config:
    """State in tmp_path; IoT Core is ``cloud_broker``; the local feeder sink only when a
    local broker is given; no limits, no buttons."""
    return parse_config(
        {
            "gateway_id": GATEWAY_ID,
            "state_dir": str(tmp_path / "state"),
            "broker": {
                "host": "127.0.0.1",
                "port": local_broker.port if local_broker is not None else 1,
                "reconnect_min_s": 0.05,
                "reconnect_max_s": 0.3,
            },
            "feeding": {"portion_ms": 1500, "expiry_s": 300, "ack_timeout_s": 600},
            "policy": {"min_gap_s": 0, "cap_per_bowl": 1000},
            "buttons": {"pin_factory": "mock", "gpio": [], "mqtt": []},
            "sinks": {
                "feeder": {"enabled": local_broker is not None},
                "iot_core": {
                    "endpoint": "localhost",
                    "port": cloud_broker.port,
                    "cert_file": str(pki.client_cert),
                    "key_file": str(pki.client_key),
                    "ca_file": str(pki.ca),
                    "metrics": False,  # not AWS: no SDK metrics in the username
                    "publish_rate_per_s": 100.0,
                    **iot_core,
                },
            },
        }
    )


# --- the sink on its own, with a real journal and intake -------------------------------------


@dataclass
class Parts:
    journal: Journal
    intake: Intake
    sink: IotCoreSink
    counters: InputCounters
    task: asyncio.Task[None]


@contextlib.asynccontextmanager
async def sink_running(config: Config, **sink_options: Any) -> AsyncIterator[Parts]:
    """The journal, the intake and the IoT Core sink, running in this loop until the block
    ends; then the sink is cancelled (as at shutdown) and the journal commits and closes."""
    journal = Journal.open(config.journal_file)
    journal.start()
    clock = SystemClock()
    limits = Limits(cap_per_bowl=1000, cap_period_ms=86_400_000, min_gap_ms=0)
    intake = Intake(journal, GatewayState(86_400_000), limits, config.feeding, clock)
    counters = InputCounters()
    assert config.sinks.iot_core is not None
    context = SinkContext(config, journal, intake, clock, counters)
    sink = IotCoreSink(context, config.sinks.iot_core, **sink_options)
    task = asyncio.create_task(sink.run(), name="iot-core-under-test")
    try:
        yield Parts(journal, intake, sink, counters, task)
    finally:
        task.cancel()
        await asyncio.wait({task}, timeout=15)
        if not task.done():
            raise AssertionError(f"the sink did not stop within 15 s:\n{task_stacks()}")
        if not task.cancelled() and task.exception() is not None:
            raise AssertionError("the sink died") from task.exception()
        await journal.aclose()


async def levels(intake: Intake, count: int, start: int = 0) -> Event:
    """Journal ``count`` FoodLevelChanged events at once; return the last, once durable."""
    futures = [
        intake.record_nowait(FoodLevelChanged((start + i) % 101, None), Origin.FEEDER)
        for i in range(count)
    ]
    return (await asyncio.gather(*futures))[-1]


def stored_events(config: Config) -> list[Event]:
    with JournalReader.open(config.journal_file) as reader:
        return list(reader.read_after(0, limit=100_000))


# --- publishing events -----------------------------------------------------------------------


async def test_events_reach_the_cloud_in_seq_order_with_the_contract_fields(
    tmp_path, pki, tls_broker
):
    config = make_config(tmp_path, pki, tls_broker)
    with Cloud(tls_broker, pki, [EVENTS]).start() as cloud:
        async with sink_running(config) as parts:
            intake = parts.intake
            await intake.record(GatewayStarted("test", True, GATEWAY_ID), Origin.GATEWAY)
            await intake.click_nowait("kitchen", ClickType.SINGLE)
            await intake.request_feed(FeedCommand(bowls=(Bowl.RIGHT,), origin=Origin.CLI))
            last = await levels(intake, 3, start=40)
            await until(lambda: len(cloud.messages()) >= last.seq, WITHIN, "every event")
            await until(lambda: parts.sink.cursor == last.seq, WITHIN, "the cursor at the end")
            status = parts.sink.status()

    assert status.name == "iot-core"
    assert status.connected
    assert status.cursor == last.seq
    assert status.backlog == 0
    assert status.last_error is None
    stored = stored_events(config)
    messages = cloud.messages()
    bodies = [m.json() for m in messages]
    assert [b["seq"] for b in bodies] == [e.seq for e in stored] == list(range(1, last.seq + 1))
    for body, event, message in zip(bodies, stored, messages, strict=True):
        assert message.qos == 1
        # Compact JSON: no spaces after separators.
        assert b'": ' not in message.payload
        assert body["type"] == event.type.value
        assert body["event-id"] == event.event_id
        assert body["gateway-id"] == GATEWAY_ID
        assert body["chain-hash"] == event.hash
        assert type(body["occurred-at-ms"]) is int
        assert body["occurred-at-ms"] == event.occurred_at_ms
        assert body["origin"] == event.origin.value
        assert {k: body[k] for k in event.payload.to_dict()} == event.payload.to_dict()
    started, click, cli = bodies[:3]
    assert started["type"] == "GatewayStarted"
    assert click["type"] == "FeedRequested"
    assert click["click-type"] == "SINGLE"
    assert click["button"] == "kitchen"
    assert cli["type"] == "FeedRequested"
    assert "click-type" not in cli
    assert [b["level"] for b in bodies[3:]] == [40, 41, 42]


async def test_only_the_configured_event_types_are_sent_and_the_rest_passed_over(
    tmp_path, pki, tls_broker
):
    config = make_config(tmp_path, pki, tls_broker, event_types=["FeedRequested"])
    with Cloud(tls_broker, pki, [EVENTS]).start() as cloud:
        async with sink_running(config) as parts:
            await levels(parts.intake, 5)
            wanted = [
                await parts.intake.request_feed(FeedCommand(bowls=(b,), origin=Origin.CLI))
                for b in (Bowl.LEFT, Bowl.RIGHT)
            ]
            last = await levels(parts.intake, 5)
            await until(lambda: parts.sink.cursor == last.seq, WITHIN, "the cursor at the end")
            await until(lambda: len(cloud.messages()) >= 2, WITHIN, "the two requests")
            sent = parts.sink.sent

    assert [b["seq"] for b in cloud.bodies()] == [e.seq for e in wanted]
    assert {b["type"] for b in cloud.bodies()} == {"FeedRequested"}
    assert sent == 2


async def test_the_sink_paces_every_publish_through_its_pacer(tmp_path, pki, tls_broker):
    config = make_config(tmp_path, pki, tls_broker, publish_rate_per_s=20.0)
    pacer = Pacer(20.0)
    with Cloud(tls_broker, pki, [EVENTS]).start() as cloud:
        async with sink_running(config) as defaults:
            # Built from config: the configured rate, one at a time.
            assert defaults.sink.pacer.rate_per_s == 20.0
            assert defaults.sink.pacer.burst == 1
        async with sink_running(config, pacer=pacer) as parts:
            last = await levels(parts.intake, 10)
            await until(lambda: parts.sink.cursor == last.seq, WITHIN, "ten events sent")
            sent = parts.sink.sent
    assert sent == 10
    assert pacer.booked == sent  # every publish booked its slot first
    assert len(first_arrivals(cloud.bodies())) == 10


async def test_an_event_held_in_memory_is_sent_only_once_it_is_durable(tmp_path, pki, tls_broker):
    config = make_config(tmp_path, pki, tls_broker)
    path = config.journal_file
    with Cloud(tls_broker, pki, [EVENTS]).start() as cloud:
        async with sink_running(config) as parts:
            journal = parts.journal
            journal.retry.max_s = 0.2  # retry the full disk often: the test lifts the limit
            before = await levels(parts.intake, 60)
            await until(lambda: parts.sink.cursor == before.seq, WITHIN, "the first events sent")
            # Let the cursor's own commit land before touching the writer connection.
            await until(
                lambda: committed_cursor(path) == before.seq, WITHIN, "the cursor committed"
            )
            journal.writer_pragma(f"PRAGMA max_page_count = {page_count(path)}")
            held = [
                await parts.intake.record(FoodLevelChanged(i, None), Origin.FEEDER)
                for i in range(40)
            ]
            assert any(e.held for e in held), "the disk limit never bit"
            first_held = next(e for e in held if e.held)
            durable = first_held.seq - 1
            await until(lambda: parts.sink.cursor == durable, WITHIN, "the durable ones sent")
            # The sink is waiting on the disk now, not on the broker: give it every chance to
            # (wrongly) send a held event.
            for _ in range(20):
                await asyncio.sleep(0.01)
            sent_while_held = parts.sink.sent
            assert parts.sink.cursor == durable

            journal.writer_pragma("PRAGMA max_page_count = 1073741823")
            await until(lambda: parts.sink.cursor == held[-1].seq, WITHIN, "the held ones sent")
            await until(lambda: len(cloud.messages()) >= held[-1].seq, WITHIN, "all arrived")

    assert sent_while_held == durable
    bodies = first_arrivals(cloud.bodies())
    assert [b["seq"] for b in bodies] == list(range(1, held[-1].seq + 1))
    stored = {e.seq: e for e in stored_events(config)}
    for body in bodies:
        assert body["chain-hash"] == stored[body["seq"]].hash != ""
        assert body.get("recovered", False) == stored[body["seq"]].recovered
    assert bodies[first_held.seq - 1]["recovered"] is True


def committed_cursor(path: Path, sink: str = "iot-core") -> int | None:
    with JournalReader.open(path) as reader:
        return reader.cursor(sink)


def page_count(path: Path) -> int:
    import sqlite3  # noqa: PLC0415

    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(conn.execute("PRAGMA page_count").fetchone()[0])
    finally:
        conn.close()


async def test_broker_killed_mid_stream_every_event_still_arrives_in_order(tmp_path, pki):
    # Persistence saved every second: the cloud's session (its subscription and what is
    # queued for it) survives the kill, as IoT Core's would.
    broker = Mosquitto(tls=tls_of(pki), persistent=True, extra_config=["autosave_interval 1"])
    broker.start()
    count = 150
    config = make_config(tmp_path, pki, broker, publish_rate_per_s=50.0)
    try:
        with Cloud(broker, pki, [EVENTS], persistent=True).start() as cloud:
            subscribed_at = time.time()
            db = broker.persistence_dir / "mosquitto.db"
            await until(
                lambda: db.exists() and db.stat().st_mtime > subscribed_at,
                WITHIN,
                "the broker to save the cloud's session",
            )
            async with sink_running(config) as parts:
                last = await levels(parts.intake, count)
                await until(lambda: len(cloud.messages()) >= 40, WITHIN, "the stream to start")
                broker.kill()
                await until(lambda: not parts.sink.connected, WITHIN, "the sink to notice")
                seen_at_kill = len(first_arrivals(cloud.bodies()))
                broker.start()
                await until(
                    lambda: len(first_arrivals(cloud.bodies())) == count,
                    45,
                    "every event after the restart",
                )
                await until(lambda: parts.sink.cursor == last.seq, WITHIN, "the cursor at the end")
                connects = parts.sink.connects
    finally:
        broker.close()

    assert seen_at_kill < count, "the kill landed after the stream ended"
    assert connects >= 2
    bodies = first_arrivals(cloud.bodies())
    assert [b["seq"] for b in bodies] == list(range(1, count + 1))
    assert [b["event-id"] for b in bodies] == [e.event_id for e in stored_events(config)]


async def test_offline_nothing_is_handed_over_and_everything_goes_once_back(tmp_path, pki):
    broker = Mosquitto(tls=tls_of(pki), persistent=True)
    broker.start()
    config = make_config(tmp_path, pki, broker)
    try:
        # The cloud's persistent session is on the broker before it goes away.
        with Cloud(broker, pki, [EVENTS], persistent=True).start() as cloud:
            broker.stop()  # a clean stop saves the session
            async with sink_running(config) as parts:
                last = await levels(parts.intake, 25)
                await until(lambda: parts.sink.status().last_error, WITHIN, "a connect failure")
                offline = parts.sink.status()
                sent_offline = parts.sink.sent
                broker.start()
                await until(lambda: parts.sink.cursor == last.seq, WITHIN, "the backlog sent")
                await until(lambda: len(cloud.messages()) >= 25, WITHIN, "the backlog arrived")
                online = parts.sink.status()
    finally:
        broker.close()

    assert not offline.connected
    assert offline.backlog == 25
    assert "connect failed" in (offline.last_error or "")
    assert sent_offline == 0  # nothing waits in the client's memory: the journal holds it
    assert online.connected
    assert online.backlog == 0
    assert [b["seq"] for b in first_arrivals(cloud.bodies())] == list(range(1, 26))


async def test_a_restarted_sink_sends_again_from_its_cursor(tmp_path, pki, tls_broker):
    config = make_config(tmp_path, pki, tls_broker, publish_rate_per_s=50.0)
    with Cloud(tls_broker, pki, [EVENTS]).start() as cloud:
        async with sink_running(config) as parts:
            last = await levels(parts.intake, 60)
            await until(lambda: len(cloud.messages()) >= 10, WITHIN, "the stream to start")
            # Stopped mid-stream, with publishes out: what the broker did not acknowledge is
            # still after the cursor.
        cursor_at_stop = committed_cursor(config.journal_file)
        assert cursor_at_stop is not None
        assert cursor_at_stop < last.seq
        async with sink_running(config) as again:
            await until(lambda: again.sink.cursor == last.seq, WITHIN, "the rest sent")
            await until(lambda: len(first_arrivals(cloud.bodies())) == 60, WITHIN, "all arrived")
            sent_again = again.sink.sent

    # Everything after the cursor, each once, and nothing before it.
    assert sent_again == last.seq - cursor_at_stop
    bodies = first_arrivals(cloud.bodies())
    assert [b["seq"] for b in bodies] == list(range(1, 61))


async def test_an_event_the_broker_can_never_take_is_dead_lettered_and_the_rest_go_on(
    tmp_path, pki
):
    # IoT Core takes up to 128 KB; this broker announces 2,000 bytes.
    broker = Mosquitto(tls=tls_of(pki), extra_config=["max_packet_size 2000"])
    broker.start()
    config = make_config(tmp_path, pki, broker)
    try:
        with Cloud(broker, pki, [EVENTS]).start() as cloud:
            async with sink_running(config) as parts:
                intake = parts.intake
                request = FeedRequested(
                    request_id="r-big",
                    bowls=(Bowl.LEFT,),
                    portion_ms=1000,
                    expires_at_ms=2**40,
                    origin=Origin.CLOUD,
                )
                # All three durable together: the notice about the big one comes after them.
                small, big, after = await asyncio.gather(
                    intake.record(FoodLevelChanged(10, None), Origin.FEEDER),
                    intake.record(
                        FeedRejected.of(request, "x" * 3000, RefusedBy.FEEDER), Origin.FEEDER
                    ),
                    intake.record(FoodLevelChanged(20, 10), Origin.FEEDER),
                )
                # small, after, and the notice journaled about the big one.
                await until(lambda: len(cloud.messages()) >= 3, WITHIN, "the rest to arrive")
                await until(lambda: parts.sink.cursor == after.seq + 1, WITHIN, "cursor past all")
                dead = parts.sink.dead_lettered
    finally:
        broker.close()

    assert dead == 1
    bodies = cloud.bodies()
    assert [b["seq"] for b in bodies] == [small.seq, after.seq, after.seq + 1]
    notice = bodies[-1]
    assert notice["type"] == "EventDeadLettered"
    assert notice["sink"] == "iot-core"
    # The envelope's "seq" is the notice's own; the dead event is named beside it.
    assert notice["seq"] == after.seq + 1
    assert notice["dead_seq"] == big.seq
    assert notice["dead_event_id"] == big.event_id
    assert "VALIDATION" in notice["error"]
    with JournalReader.open(config.journal_file) as reader:
        letters = reader.dead_letters("iot-core")
        stored_notice = reader.get(after.seq + 1)
    assert [(sink, seq) for sink, seq, _error, _at in letters] == [("iot-core", big.seq)]
    assert stored_notice is not None
    assert isinstance(stored_notice.payload, EventDeadLettered)
    assert stored_notice.payload.dead_seq == big.seq


async def test_a_missing_certificate_keeps_the_sink_offline_not_the_daemon_down(
    tmp_path, pki, tls_broker
):
    late_cert = tmp_path / "provisioned-later.pem"
    config = make_config(tmp_path, pki, tls_broker, cert_file=str(late_cert))
    with Cloud(tls_broker, pki, [EVENTS]).start() as cloud:
        async with sink_running(config) as parts:
            last = await levels(parts.intake, 3)
            await until(lambda: parts.sink.last_error, WITHIN, "the sink to say why")
            offline = parts.sink.status()
            alive = not parts.task.done()
            late_cert.write_bytes(pki.client_cert.read_bytes())  # provisioned
            await until(lambda: parts.sink.cursor == last.seq, WITHIN, "the backlog sent")

    assert alive
    assert not offline.connected
    assert offline.backlog == 3
    assert offline.last_error is not None
    assert str(late_cert) in offline.last_error
    assert "cert_file" in offline.last_error
    assert [b["seq"] for b in first_arrivals(cloud.bodies())] == [1, 2, 3]


def test_the_topic_names_the_gateway_and_nothing_else_is_a_placeholder(tmp_path, pki):
    nowhere: Any = SimpleNamespace(port=8883)  # only its port is read
    config = make_config(tmp_path, pki, nowhere, topic="fmfb/{gateway_id}/ev{x}")
    assert config.sinks.iot_core is not None
    assert events_topic(config.sinks.iot_core, "gw-7") == "fmfb/gw-7/ev{x}"


def test_the_cloud_libraries_are_imported_only_when_the_sink_runs():
    code = (
        "import sys, gateway.sinks.iot_core\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('awscrt', 'awsiot'))\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr


# --- commands from the cloud -----------------------------------------------------------------


async def test_malformed_commands_are_counted_not_journaled_and_the_sink_carries_on(
    tmp_path, pki, tls_broker
):
    config = make_config(tmp_path, pki, tls_broker)
    bad = [
        b"not json",
        b'{"event": "TRIPLE"}',
        b'{"reportedTime": "2024-01-01T00:00:00Z"}',
        b"\xff",
    ]
    with Cloud(tls_broker, pki).start() as cloud:
        async with sink_running(config) as parts:
            await until(lambda: parts.sink.subscribed, WITHIN, "the command subscription")
            seq_before = parts.journal.visible_seq
            for payload in bad:
                await cloud.send(payload)
            await until(lambda: parts.sink.commands_received == len(bad), WITHIN, "bad commands")
            seq_after_bad = parts.journal.visible_seq
            counts = dict(parts.counters.counts)
            await cloud.send({"event": "LONG", "id": "after-the-garbage"})
            await until(lambda: parts.sink.commands_received == len(bad) + 1, WITHIN, "a good one")
            await until(
                lambda: parts.journal.durable_seq > seq_after_bad, WITHIN, "the good one journaled"
            )

    assert seq_after_bad == seq_before
    assert parts.counters.total_bad == len(bad)
    assert sum(counts.values()) == len(bad)
    assert all(key.startswith(f"iot:{COMMANDS}:") for key in counts)
    assert parts.sink.commands_bad == len(bad)
    last = stored_events(config)[-1]
    assert isinstance(last.payload, FeedRequested)
    assert last.payload.request_id == "after-the-garbage"
    assert last.payload.origin is Origin.CLOUD
    assert last.payload.bowls == (Bowl.LEFT, Bowl.RIGHT)


async def test_a_lost_session_is_subscribed_again(tmp_path, pki, tls_broker):
    config = make_config(tmp_path, pki, tls_broker)
    with Cloud(tls_broker, pki).start() as cloud:
        async with sink_running(config) as parts:
            sink = parts.sink
            await until(lambda: sink.subscribed, WITHIN, "the command subscription")
            tls_broker.restart()  # no persistence: every session and subscription is gone
            await until(lambda: sink.connects >= 2 and sink.subscribed, WITHIN, "resubscribed")
            await asyncio.to_thread(
                wait_for, lambda: cloud.connects >= 2, WITHIN, 0.01, "the cloud back"
            )
            await cloud.send({"event": "SINGLE", "id": "after-restart"})
            await until(lambda: sink.commands_received == 1, WITHIN, "the command")
            await until(lambda: requests_in(parts.journal), WITHIN, "the request journaled")

    [request] = requests_in_file(config)
    assert request.request_id == "after-restart"


async def test_a_command_sent_while_the_gateway_was_away_arrives_when_it_is_back(
    tmp_path, pki, tls_broker
):
    config = make_config(tmp_path, pki, tls_broker)
    with Cloud(tls_broker, pki).start() as cloud:
        async with sink_running(config) as parts:
            await until(lambda: parts.sink.subscribed, WITHIN, "the command subscription")
        # The gateway is down (its session stays on the broker for the echo window).
        await cloud.send({"event": "DOUBLE", "id": "while-away"})
        async with sink_running(config) as again:
            await until(lambda: again.sink.commands_received == 1, WITHIN, "the queued command")
            await until(lambda: requests_in(again.journal), WITHIN, "the request journaled")

    [request] = requests_in_file(config)
    assert request.request_id == "while-away"
    assert request.bowls == (Bowl.RIGHT,)


async def test_a_command_is_acknowledged_only_once_journaled(tmp_path, pki, tls_broker):
    config = make_config(tmp_path, pki, tls_broker)
    with Cloud(tls_broker, pki).start() as cloud:
        async with sink_running(config) as parts:
            await until(lambda: parts.sink.subscribed, WITHIN, "the command subscription")
            taken: list[Any] = []

            def never_journaled(command: Any) -> asyncio.Future[Event]:
                # The daemon dies before the append is durable: its future never resolves.
                taken.append(command)
                return asyncio.get_running_loop().create_future()

            parts.intake.remote_command_nowait = never_journaled  # type: ignore[method-assign]
            await cloud.send({"event": "SINGLE", "id": "journal-first"})
            await until(lambda: taken, WITHIN, "the command to reach the intake")
        # Never acknowledged: the broker sends it again to the next run.
        async with sink_running(config) as again:
            await until(lambda: again.sink.commands_received == 1, WITHIN, "the command again")
            await until(lambda: requests_in(again.journal), WITHIN, "the request journaled")
        # Acknowledged this time: a third run gets only what is sent next.
        async with sink_running(config) as third:
            await until(lambda: third.sink.subscribed, WITHIN, "the command subscription")
            await cloud.send({"event": "DOUBLE", "id": "next"})
            await until(lambda: len(requests_in(third.journal)) == 2, WITHIN, "the next request")
            received_by_third = third.sink.commands_received

    assert [c.request_id for c in taken] == ["journal-first"]
    assert [r.request_id for r in requests_in_file(config)] == ["journal-first", "next"]
    assert received_by_third == 1


def requests_in(journal: Journal) -> list[FeedRequested]:
    return [
        e.payload
        for e in journal.reader.query(EventFilter(types=(EventType.FEED_REQUESTED.value,)))
        if isinstance(e.payload, FeedRequested)
    ]


def requests_in_file(config: Config) -> list[FeedRequested]:
    return [e.payload for e in stored_events(config) if isinstance(e.payload, FeedRequested)]


# --- commands end to end, in a whole Daemon --------------------------------------------------


@contextlib.asynccontextmanager
async def gateway_running(config: Config) -> AsyncIterator[tuple[Daemon, IotCoreSink]]:
    """A whole daemon in this loop (it wires the IoT Core sink from ``[sinks.iot_core]``), its
    IoT Core sink subscribed; stopped as SIGTERM would."""
    async with running(config) as daemon:
        sink = next(s for s in daemon.sinks if isinstance(s, IotCoreSink))
        await until(lambda: sink.subscribed, WITHIN, "the IoT Core sink's subscription")
        yield daemon, sink


async def sentinel(daemon: Daemon, feeder: Subscriber, seen: int) -> list[dict[str, Any]]:
    """Ask for a feed from the CLI and wait for it at the feeder: the feeder sink sends in
    seq order, so once it is there, nothing journaled before it is still on its way."""
    assert daemon.intake is not None
    control = await daemon.intake.request_feed(FeedCommand(bowls=(Bowl.LEFT,), origin=Origin.CLI))
    assert isinstance(control.payload, FeedRequested)
    messages = await feeder.wait_count(ACTION, seen + 1, within=WITHIN)
    bodies = [m.json() for m in messages]
    assert bodies[-1]["id"] == control.payload.request_id
    return bodies[:-1]


async def test_a_cloud_command_feeds_once_and_the_same_command_again_is_a_duplicate(
    tmp_path, pki, tls_broker, broker
):
    config = make_config(tmp_path, pki, tls_broker, local_broker=broker)
    command = {
        "event": "DOUBLE",
        "reportedTime": rfc3339_ms(time.time_ns() // 1_000_000),
        "id": "cloud-cmd-1",
    }
    with Subscriber.on(broker, ACTION) as feeder, Cloud(tls_broker, pki).start() as cloud:
        async with gateway_running(config) as (daemon, sink):
            await cloud.send(command)
            [action] = await feeder.wait_count(ACTION, 1, within=WITHIN)
            [requested] = await until(
                lambda: journaled(daemon, EventType.FEED_REQUESTED), WITHIN, "the request"
            )
            await cloud.send(command)
            await until(lambda: sink.commands_received == 2, WITHIN, "the repeat to arrive")
            [rejected] = await until(
                lambda: journaled(daemon, EventType.FEED_REJECTED), WITHIN, "the rejection"
            )
            fed = await sentinel(daemon, feeder, seen=1)

    assert isinstance(requested.payload, FeedRequested)
    assert requested.payload.request_id == "cloud-cmd-1"
    assert requested.payload.origin is Origin.CLOUD
    assert requested.payload.bowls == (Bowl.RIGHT,)
    assert requested.origin is Origin.CLOUD
    body = action.json()
    assert body["id"] == "cloud-cmd-1"
    assert body["event"] == "DOUBLE"
    assert body["bowls"] == ["right"]
    assert isinstance(rejected.payload, FeedRejected)
    assert rejected.payload.reason == "duplicate"
    assert rejected.payload.request_id == "cloud-cmd-1"
    assert rejected.seq > requested.seq
    assert [b["id"] for b in fed] == ["cloud-cmd-1"]  # no second action


async def test_an_echo_of_our_own_press_is_rejected_and_feeds_nothing(
    tmp_path, pki, tls_broker, broker
):
    config = make_config(tmp_path, pki, tls_broker, local_broker=broker)
    with Subscriber.on(broker, ACTION) as feeder, Cloud(tls_broker, pki).start() as cloud:
        async with gateway_running(config) as (daemon, sink):
            assert daemon.intake is not None
            now = time.time_ns() // 1_000_000
            # What the EventBridge sink does after sending a button press.
            daemon.intake.echoes.forwarded(ClickType.SINGLE, now, now)
            await cloud.send({"event": "SINGLE", "reportedTime": whole_seconds_z(now)})
            await until(lambda: sink.commands_received == 1, WITHIN, "the echo to arrive")
            [rejected] = await until(
                lambda: journaled(daemon, EventType.FEED_REJECTED), WITHIN, "the rejection"
            )
            fed = await sentinel(daemon, feeder, seen=0)
            requested = journaled(daemon, EventType.FEED_REQUESTED)

    assert isinstance(rejected.payload, FeedRejected)
    assert rejected.payload.reason == "echo"
    assert rejected.payload.origin is Origin.CLOUD
    assert rejected.payload.click_type is ClickType.SINGLE
    assert fed == []
    assert len(requested) == 1  # the sentinel only


async def test_two_presses_in_one_second_absorb_two_echoes_and_a_third_command_is_real(
    tmp_path, pki, tls_broker, broker
):
    config = make_config(tmp_path, pki, tls_broker, local_broker=broker)
    with Subscriber.on(broker, ACTION) as feeder, Cloud(tls_broker, pki).start() as cloud:
        async with gateway_running(config) as (daemon, sink):
            assert daemon.intake is not None
            now = time.time_ns() // 1_000_000
            daemon.intake.echoes.forwarded(ClickType.LONG, now, now)
            daemon.intake.echoes.forwarded(ClickType.LONG, now, now)
            echo = {"event": "LONG", "reportedTime": whole_seconds_z(now)}
            for _ in range(3):
                await cloud.send(echo)
            await until(lambda: sink.commands_received == 3, WITHIN, "three commands")
            [action] = await feeder.wait_count(ACTION, 1, within=WITHIN)
            fed = await sentinel(daemon, feeder, seen=1)
            outcomes = await until(
                lambda: (
                    len(o := journaled(daemon, EventType.FEED_REJECTED, EventType.FEED_REQUESTED))
                    == 4
                    and o
                ),
                WITHIN,
                "three outcomes and the sentinel",
            )

    rejected = [e.payload for e in outcomes[:3] if isinstance(e.payload, FeedRejected)]
    real = [e.payload for e in outcomes[:3] if isinstance(e.payload, FeedRequested)]
    assert [r.reason for r in rejected] == ["echo", "echo"]
    assert len(real) == 1
    assert isinstance(outcomes[2].payload, FeedRequested)  # the third one
    assert real[0].origin is Origin.CLOUD
    assert real[0].bowls == (Bowl.LEFT, Bowl.RIGHT)
    assert action.json()["id"] == real[0].request_id
    assert [b["id"] for b in fed] == [real[0].request_id]
