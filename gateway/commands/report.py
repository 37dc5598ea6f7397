"""``fmfb journal stats | export | chart``: the journal folded, written out, or drawn.

They read through the same filters as ``list`` (:mod:`gateway.commands.inspect`); the fold is
:func:`gateway.stats.fold` (pure), the chart :func:`gateway.chart.render_html`.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

import click

from gateway.chart import render_html
from gateway.commands.common import fail, iso, open_reader
from gateway.commands.inspect import (
    CSV_COLUMNS,
    filter_options,
    now_ms,
    rfc3339,
)
from gateway.commands.options import config_option, journal_option
from gateway.events import Event, canonical_json
from gateway.journal import EventFilter
from gateway.stats import BOWLS, Stats, day_of, days_between, fold


def _last_days(
    filters: EventFilter, days: int | None, now_ms: int
) -> tuple[EventFilter, list[str]]:
    """With ``--days N``: the last N UTC days (today included), as a since-filter and a list."""
    if days is None:
        return filters, []
    today = datetime.fromtimestamp(now_ms / 1000, tz=UTC).date()
    first = today - timedelta(days=days - 1)
    start_ms = int(datetime(first.year, first.month, first.day, tzinfo=UTC).timestamp()) * 1000
    since = start_ms if filters.since_ms is None else max(start_ms, filters.since_ms)
    return (
        dataclasses.replace(filters, since_ms=since),
        days_between(first.isoformat(), today.isoformat()),
    )


def _duration(ms: int) -> str:
    s = ms // 1000
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _print_stats(stats: Stats) -> None:
    if stats.first_seq is None:
        click.echo("no events match")
        return
    click.echo(f"events: {stats.events} (seq {stats.first_seq}-{stats.last_seq})")
    click.echo("feeds per bowl per UTC day (accepted requests / confirmed dispensed):")
    click.echo((f"  {'day':<12}" + "".join(f"{b:>10}    " for b in BOWLS)).rstrip())
    for day in stats.days():
        cells = "".join(
            f"{stats.feeds('requested', day, b):>8} / {stats.feeds('dispensed', day, b):<3}"
            for b in BOWLS
        )
        click.echo(f"  {day:<12}{cells}".rstrip())
    rejected = ", ".join(f"{k} {v}" for k, v in sorted(stats.rejections.items()))
    click.echo(f"rejections by reason: {rejected or 'none'}")
    click.echo(f"unconfirmed feeds: {stats.unconfirmed}")
    points = stats.food_levels
    click.echo(f"food level: {len(points)} change(s)" + (":" if points else ""))
    if len(points) > 10:
        click.echo(f"  ... {len(points) - 10} earlier (--json for all)")
    for p in points[-10:]:
        click.echo(f"  {iso(p.at_ms)}  {p.level:>3}%  (seq {p.seq})")
    up = stats.uptime
    if up.fraction is None:
        click.echo("feeder uptime: unknown (no FeederOnline/FeederOffline)")
        return
    known = sum(up.known_ms.values())
    click.echo(f"feeder uptime: {up.fraction:.1%} online of {_duration(known)} known")
    for day in sorted(up.known_ms):
        frac = up.day_fraction(day) or 0.0
        click.echo(f"  {day}  {frac:6.1%} of {_duration(up.known_ms[day])}")


@click.command("stats")
@click.option(
    "--days", type=click.IntRange(min=1), help="Only the last N UTC days (today included)."
)
@filter_options
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@journal_option
@config_option
def journal_stats(
    days: int | None,
    filters: EventFilter,
    as_json: bool,
    journal_path: Path | None,
    config_path: Path | None,
) -> None:
    """Feeds per bowl per day, rejections by reason, unconfirmed feeds, food level over time
    and feeder uptime.

    Feeds are counted per bowl (a feed of both bowls counts once for each), per UTC day of the
    event's recorded time: accepted = FeedRequested, confirmed = FeedDispensed. Uptime is the
    share of time the feeder was online, from FeederOnline/FeederOffline, up to now (or
    --until); time while the gateway was stopped is not counted, nor time before the first
    FeederOnline/FeederOffline in the range (--days, --since and --from-seq narrow it).
    """
    now = now_ms()
    filters, _ = _last_days(filters, days, now)
    end = now if filters.until_ms is None else min(now, filters.until_ms)
    with open_reader(journal_path, config_path) as reader:
        stats = fold(reader.query(filters), end_ms=end)
    if as_json:
        click.echo(json.dumps(stats.to_dict()))
    else:
        _print_stats(stats)


# --- export --------------------------------------------------------------------------------


def _write(events: Iterator[Event], fmt: str, out: IO[str]) -> int:
    n = 0
    if fmt == "jsonl":
        for e in events:
            out.write(json.dumps(e.to_dict()) + "\n")
            n += 1
        return n
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for e in events:
        writer.writerow(
            (
                e.seq,
                e.event_id,
                e.type.value,
                rfc3339(e.occurred_at_ms),
                str(e.clock_synced).lower(),
                e.origin.value,
                str(e.recovered).lower(),
                canonical_json(e.payload.to_dict()),
                e.hash,
            )
        )
        n += 1
    return n


@click.command("export")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "csv"]),
    default="jsonl",
    show_default=True,
    help="jsonl: one event object per line (as list --json). csv: seq, event_id, type, "
    "occurred_at (RFC 3339), clock_synced, origin, recovered, payload (JSON), hash.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to FILE (replaced whole when done) [default: stdout].",
)
@filter_options
@journal_option
@config_option
def journal_export(
    fmt: str,
    out: Path | None,
    filters: EventFilter,
    journal_path: Path | None,
    config_path: Path | None,
) -> None:
    """Export the matching events, in seq order, as JSONL or CSV."""
    with open_reader(journal_path, config_path) as reader:
        if out is None:
            _write(reader.query(filters), fmt, sys.stdout)
            return
        tmp = out.with_name(f".{out.name}.tmp")
        try:
            with tmp.open("w", encoding="utf-8", newline="") as f:
                n = _write(reader.query(filters), fmt, f)
            tmp.replace(out)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            fail(f"cannot write {out}: {e}")
    click.echo(f"wrote {n} events to {out}", err=True)


# --- chart ---------------------------------------------------------------------------------


@click.command("chart")
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The HTML file to write.",
)
@click.option("--days", type=click.IntRange(min=1), help="The last N UTC days (today included).")
@filter_options
@journal_option
@config_option
def journal_chart(
    out: Path,
    days: int | None,
    filters: EventFilter,
    journal_path: Path | None,
    config_path: Path | None,
) -> None:
    """Draw the feeding history to one self-contained HTML file (inline SVG, no scripts).

    Feeds per bowl per day (accepted requests) as bars, food level over time as a line.
    """
    now = now_ms()
    filters, shown = _last_days(filters, days, now)
    end = now if filters.until_ms is None else min(now, filters.until_ms)
    with open_reader(journal_path, config_path) as reader:
        stats = fold(reader.query(filters), end_ms=end)
        title = f"Feeding history: {reader.path.name}"
    html = render_html(stats, days=shown or None, title=title)
    try:
        out.write_text(html, encoding="utf-8")
    except OSError as e:
        fail(f"cannot write {out}: {e}")
    n_days = len(shown or stats.days())
    click.echo(
        f"wrote {out.resolve()} ({n_days} days, {stats.events} events, "
        f"{len(stats.food_levels)} food level points; as of {day_of(now)})"
    )
