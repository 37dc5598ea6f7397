"""The sink contract, written once and run against every sink in the registry.

Every sink, whatever it delivers to, promises (docs/architecture.md, "Sinks"):

- every event it wants arrives, first arrivals in seq order;
- its cursor moves only over what the other side acknowledged: with the link cut, nothing
  is lost and the cursor stays; once the link is back, the backlog goes in order;
- after a restart it goes on from its cursor (nothing before it is sent again);
- its type filter passes the other events over, and the cursor moves past them;
- a sink that must carry the chain hash sends only durable events (the feeder, which must
  not wait on the disk, sends held ones at once);
- an event the other side can never take is dead-lettered and the rest go on;
- its status is a typed SinkStatus that says all of this.

Each rig is the real other side: a JSONL file, a private Mosquitto with the feeder's topic,
moto's EventBridge behind a fault proxy with the published rule and an SQS target, and a TLS
Mosquitto standing in for IoT Core, reached by the real awsiotsdk client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from mqtt_probe import Subscriber, until

from gateway.clock import SystemClock
from gateway.config import Config, parse_config
from gateway.counters import InputCounters
from gateway.devstack.mosquitto import Mosquitto
from gateway.echo import EchoLedger
from gateway.events import (
    Bowl,
    Event,
    EventDeadLettered,
    EventType,
    FeedRejected,
    FeedRequested,
    FoodLevelChanged,
    Origin,
    RefusedBy,
)
from gateway.intake import FeedCommand, Intake
from gateway.journal import Journal, JournalReader
from gateway.policy import Limits
from gateway.sinks.base import Sink, SinkContext
from gateway.sinks.registry import SINKS, sink_class
from gateway.state import GatewayState
from gateway.status import SinkStatus

WITHIN = 30.0
ACTION = "cat-feeder/action"
IOT_EVENTS = "fmfb/gw-contract/events"
GATEWAY_ID = "gw-contract"


# --- the rigs: the other side of each sink ----------------------------------------------------


@dataclass
class Rig:
    """The far end of one sink: where its deliveries land, and how to cut its link."""

    section: str
    settings: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)
    durable_only: bool = True
    # What a sink of this kind reads by default (the feeder: requests only).
    default_types: frozenset[EventType] | None = None

    def arrived(self) -> list[int]:
        """Seqs that reached the other side, in arrival order (copies included)."""
        raise NotImplementedError

    async def cut(self, sink: Sink) -> None:
        raise NotImplementedError

    def restore(self) -> None:
        """Blocking on purpose: the sink's loop cannot act before the far end listens again."""
        raise NotImplementedError

    async def poison(self, intake: Intake, journal: Journal) -> Event | None:
        """Journal an event this far end can never take (None: it takes anything)."""
        return None

    def close(self) -> None:
        pass


class JsonlRig(Rig):
    def __init__(self, tmp_path: Path) -> None:
        self.folder = tmp_path / "shipper"
        self.folder.mkdir()
        self.path = self.folder / "events.jsonl"
        self.away = tmp_path / "shipper-away"
        super().__init__("jsonl", {"path": str(self.path)})

    def arrived(self) -> list[int]:
        if not self.path.exists():
            return []
        lines = self.path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line)["seq"] for line in lines]

    async def cut(self, sink: Sink) -> None:
        self.folder.rename(self.away)  # the shipper's volume is gone: open() fails

    def restore(self) -> None:
        self.away.rename(self.folder)


