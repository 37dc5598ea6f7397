"""The pure flood bounds (gateway/flood.py), and echo credits rebuilt from the journal."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.clock import FixedClock
from gateway.echo import EchoLedger
from gateway.events import Bowl, ClickType, FeedRequested, NewEvent, Origin
from gateway.flood import Coalescer, Suppressor
from gateway.intake import rebuild_echoes
from gateway.journal import Journal, JournalReader, new_event_id


def test_a_refused_press_is_journaled_once_per_key_per_window_and_the_rest_counted() -> None:
    gate = Suppressor(window_ms=10_000)
    assert gate.admit("button:a:cap", 0)
    assert not any(gate.admit("button:a:cap", t) for t in range(1, 10_000, 7))
    assert gate.admit("button:b:cap", 5)  # another button is its own key
    assert gate.admit("button:a:cap", 10_000)  # a new window: journaled again
    counts = gate.take_counts()
    assert counts == {"button:a:cap": len(range(1, 10_000, 7))}
    assert gate.take_counts() == {}


def test_a_flapping_report_is_journaled_at_most_twice_per_window_and_ends_on_the_last() -> None:
    reports: Coalescer[int] = Coalescer(window_ms=5_000)
    journaled: list[int] = []
    if reports.offer("states", 10, 0):
        journaled.append(10)
    for t in range(1, 4_000):
        if reports.offer("states", 10 + 80 * (t % 2), t):
            journaled.append(t)
    assert journaled == [10]
    assert reports.next_due() == 5_000
    assert reports.take_due(4_999) == []
    assert reports.take_due(5_000) == [("states", 10 + 80 * (3_999 % 2))]
    assert reports.take_counts() == {"states": 3_998}
    assert reports.next_due() is None


def test_kinds_are_coalesced_separately() -> None:
    reports: Coalescer[int | bool] = Coalescer(window_ms=5_000)
    assert reports.offer("states", 50, 0)
    assert reports.offer("availability", True, 1)
    assert not reports.offer("availability", False, 2)
    assert reports.take_due(5_001) == [("availability", False)]


def test_rebuilt_echo_credits_cover_presses_beyond_the_sinks_cursor(tmp_path: Path) -> None:
    """A batch in flight at a stop was delivered, its cursor never saved: its echo still is one."""
    clock = FixedClock()

    async def write() -> None:
        journal = Journal.open_or_set_aside(tmp_path / "j.db", clock=clock)
        journal.start()
        request = FeedRequested(
            new_event_id(),
            (Bowl.LEFT,),
            1000,
            clock.now_ms() + 60_000,
            Origin.BUTTON,
            "b",
            ClickType.SINGLE,
        )
        await journal.append_nowait(
            NewEvent(new_event_id(), clock.now_ms(), True, Origin.BUTTON, request)
        )
        await journal.aclose()

    asyncio.run(write())
    echoes = EchoLedger(window_ms=600_000)
    with JournalReader.open(tmp_path / "j.db") as reader:
        assert rebuild_echoes(reader, echoes, now_ms=clock.now_ms() + 1_000) == 1
    assert echoes.take(ClickType.SINGLE, clock.now_ms() // 1000, clock.now_ms() + 2_000)
