"""gateway.stats (a pure fold) and gateway.chart (pure rendering), on hand-built events."""

from __future__ import annotations

from html.parser import HTMLParser
from itertools import count
from typing import Any

from gateway.chart import render_html
from gateway.events import (
    Bowl,
    Event,
    FeedDispensed,
    FeederOffline,
    FeederOnline,
    FeedRejected,
    FeedRequested,
    FeedUnconfirmed,
    FoodLevelChanged,
    GatewayStarted,
    GatewayStopped,
    Origin,
    RefusedBy,
)
from gateway.stats import day_of, days_between, fold

DAY = 86_400_000
HOUR = 3_600_000
T0 = 1_795_000_000_000 - 1_795_000_000_000 % DAY  # a UTC midnight (2026-11-17)


def request(rid: str, *bowls: Bowl) -> FeedRequested:
    return FeedRequested(
        request_id=rid, bowls=bowls, portion_ms=800, expires_at_ms=0, origin=Origin.CLI
    )


class Builder:
    def __init__(self) -> None:
        self.seq = count(1)
        self.events: list[Event] = []

    def add(self, at_ms: int, payload: Any, origin: Origin = Origin.GATEWAY) -> None:
        seq = next(self.seq)
        self.events.append(
            Event(
                seq=seq,
                event_id=f"id-{seq}",
                occurred_at_ms=at_ms,
                clock_synced=True,
                origin=origin,
                payload=payload,
            )
        )


def test_feeds_are_counted_per_bowl_per_utc_day() -> None:
    b = Builder()
    b.add(T0 + 1 * HOUR, request("a", Bowl.LEFT), Origin.CLI)
    b.add(T0 + 2 * HOUR, request("b", Bowl.LEFT, Bowl.RIGHT), Origin.BUTTON)
    b.add(T0 + 2 * HOUR + 5, FeedDispensed("b", (Bowl.LEFT, Bowl.RIGHT), 800), Origin.FEEDER)
    b.add(T0 + DAY + HOUR, request("c", Bowl.RIGHT), Origin.CLI)
    b.add(T0 + DAY + HOUR, FeedUnconfirmed("c", (Bowl.RIGHT,), 60_000))
    rejected = FeedRejected.of(request("d", Bowl.LEFT), "cap", RefusedBy.GATEWAY)
    b.add(T0 + 3 * DAY, rejected)
    b.add(T0 + 3 * DAY, FeedRejected.of(request("e", Bowl.LEFT), "too-soon", RefusedBy.GATEWAY))
    b.add(T0 + 3 * DAY, FeedRejected.of(request("f", Bowl.LEFT), "cap", RefusedBy.FEEDER))

    stats = fold(b.events)
    d0, d1 = day_of(T0), day_of(T0 + DAY)
    assert stats.requested == {d0: {"left": 2, "right": 1}, d1: {"right": 1}}
    assert stats.dispensed == {d0: {"left": 1, "right": 1}}
    assert stats.rejections == {"cap": 2, "too-soon": 1}
    assert stats.unconfirmed == 1
    assert (stats.events, stats.first_seq, stats.last_seq) == (8, 1, 8)
    # Days run from the first to the last with a feed, empty ones included.
    assert stats.days() == [d0, d1]
    as_json = stats.to_dict()
    assert as_json["feeds_per_day"][0] == {
        "day": d0,
        "requested": {"left": 2, "right": 1},
        "dispensed": {"left": 1, "right": 1},
    }
    assert as_json["feeds_per_day"][1]["requested"] == {"left": 0, "right": 1}


def test_food_levels_are_the_points_in_seq_order() -> None:
    b = Builder()
    b.add(T0 + HOUR, FoodLevelChanged(80, None), Origin.FEEDER)
    b.add(T0 + 2 * HOUR, request("a", Bowl.LEFT))
    b.add(T0 + 3 * HOUR, FoodLevelChanged(60, 80), Origin.FEEDER)
    stats = fold(b.events)
    assert [(p.seq, p.at_ms, p.level) for p in stats.food_levels] == [
        (1, T0 + HOUR, 80),
        (3, T0 + 3 * HOUR, 60),
    ]