class FeederRig(Rig):
    def __init__(self, broker: Mosquitto) -> None:
        self.broker = broker
        self.seq_of: dict[str, int] = {}  # request id -> seq, filled as events are journaled
        self.subs = [Subscriber.on(broker, ACTION)]
        super().__init__(
            "feeder",
            {},
            {
                "broker": {
                    "host": broker.host,
                    "port": broker.port,
                    "reconnect_min_s": 0.05,
                    "reconnect_max_s": 0.3,
                }
            },
            durable_only=False,
            default_types=frozenset({EventType.FEED_REQUESTED}),
        )

    def arrived(self) -> list[int]:
        ids = [m.json()["id"] for sub in self.subs for m in sub.messages(ACTION)]
        return [self.seq_of[i] for i in ids]

    async def cut(self, sink: Sink) -> None:
        await until(lambda: sink.status().connected, WITHIN, "the feeder link")
        self.broker.stop()
        await until(lambda: not sink.status().connected, WITHIN, "the sink to see it go")

    def restore(self) -> None:
        self.broker.restart()
        self.subs.append(Subscriber.on(self.broker, ACTION))

    def close(self) -> None:
        for sub in self.subs:
            with contextlib.suppress(Exception):
                sub.stop()


class EventBridgeRig(Rig):
    def __init__(self, moto: Any, feeds: Any, proxy: Any) -> None:
        self.moto = moto
        self.feeds = feeds
        self.proxy = proxy
        super().__init__(
            "eventbridge",
            {
                "endpoint_url": proxy.url,
                "max_attempts": 1,
                "timeout_s": 15.0,
                "retry_min_s": 0.05,
                "retry_max_s": 0.3,
            },
            {"cloud": {"aws": {"region": "us-east-1"}}},
        )

    def arrived(self) -> list[int]:
        from gateway.devstack.aws import seqs  # noqa: PLC0415 - boto3 only for the cloud rigs

        self.moto.drain(self.feeds)
        return seqs(self.feeds.seen, GATEWAY_ID)

    async def cut(self, sink: Sink) -> None:
        self.proxy.refuse()

    def restore(self) -> None:
        self.proxy.accept()

    async def poison(self, intake: Intake, journal: Journal) -> Event | None:
        from fault_proxy import FailEntries  # noqa: PLC0415

        doomed = journal.visible_seq + 1
        self.proxy.always(
            FailEntries(
                lambda _i, entry: (
                    ("MalformedDetail", "injected")
                    if json.loads(entry["Detail"])["seq"] == doomed
                    else None
                )
            )
        )
        event = await intake.record(FoodLevelChanged(42, None), Origin.FEEDER)
        assert event.seq == doomed
        return event


class IotCoreRig(Rig):
    def __init__(self, tmp_path: Path, pki: Any) -> None:
        from test_iot_core_sink import Cloud, tls_of  # noqa: PLC0415 - awscrt only here

        # IoT Core takes up to 128 KB; this broker announces 2,000 bytes, so a big event is
        # one it can never take. Persistent, as IoT Core is, with one persistent subscriber:
        # across a restart the broker keeps the cloud's subscription and queues for it what
        # the sink publishes before it is back, so what it received is in the order sent.
        # (A second, fresh subscriber added at the restart raced the old one's resubscribing:
        # each saw a different part of the backlog, and their records, put end to end, were
        # not the order of arrival.)
        self.broker = Mosquitto(
            tls=tls_of(pki), persistent=True, extra_config=["max_packet_size 2000"]
        )
        self.broker.start()
        self.cloud = Cloud(self.broker, pki, [IOT_EVENTS], persistent=True).start()
        super().__init__(
            "iot_core",
            {
                "endpoint": "localhost",
                "port": self.broker.port,
                "cert_file": str(pki.client_cert),
                "key_file": str(pki.client_key),
                "ca_file": str(pki.ca),
                "metrics": False,
                "publish_rate_per_s": 100.0,
                "topic": "fmfb/{gateway_id}/events",
                "retry_min_s": 0.05,
                "retry_max_s": 0.3,
            },
        )

    def arrived(self) -> list[int]:
        return [b["seq"] for b in self.cloud.bodies(IOT_EVENTS)]

    async def cut(self, sink: Sink) -> None:
        await until(lambda: sink.status().connected, WITHIN, "the IoT Core link")
        self.broker.stop()
        await until(lambda: not sink.status().connected, WITHIN, "the sink to see it go")

    def restore(self) -> None:
        self.broker.restart()  # the cloud reconnects by itself (its client's own retries)

    async def poison(self, intake: Intake, journal: Journal) -> Event | None:
        request = FeedRequested(
            request_id="r-big",
            bowls=(Bowl.LEFT,),
            portion_ms=1000,
            expires_at_ms=2**40,
            origin=Origin.CLOUD,
        )
        return await intake.record(
            FeedRejected.of(request, "x" * 3000, RefusedBy.FEEDER), Origin.FEEDER
        )

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.cloud.stop()
        self.broker.close()


