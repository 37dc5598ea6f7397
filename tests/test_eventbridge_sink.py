"""The EventBridge sink against moto's server, through a fault-injecting proxy.

The real boto3 client sends PutEvents over HTTP to ``tests/fault_proxy.py``, which forwards to
moto (``gateway/devstack/aws.py``); a rule on the bus sends every event of the source to an SQS
queue, and the tests read that queue to see what EventBridge would have delivered. The sink
runs in the test's event loop on a real journal; events come in through the intake, as they
do in the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from e2e_probe import Probe
from fault_proxy import HTTP_500, THROTTLE, FaultProxy, Reset, Status, fail_indices
from mqtt_probe import until as probe_until

from gateway.backoff import Backoff
from gateway.clock import SystemClock
from gateway.config import Config, parse_config
from gateway.counters import InputCounters
from gateway.devstack.aws import Feeds, MotoServer, seqs
from gateway.devstack.daemon import running
from gateway.devstack.mosquitto import Mosquitto
from gateway.echo import EchoLedger
from gateway.events import (
    Bowl,
    ClickType,
    Event,
    EventDeadLettered,
    EventType,
    FeederOnline,
    FeedRequested,
    FoodLevelChanged,
    GatewayStarted,
    Origin,
    Payload,
)
from gateway.intake import FeedCommand, Intake
from gateway.journal import Journal, JournalReader
from gateway.policy import Limits
from gateway.sinks.base import SinkContext
from gateway.sinks.eventbridge import EventBridgeSink
from gateway.sinks.eventbridge_calls import NO_CREDENTIALS
from gateway.state import GatewayState

T = TypeVar("T")

GATEWAY_ID = "gw-eb-test"
BUTTON = "kitchen"


# --- fixtures --------------------------------------------------------------------------------


def make_config(tmp_path: Path, endpoint: str, **eventbridge: Any) -> Config:
    return parse_config(
        {
            "gateway_id": GATEWAY_ID,
            "state_dir": str(tmp_path / "state"),
            "policy": {"cap_per_bowl": 1000, "min_gap_s": 0},
            "buttons": {"pin_factory": "mock", "gpio": [], "mqtt": []},
            "sinks": {
                "eventbridge": {
                    "endpoint_url": endpoint,
                    "max_attempts": 2,
                    "timeout_s": 15.0,  # generous: a slow CI machine must not turn into a retry
                    "retry_min_s": 0.05,
                    "retry_max_s": 0.3,
                    **eventbridge,
                }
            },
        }
    )


@dataclass
class Harness:
    config: Config
    journal: Journal
    intake: Intake
    sink: EventBridgeSink | None = None
    task: asyncio.Task[None] | None = None

    def start_sink(self) -> EventBridgeSink:
        settings = self.config.sinks.eventbridge
        assert settings is not None
        context = SinkContext(
            self.config, self.journal, self.intake, SystemClock(), InputCounters()
        )
        self.sink = EventBridgeSink(context, settings)
        # A setup problem is retried slowly in production; quickly here.
        self.sink._config_backoff = Backoff(0.1, 0.3)
        self.task = asyncio.create_task(self.sink.run(), name="eventbridge-under-test")
        return self.sink

    @property
    def running_sink(self) -> EventBridgeSink:
        assert self.sink is not None
        if self.task is not None and self.task.done():
            self.task.result()  # raises what killed it
        return self.sink

    async def press(self, click: ClickType = ClickType.SINGLE) -> Event:
        event = await self.intake.click_nowait(BUTTON, click)
        assert isinstance(event.payload, FeedRequested)
        return event

    async def record(self, payload: Payload) -> Event:
        return await self.intake.record(payload, Origin.FEEDER)

    async def some(self, n: int) -> list[Event]:
        """n events of a few kinds: presses, food levels, availability."""
        out: list[Event] = []
        for i in range(n):
            if i % 3 == 0:
                out.append(await self.press(list(ClickType)[(i // 3) % 3]))
            elif i % 3 == 1:
                out.append(await self.record(FoodLevelChanged(i % 100, None)))
            else:
                out.append(await self.record(FeederOnline()))
        return out


@contextlib.asynccontextmanager
async def harness(config: Config) -> AsyncIterator[Harness]:
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
    h = Harness(config, journal, intake)
    try:
        yield h
    finally:
        if h.task is not None:
            h.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await h.task
        await journal.aclose()


async def until(predicate: Callable[[], T], within: float = 20.0, what: str = "condition") -> T:
    """mqtt_probe's until, with this file's longer default (moto is slow on a loaded CI)."""
    return await probe_until(predicate, within, what)


async def arrived(
    moto: MotoServer,
    feeds: Feeds,
    holds: Callable[[list[dict[str, Any]]], bool],
    *,
    within: float = 20.0,
    what: str = "events at the SQS target",
    via_api: bool = False,
) -> list[dict[str, Any]]:
    """Drain the queue as we go (off the loop) until ``holds(everything seen)``."""
    deadline = time.monotonic() + within
    while True:
        await asyncio.to_thread(moto.drain, feeds, via_api=via_api)
        if holds(feeds.seen):
            return feeds.seen
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {within:.1f}s waiting for {what}; seqs seen: {seqs(feeds.seen)}"
            )
        await asyncio.sleep(0.02)


def all_of(expected: list[int]) -> Callable[[list[dict[str, Any]]], bool]:
    want = set(expected)
    return lambda seen: want <= set(seqs(seen))


def wire_seqs(proxy: FaultProxy) -> list[list[int]]:
    """The seq of every entry of every PutEvents request, as it crossed the proxy."""
    return [[json.loads(e["Detail"])["seq"] for e in batch] for batch in proxy.put_events]


def last_copies_in_order(arrivals: list[int]) -> bool:
    """Taking each event's last copy, are they in seq order? (What a receiver that lets a
    later copy win sees after a resend.)"""
    last = {seq: i for i, seq in enumerate(arrivals)}
    return sorted(last, key=last.__getitem__) == sorted(last)


# --- delivery --------------------------------------------------------------------------------


async def test_delivers_every_event_in_seq_order_with_the_contract_fields(
    tmp_path: Path, moto: MotoServer, feeds: Feeds, proxy: FaultProxy
) -> None:
    config = make_config(tmp_path, proxy.url)
    async with harness(config) as h:
        before = await h.some(12)  # journaled before the sink starts: hydrated from seq 0
        cli = await h.intake.request_feed(FeedCommand(bowls=(Bowl.RIGHT,), origin=Origin.CLI))
        sink = h.start_sink()
        after = await h.some(13)
        events = [*before, cli, *after]
        n = len(events)
        assert [e.seq for e in events] == list(range(1, n + 1))
        # Received through the real SQS API here (the other tests take moto's queue directly).
        seen = await arrived(moto, feeds, all_of(list(range(1, n + 1))), via_api=True)
        await until(lambda: sink.cursor == n, what="the cursor to reach the last event")

        # Each event arrives, first arrivals in seq order (at least once: a loaded machine can
        # make botocore send a call again; receivers drop the copy by event-id).
        assert list(dict.fromkeys(seqs(seen))) == list(range(1, n + 1))
        unique = list({e["detail"]["event-id"]: e for e in seen}.values())
        for envelope, event in zip(unique, events, strict=True):
            stored = h.journal.reader.get(event.seq)
            assert stored is not None
            assert envelope["source"] == "com.feedmyfurbabies"
            assert envelope["detail-type"] == event.type.detail_type
            when = datetime.fromtimestamp(event.occurred_at_ms // 1000, tz=UTC)
            assert envelope["time"] == when.strftime("%Y-%m-%dT%H:%M:%SZ")
            detail = envelope["detail"]
            assert detail["event-id"] == event.event_id
            assert detail["gateway-id"] == GATEWAY_ID
            assert detail["seq"] == event.seq
            assert detail["chain-hash"] == stored.hash
            assert len(stored.hash) == 64
            if event.origin is Origin.BUTTON:
                assert isinstance(event.payload, FeedRequested)
                assert event.payload.click_type is not None
                assert detail["click-type"] == event.payload.click_type.value
            else:
                assert "click-type" not in detail
        assert unique[12]["detail"]["origin"] == "cli"

        # On the wire: at most 10 entries per call, within the size limit.
        batches = wire_seqs(proxy)
        assert all(1 <= len(b) <= 10 for b in batches)
        assert all(b == list(range(b[0], b[0] + len(b))) for b in batches)  # runs in seq order
        # Each event first crosses the wire in seq order. On a loaded machine botocore may send
        # a call again after a connection it reused was closed under it (at least once): the
        # repeat is the same batch, never a reordering.
        first_crossings = list(dict.fromkeys(s for b in batches for s in b))
        assert first_crossings == list(range(1, n + 1))
        assert proxy.size_violations == 0
        assert sink.status().delivered == n
        assert len(batches) >= sink.counters.batches
        status = sink.status()
        assert status.connected
        assert status.last_error is None
        assert status.backlog == 0

        # An echo credit for each button request that went out, at its (click, second).
        presses = [e for e in events if e.origin is Origin.BUTTON]
        assert len(presses) == 9
        assert len(h.intake.echoes) == len(presses)
        first = presses[0]
        assert isinstance(first.payload, FeedRequested)
        assert first.payload.click_type is not None
        assert h.intake.echoes.take(
            first.payload.click_type, first.occurred_at_ms // 1000, int(time.time() * 1000)
        )
    with JournalReader.open(config.journal_file) as reader:
        assert reader.cursor("eventbridge") == n


async def test_start_at_tail_sends_only_what_comes_next(
    tmp_path: Path, moto: MotoServer, feeds: Feeds, proxy: FaultProxy
) -> None:
    config = make_config(tmp_path, proxy.url, start="tail")
    async with harness(config) as h:
        await h.some(5)
        sink = h.start_sink()
        assert sink.cursor == 5
        await h.some(3)
        seen = await arrived(moto, feeds, all_of([6, 7, 8]))
        assert seqs(seen) == [6, 7, 8]


async def test_event_types_filter_passes_the_rest_over(
    tmp_path: Path, moto: MotoServer, feeds: Feeds, proxy: FaultProxy
) -> None:
    config = make_config(tmp_path, proxy.url, event_types=["FeedRequested", "FoodLevelChanged"])
    async with harness(config) as h:
        events = await h.some(30)
        sink = h.start_sink()
        wanted = [e.seq for e in events if e.type.value in {"FeedRequested", "FoodLevelChanged"}]
        skipped = [e.seq for e in events if e.seq not in set(wanted)]
        assert skipped
        seen = await arrived(moto, feeds, all_of(wanted))
        await until(lambda: sink.cursor == 30, what="the cursor to pass the filtered events")
        assert seqs(seen) == wanted
        assert {e["detail-type"] for e in seen} == {"Feed Requested", "Food Level Changed"}
        assert sink.status().passed_over == len(skipped)
        assert not set(s for b in wire_seqs(proxy) for s in b) & set(skipped)


# --- partial failures --------------------------------------------------------------------------


async def test_partial_failure_resends_from_the_first_failed_entry(
    tmp_path: Path, moto: MotoServer, feeds: Feeds, proxy: FaultProxy
) -> None:
    config = make_config(tmp_path, proxy.url)
    async with harness(config) as h:
        await h.some(10)
        # The 4th entry of the first call is throttled; the entries after it get in.
        proxy.fail_next(fail_indices({3}, "ThrottlingException", "Rate exceeded"))
        sink = h.start_sink()
        seen = await arrived(moto, feeds, all_of(list(range(1, 11))))
        await until(lambda: sink.cursor == 10, what="the cursor to reach seq 10")
        await asyncio.to_thread(moto.drain, feeds)
        arrivals = seqs(feeds.seen)

        batches = wire_seqs(proxy)
        assert batches[0] == list(range(1, 11))
        assert batches[1] == list(range(4, 11))  # sent again from the failed entry on
        # The duplicates really arrived: 5..10 got in with the failed call and again after it.
        counts = Counter(arrivals)
        assert {s: counts[s] for s in range(1, 5)} == {1: 1, 2: 1, 3: 1, 4: 1}
        assert {s: counts[s] for s in range(5, 11)} == dict.fromkeys(range(5, 11), 2)
        assert arrivals == [1, 2, 3, 5, 6, 7, 8, 9, 10, 4, 5, 6, 7, 8, 9, 10]
        # Deduplicated by event id, every event is there; the last copies are in seq order.
        by_id = {e["detail"]["event-id"]: e["detail"]["seq"] for e in seen}
        assert sorted(by_id.values()) == list(range(1, 11))
        assert last_copies_in_order(arrivals)
        assert sink.counters.partial_failures == 1
        assert sink.counters.duplicates == 6
        assert sink.status().dead_lettered == 0


async def test_permanent_entry_failure_is_dead_lettered_and_does_not_block(
    tmp_path: Path, moto: MotoServer, feeds: Feeds, proxy: FaultProxy
) -> None:
    config = make_config(tmp_path, proxy.url)
    async with harness(config) as h:
        single = await h.press(ClickType.SINGLE)
        double = await h.press(ClickType.DOUBLE)
        long1 = await h.press(ClickType.LONG)
        long2 = await h.press(ClickType.LONG)
        proxy.fail_next(fail_indices({1}, "MalformedDetail", "Detail is malformed."))
        sink = h.start_sink()
        # 5 is the EventDeadLettered event the sink journals; it is sent like any other.
        seen = await arrived(moto, feeds, all_of([1, 3, 4, 5]))
        await until(lambda: sink.cursor == 5, what="the cursor to pass the dead letter")
        assert 2 not in seqs(seen)
        letter = h.journal.reader.get(5)
        assert letter is not None
        assert isinstance(letter.payload, EventDeadLettered)
        assert letter.payload.sink == "eventbridge"
        assert letter.payload.dead_seq == 2
        assert letter.payload.dead_event_id == double.event_id
        assert "MalformedDetail" in letter.payload.error
        assert seen[-1]["detail-type"] == "Event Dead Lettered"
        assert sink.status().dead_lettered == 1
        # Echo credits only for what got in: none for the dead-lettered DOUBLE; the LONGs got
        # in twice (with the failed call, and again after it), so each copy may echo back.
        now = int(time.time() * 1000)
        echoes = h.intake.echoes
        assert not echoes.take(ClickType.DOUBLE, double.occurred_at_ms // 1000, now)
        assert echoes.take(ClickType.SINGLE, single.occurred_at_ms // 1000, now)
        longs = sum(
            echoes.take(ClickType.LONG, e.occurred_at_ms // 1000, now)
            for e in (long1, long2, long1, long2, long1)
        )
        assert longs == 4
    with JournalReader.open(config.journal_file) as reader:
        rows = reader.dead_letters("eventbridge")
    assert [(sink_name, seq) for sink_name, seq, _error, _at in rows] == [("eventbridge", 2)]
    assert "MalformedDetail" in rows[0][2]


async def test_access_denied_entry_waits_and_is_never_dead_lettered(
    tmp_path: Path, moto: MotoServer, feeds: Feeds, proxy: FaultProxy
) -> None:
    config = make_config(tmp_path, proxy.url)
    async with harness(config) as h:
        await h.some(3)
        denied = fail_indices({0}, "NotAuthorizedForSourceException", "not authorized")
        proxy.fail_next(denied, 3)
        sink = h.start_sink()
        status = await until(
            lambda: (s := h.running_sink.status()).last_error is not None and s,
            what="the sink to report the refusal",
        )
        assert status.last_error is not None
        assert "NotAuthorizedForSourceException" in status.last_error
        assert status.cursor == 0  # a setup problem: the sink waits, it does not move on
        seen = await arrived(moto, feeds, all_of([1, 2, 3]))
        await until(lambda: sink.cursor == 3, what="the cursor to reach seq 3")
        assert proxy.pending_faults == 0
        assert seqs(seen)[-3:] == [1, 2, 3]
        assert sink.status().dead_lettered == 0
        assert sink.status().last_error is None
        assert h.journal.reader.dead_letters("eventbridge") == []


async def test_a_refused_call_is_narrowed_to_the_entry_it_was_refused_for(
    tmp_path: Path, moto: MotoServer, feeds: Feeds, proxy: FaultProxy
) -> None:
    config = make_config(tmp_path, proxy.url)
    async with harness(config) as h:
        await h.some(3)
        # The whole batch is refused as invalid, then the first entry alone is too.
        proxy.fail_next(Status(400, "ValidationException", "1 validation error detected"), 2)
        sink = h.start_sink()
        seen = await arrived(moto, feeds, all_of([2, 3, 4]))
        await until(lambda: sink.cursor == 4, what="the cursor to reach seq 4")
        assert seqs(seen) == [2, 3, 4]
        assert wire_seqs(proxy) == [[1, 2, 3], [1], [2], [3], [4]]
        letter = h.journal.reader.get(4)
        assert letter is not None
        assert isinstance(letter.payload, EventDeadLettered)
        assert letter.payload.dead_seq == 1
        assert "ValidationException" in letter.payload.error
        assert sink.status().dead_lettered == 1
    with JournalReader.open(config.journal_file) as reader:
        rows = reader.dead_letters("eventbridge")
    assert [(s, q) for s, q, _e, _a in rows] == [("eventbridge", 1)]


async def test_oversized_event_is_dead_lettered_never_sent(
    tmp_path: Path, moto: MotoServer, feeds: Feeds, proxy: FaultProxy
) -> None:
    config = make_config(tmp_path, proxy.url)
    async with harness(config) as h:
        await h.press()
        huge = await h.intake.record(
            GatewayStarted(version="v" * 300_000, clock_synced=True), Origin.GATEWAY
        )
        await h.press()
        sink = h.start_sink()
        seen = await arrived(moto, feeds, all_of([1, 3, 4]))
        await until(lambda: sink.cursor == 4, what="the cursor to pass the oversized event")
        assert seqs(seen) == [1, 3, 4]
        assert 2 not in [s for b in wire_seqs(proxy) for s in b]
        assert proxy.size_violations == 0
        letter = h.journal.reader.get(4)
        assert letter is not None
        assert isinstance(letter.payload, EventDeadLettered)
        assert (letter.payload.dead_seq, letter.payload.dead_event_id) == (2, huge.event_id)
        assert "over the PutEvents limit" in letter.payload.error
        assert seen[-1]["detail"]["seq"] == 4
    with JournalReader.open(config.journal_file) as reader:
        rows = reader.dead_letters("eventbridge")
    assert [(s, q) for s, q, _e, _a in rows] == [("eventbridge", 2)]


# --- outages ---------------------------------------------------------------------------------

FAULTS: dict[str, Callable[[FaultProxy], None]] = {
    "throttling": lambda p: p.fail_next(THROTTLE, 3),
    "http-500": lambda p: p.fail_next(HTTP_500, 3),
    "reset-before-body": lambda p: p.fail_next(Reset(0), 3),
    "reset-mid-body": lambda p: p.fail_next(Reset(100), 3),
    "reset-after-body": lambda p: p.fail_next(Reset(None), 3),
}
FAULT_KEYS = {
    "throttling": "fault:ThrottlingException",
    "http-500": "fault:InternalFailure",
    "reset-before-body": "fault:reset",
    "reset-mid-body": "fault:reset",
    "reset-after-body": "fault:reset",
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
async def test_recovers_from_faults_with_nothing_lost(
    fault: str, tmp_path: Path, moto: MotoServer, feeds: Feeds, proxy: FaultProxy
) -> None:
    # One retry inside a call (two attempts): three faults fail one call whole and the first
    # attempt of the next.
    config = make_config(tmp_path, proxy.url, max_attempts=1)
    async with harness(config) as h:
        sink = h.start_sink()
        FAULTS[fault](proxy)
        await h.some(15)
        seen = await arrived(moto, feeds, all_of(list(range(1, 16))))
        await until(lambda: sink.cursor == 15, what="the cursor to reach seq 15")
        # Whole calls failed: nothing got in twice, nothing is missing, order held.
        assert seqs(seen) == list(range(1, 16))
        assert proxy.counts[FAULT_KEYS[fault]] == 3
        assert proxy.pending_faults == 0
        # botocore retried inside calls, and one call still failed and the sink retried it.
        assert sink.counters.retries >= 1
        assert sink.counters.failed_calls == 1
        assert sink.status().connected
        assert sink.status().last_error is None


async def test_refused_link_goes_offline_and_catches_up(
    tmp_path: Path, moto: MotoServer, feeds: Feeds, proxy: FaultProxy
) -> None:
    config = make_config(tmp_path, proxy.url, max_attempts=1)
    async with harness(config) as h:
        proxy.refuse()
        sink = h.start_sink()
        await h.some(20)
        status = await until(
            lambda: (s := h.running_sink.status()).last_error is not None and s,
            what="the sink to report the outage",
        )
        assert not status.connected
        assert status.last_error is not None
        assert status.last_error.startswith("offline:")
        assert status.cursor == 0
        assert status.backlog == 20
        # A few rounds of the outage loop, and the cursor has not moved.
        failed = sink.counters.failed_calls
        await until(lambda: sink.counters.failed_calls >= failed + 2, what="two more attempts")
        assert sink.cursor == 0
        assert proxy.counts["put_events"] == 0
        await asyncio.to_thread(moto.drain, feeds)
        assert feeds.seen == []

        proxy.accept()
        await h.some(5)
        seen = await arrived(moto, feeds, all_of(list(range(1, 26))))
        await until(lambda: sink.cursor == 25, what="the cursor to reach seq 25")
        assert seqs(seen) == list(range(1, 26))
        assert sink.status().connected
        assert sink.status().last_error is None


def _page_count(path: Path) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(conn.execute("PRAGMA page_count").fetchone()[0])
    finally:
        conn.close()


async def test_held_events_are_sent_only_once_durable(
    tmp_path: Path, moto: MotoServer, feeds: Feeds, proxy: FaultProxy
) -> None:
    config = make_config(tmp_path, proxy.url)
    async with harness(config) as h:
        sink = h.start_sink()
        for _ in range(50):  # grow the file a little so the limit bites on the next commit
            await h.record(FoodLevelChanged(50, None))
        await arrived(moto, feeds, all_of(list(range(1, 51))))
        h.journal.writer_pragma(f"PRAGMA max_page_count = {_page_count(config.journal_file)}")
        held = [await asyncio.wait_for(h.press(), timeout=5) for _ in range(40)]
        assert any(e.held for e in held), "the disk limit never bit"
        first_held = next(e.seq for e in held if e.held)
        await until(lambda: sink.cursor >= first_held - 1, what="the durable events to go")
        # Proving an absence: give the sink time in which it could (wrongly) send a held event.
        await asyncio.sleep(0.5)
        await asyncio.to_thread(moto.drain, feeds)
        assert max(seqs(feeds.seen)) < first_held
        assert sink.cursor < first_held
        assert all(s < first_held for b in wire_seqs(proxy) for s in b)

        h.journal.writer_pragma("PRAGMA max_page_count = 1073741823")
        last = held[-1].seq
        seen = await arrived(moto, feeds, all_of(list(range(1, last + 1))))
        assert seqs(seen) == list(range(1, last + 1))
        for envelope in seen[first_held - 1 :]:
            stored = h.journal.reader.get(envelope["detail"]["seq"])
            assert stored is not None
            assert stored.recovered
            assert envelope["detail"]["chain-hash"] == stored.hash != ""
            assert envelope["detail"]["recovered"] is True


# --- no credentials ----------------------------------------------------------------------------


async def test_no_credentials_sink_offline_feeding_unaffected(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    broker: Mosquitto,
    proxy: FaultProxy,
) -> None:
    for var in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    config = parse_config(
        {
            "gateway_id": GATEWAY_ID,
            "state_dir": str(tmp_path / "state"),
            "broker": {"host": broker.host, "port": broker.port, "reconnect_max_s": 0.3},
            "policy": {"cap_per_bowl": 1000, "min_gap_s": 0},
            "buttons": {"pin_factory": "mock", "gpio": [], "mqtt": []},
            "sinks": {"eventbridge": {"endpoint_url": proxy.url, "max_attempts": 1}},
        }
    )
    with Probe(broker.host, broker.port, subscribe=["cat-feeder/action"]) as feeder:
        async with running(config, ready_timeout_s=15) as daemon:
            assert daemon.intake is not None
            status = await until(
                lambda: (s := daemon.status().sink("eventbridge")) and s.last_error and s,
                what="the EventBridge sink to report missing credentials",
            )
            assert status.last_error == NO_CREDENTIALS
            assert status.connected is False
            assert status.cursor == 0
            assert status.backlog >= 1  # GatewayStarted waits in the journal
            assert "eventbridge OFFLINE" in daemon.status_line()

            # Feeding goes on: the request is journaled and reaches the feeder.
            event = await daemon.intake.request_feed(
                FeedCommand(bowls=(Bowl.LEFT,), origin=Origin.CLI)
            )
            assert isinstance(event.payload, FeedRequested)
            request_id = event.payload.request_id
            await until(
                lambda: any(
                    m.json().get("id") == request_id for m in feeder.messages("cat-feeder/action")
                ),
                what="the feed request at the feeder",
            )
            # Nothing unsigned ever left for EventBridge.
            assert proxy.counts["put_events"] == 0
            assert daemon.journal is not None
            assert daemon.journal.saved_cursor("eventbridge") == 0
            assert EventType.FEED_REQUESTED.value in {
                e.type.value for e in daemon.journal.read_visible(0, 100)
            }