def test_uptime_per_day_and_overall() -> None:
    b = Builder()
    b.add(T0 + 20 * HOUR, FeederOnline(), Origin.FEEDER)
    b.add(T0 + 22 * HOUR, FeederOffline(), Origin.FEEDER)  # 2 h online, day 0
    b.add(T0 + 23 * HOUR, FeederOnline(), Origin.FEEDER)  # 1 h offline, day 0
    # online from 23:00 across midnight to 02:00 on day 1, then the gateway stops.
    b.add(T0 + DAY + 2 * HOUR, GatewayStopped("1", True))
    b.add(T0 + DAY + 10 * HOUR, GatewayStarted("1", True))  # 8 h unknown: not counted
    b.add(T0 + DAY + 12 * HOUR, FeederOffline(), Origin.FEEDER)  # 2 h online again
    stats = fold(b.events, end_ms=T0 + DAY + 14 * HOUR)  # then 2 h offline, to "now"
    up = stats.uptime
    d0, d1 = day_of(T0), day_of(T0 + DAY)
    assert up.known_ms == {d0: 4 * HOUR, d1: 6 * HOUR}
    assert up.online_ms == {d0: 3 * HOUR, d1: 4 * HOUR}
    assert up.day_fraction(d0) == 0.75
    assert up.fraction == 0.7
    assert stats.to_dict()["uptime"]["fraction"] == 0.7


def test_uptime_is_unknown_without_reports_and_a_wrong_clock_adds_nothing() -> None:
    assert fold([]).uptime.fraction is None
    b = Builder()
    b.add(T0 + 5 * HOUR, FeederOnline(), Origin.FEEDER)
    b.add(T0 + 1 * HOUR, FeederOffline(), Origin.FEEDER)  # recorded earlier: clock jumped
    stats = fold(b.events, end_ms=T0 + 2 * HOUR)
    assert stats.uptime.known_ms == {day_of(T0): HOUR}
    assert stats.uptime.fraction == 0.0


def test_days_between_is_inclusive() -> None:
    assert days_between("2026-02-27", "2026-03-01") == ["2026-02-27", "2026-02-28", "2026-03-01"]
    assert days_between("2026-03-01", "2026-03-01") == ["2026-03-01"]


class SvgCounter(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def bars(self) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == "rect" and a.get("class") == "bar"]


def test_chart_has_one_bar_per_bowl_per_day_and_a_level_line() -> None:
    b = Builder()
    b.add(T0 + HOUR, request("a", Bowl.LEFT, Bowl.RIGHT))
    b.add(T0 + 2 * HOUR, request("b", Bowl.LEFT))
    b.add(T0 + 2 * DAY, FoodLevelChanged(50, 80), Origin.FEEDER)
    b.add(T0 + 2 * DAY + HOUR, FoodLevelChanged(40, 50), Origin.FEEDER)
    html = render_html(fold(b.events), title="<cats>")
    parser = SvgCounter()
    parser.feed(html)
    assert html.startswith("<!DOCTYPE html>")
    assert "<script" not in html
    assert "&lt;cats&gt;" in html
    assert sum(1 for t, _ in parser.tags if t == "svg") == 2
    bars = parser.bars()
    assert len(bars) == 3 * 2  # three days (the middle one empty) x two bowls
    counts = {(a["data-day"], a["data-bowl"]): a["data-count"] for a in bars}
    assert counts[(day_of(T0), "left")] == "2"
    assert counts[(day_of(T0), "right")] == "1"
    assert counts[(day_of(T0 + DAY), "left")] == "0"
    lines = [a for t, a in parser.tags if t == "polyline"]
    assert len(lines) == 1
    assert len((lines[0]["points"] or "").split()) == 2


def test_chart_of_nothing_is_still_a_page() -> None:
    html = render_html(fold([]), days=["2026-11-27", "2026-11-28"])
    parser = SvgCounter()
    parser.feed(html)
    assert len(parser.bars()) == 4
    assert "no food level reported" in html