@pytest.fixture(params=sorted(SINKS))
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    kind = request.param
    made: Rig
    if kind == "jsonl":
        made = JsonlRig(tmp_path)
    elif kind == "feeder":
        made = FeederRig(request.getfixturevalue("broker"))
    elif kind == "eventbridge":
        made = EventBridgeRig(
            request.getfixturevalue("moto"),
            request.getfixturevalue("feeds"),
            request.getfixturevalue("proxy"),
        )
    elif kind == "iot_core":
        made = IotCoreRig(tmp_path, request.getfixturevalue("pki"))
    else:  # a new sink must add its rig here: the contract is not optional
        pytest.fail(f"no contract rig for the sink {kind!r}")
    try:
        yield made
    finally:
        made.close()


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from gateway.devstack.pki import make_pki  # noqa: PLC0415

    return make_pki(tmp_path_factory.mktemp("pki"))


# --- the harness: a real journal and intake, the sink built as the daemon builds it -----------


def make_config(tmp_path: Path, rig: Rig, **settings: Any) -> Config:
    sinks: dict[str, Any] = {"feeder": {"enabled": False}}
    sinks[rig.section] = {**rig.settings, **settings}
    return parse_config(
        {
            "gateway_id": GATEWAY_ID,
            "state_dir": str(tmp_path / "state"),
            "feeding": {"portion_ms": 1000, "expiry_s": 600, "ack_timeout_s": 600},
            "policy": {"min_gap_s": 0, "cap_per_bowl": 1000},
            "buttons": {"pin_factory": "mock", "gpio": [], "mqtt": []},
            "sinks": sinks,
            **rig.config,
        }
    )


@dataclass
class Running:
    config: Config
    rig: Rig
    journal: Journal
    intake: Intake
    sink: Sink
    task: asyncio.Task[None]

    @property
    def status(self) -> SinkStatus:
        if self.task.done():
            self.task.result()  # raises what stopped the sink
        return self.sink.status()

    def wants(self, event: Event) -> bool:
        types = self.config.sinks.configured()[self.rig.section].event_types
        wanted = self.rig.default_types if types is None else frozenset(types)
        return wanted is None or event.type in wanted

    async def add(self, count: int) -> list[Event]:
        """``count`` events: feed requests and food levels, alternating."""
        events = []
        for i in range(count):
            if i % 2 == 0:
                command = FeedCommand(bowls=(Bowl.LEFT,), origin=Origin.CLI)
                event = await self.intake.request_feed(command)
            else:
                event = await self.intake.record(FoodLevelChanged(i % 90, None), Origin.FEEDER)
            self.note(event)
            events.append(event)
        return events

    def note(self, event: Event) -> None:
        if isinstance(self.rig, FeederRig) and isinstance(event.payload, FeedRequested):
            self.rig.seq_of[event.payload.request_id] = event.seq

    async def all_arrived(self, events: list[Event]) -> list[int]:
        """Wait until every wanted event arrived; the first arrivals, in arrival order."""
        wanted = {e.seq for e in events if self.wants(e)}

        def firsts() -> list[int]:
            seen: list[int] = []
            for seq in self.rig.arrived():
                if seq not in seen:
                    seen.append(seq)
            return seen

        await until(lambda: wanted <= set(firsts()), WITHIN, f"{len(wanted)} events to arrive")
        return [s for s in firsts() if s in wanted]


@contextlib.asynccontextmanager
async def running(config: Config, rig: Rig) -> AsyncIterator[Running]:
    journal = Journal.open(config.journal_file)
    journal.start()
    clock = SystemClock()
    intake = Intake(
        journal,
        GatewayState(86_400_000),
        Limits(cap_per_bowl=1000, cap_period_ms=86_400_000, min_gap_ms=0),
        config.feeding,
        clock,
        echoes=EchoLedger(600_000),
    )
    settings = config.sinks.configured()[rig.section]
    sink = sink_class(rig.section)(
        SinkContext(config, journal, intake, clock, InputCounters()), settings
    )
    task = asyncio.create_task(sink.run(), name=f"{rig.section}-under-contract")
    try:
        yield Running(config, rig, journal, intake, sink, task)
    finally:
        task.cancel()
        await asyncio.wait({task}, timeout=15)
        await journal.aclose()


def in_order(events: list[Event], wants: Callable[[Event], bool]) -> list[int]:
    return [e.seq for e in events if wants(e)]


# --- the contract -----------------------------------------------------------------------------


async def test_every_wanted_event_arrives_in_seq_order(tmp_path, rig):
    config = make_config(tmp_path, rig)
    async with running(config, rig) as run:
        events = await run.add(12)
        first = await run.all_arrived(events)
        await until(lambda: run.status.cursor == events[-1].seq, WITHIN, "the cursor at the end")
        status = run.status

    assert first == in_order(events, run.wants)
    assert isinstance(status, SinkStatus)
    assert status.name == run.sink.name
    assert status.backlog == 0
    assert status.delivered >= len(first)
    assert status.last_success_ms is not None
    assert status.dead_lettered == 0
    with JournalReader.open(config.journal_file) as reader:
        assert reader.cursor(run.sink.name) == events[-1].seq


async def test_the_cursor_moves_only_over_what_was_acknowledged(tmp_path, rig):
    config = make_config(tmp_path, rig)
    async with running(config, rig) as run:
        before = await run.add(2)
        await run.all_arrived(before)
        await until(lambda: run.status.cursor == before[-1].seq, WITHIN, "the first ones sent")
        await rig.cut(run.sink)
        during = await run.add(6)
        wanted_during = {e.seq for e in during if run.wants(e)}
        # Offline: the cursor waits before the first wanted event of the outage, the status
        # says so, and none of them has arrived.
        first_wanted = min(wanted_during)
        await until(
            lambda: not run.status.connected and run.status.last_error is not None,
            WITHIN,
            "the status to say the link is down",
        )
        stuck = run.status
        assert stuck.cursor < first_wanted
        assert stuck.backlog >= len(wanted_during)
        assert not wanted_during & set(rig.arrived())
        rig.restore()
        first = await run.all_arrived(before + during)
        await until(lambda: run.status.cursor == during[-1].seq, WITHIN, "the backlog sent")
        status = run.status

    assert first == in_order(before + during, run.wants)
    assert status.connected
    assert status.last_error is None


async def test_a_restarted_sink_goes_on_from_its_cursor(tmp_path, rig):
    config = make_config(tmp_path, rig)
    async with running(config, rig) as run:
        before = await run.add(5)
        await run.all_arrived(before)
        await until(lambda: run.status.cursor == before[-1].seq, WITHIN, "all sent")
    arrived_before = len(rig.arrived())
    async with running(config, rig) as run:
        assert run.status.cursor == before[-1].seq
        after = await run.add(5)
        first = await run.all_arrived(before + after)
        await until(lambda: run.status.cursor == after[-1].seq, WITHIN, "the new ones sent")
        resent = [s for s in rig.arrived()[arrived_before:] if s <= before[-1].seq]

    assert first == in_order(before + after, run.wants)
    assert resent == []  # a clean stop saved the cursor: nothing before it goes again


async def test_the_type_filter_passes_the_rest_over(tmp_path, rig):
    config = make_config(tmp_path, rig, event_types=["FeedRequested"])
    async with running(config, rig) as run:
        events = await run.add(10)
        first = await run.all_arrived(events)
        await until(lambda: run.status.cursor == events[-1].seq, WITHIN, "the cursor past all")
        status = run.status

    requests = [e.seq for e in events if isinstance(e.payload, FeedRequested)]
    assert first == requests
    assert not set(rig.arrived()) - set(requests)
    assert status.passed_over >= len(events) - len(requests)


async def test_durable_events_only_except_where_feeding_must_not_wait(tmp_path, rig):
    config = make_config(tmp_path, rig)
    async with running(config, rig) as run:
        journal = run.journal
        journal.retry.max_s = 0.2  # retry the full disk often: the test lifts the limit
        warm = await run.add(2)
        await run.all_arrived(warm)
        await until(lambda: run.status.cursor == warm[-1].seq, WITHIN, "the first ones sent")
        journal.writer_pragma(f"PRAGMA max_page_count = {page_count(config.journal_file)}")
        held: list[Event] = []
        for _ in range(40):
            held += await run.add(2)
            if any(e.held for e in held):
                break
        held += await run.add(4)
        first_held = next((e for e in held if e.held), None)
        assert first_held is not None, "the disk limit never bit"
        if rig.durable_only:
            durable = first_held.seq - 1
            await until(lambda: run.status.cursor >= durable, WITHIN, "the durable ones sent")
            # Waiting on the disk now: a held event must not be sent meanwhile.
            for _ in range(20):
                await asyncio.sleep(0.01)  # a window in which nothing may happen
            assert run.status.cursor < first_held.seq
            assert not {e.seq for e in held if e.held} & set(rig.arrived())
        else:
            wanted_held = [e for e in held if e.held and run.wants(e)]
            await run.all_arrived(wanted_held)  # the feeder did not wait for the disk
        journal.writer_pragma("PRAGMA max_page_count = 1073741823")
        await journal.wait_durable(held[-1].seq)
        first = await run.all_arrived(warm + held)

    assert first == in_order(warm + held, run.wants)


async def test_an_event_that_can_never_be_delivered_is_dead_lettered(tmp_path, rig):
    config = make_config(tmp_path, rig, event_types=None)
    async with running(config, rig) as run:
        poison = await rig.poison(run.intake, run.journal)
        if poison is None:
            pytest.skip(f"{rig.section} takes every event: nothing to dead-letter")
        after = await run.add(3)
        await until(lambda: run.status.dead_lettered == 1, WITHIN, "the dead letter")
        await until(lambda: run.status.cursor >= after[-1].seq, WITHIN, "the cursor past it")
        first = await run.all_arrived(after)

    assert first == in_order(after, run.wants)
    assert poison.seq not in rig.arrived()
    with JournalReader.open(config.journal_file) as reader:
        letters = reader.dead_letters(run.sink.name)
        notices = [
            e.payload
            for e in reader.read_after(poison.seq, 100)
            if isinstance(e.payload, EventDeadLettered)
        ]
    assert [letter[1] for letter in letters] == [poison.seq]
    assert [(n.sink, n.dead_seq) for n in notices] == [(run.sink.name, poison.seq)]


def page_count(path: Path) -> int:
    import sqlite3  # noqa: PLC0415

    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(conn.execute("PRAGMA page_count").fetchone()[0])
    finally:
        conn.close()


def test_every_registered_sink_has_a_config_section_and_a_rig():
    from gateway.config import SinksConfig  # noqa: PLC0415

    assert set(SINKS) == set(SinksConfig.model_fields)
