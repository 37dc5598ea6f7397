"""``fmfb journal list | show | tail | stats | export | chart``: reading the journal.

Every command opens the journal read-only (``JournalReader``): on a journal the daemon is
writing (WAL: a reader never blocks the writer, and no read transaction is held between
statements) or on a copied file (``--journal FILE``). They share one set of filters.
"""

from __future__ import annotations

import functools
import json
import signal
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import click

from gateway.commands.common import EXIT_REJECTED, fail, iso, open_reader, summary, when
from gateway.commands.options import config_option, journal_option
from gateway.errors import FilterError
from gateway.events import Event, EventType, Origin
from gateway.journal import EventFilter, JournalReader
from gateway.journal.chain import row_hash

CSV_COLUMNS = (
    "seq",
    "event_id",
    "type",
    "occurred_at",
    "clock_synced",
    "origin",
    "recovered",
    "payload",
    "hash",
)

_TIME_NOTE = (
    "Times are as each event recorded them and may be wrong for events journaled while the "
    "clock was not synchronised; seq, not time, is the journal's order."
)


# --- filters shared by list, tail, stats, export and chart ---------------------------------


_FILTER_OPTIONS = (
    click.option(
        "--type",
        "types",
        multiple=True,
        type=click.Choice([t.value for t in EventType]),
        help="Only events of this type (repeatable).",
    ),
    click.option(
        "--origin",
        "origins",
        multiple=True,
        type=click.Choice([o.value for o in Origin]),
        help="Only events from this origin (repeatable).",
    ),
    click.option("--from-seq", type=click.IntRange(min=1), help="Only seq >= this."),
    click.option("--to-seq", type=click.IntRange(min=1), help="Only seq <= this."),
    click.option(
        "--since",
        callback=when,
        help="Only events recorded at or after this time (ISO 8601, no zone = UTC; or a "
        "duration ago: 90m, 2h, 7d). " + _TIME_NOTE,
    ),
    click.option("--until", callback=when, help="Only events recorded before this time."),
)


def filter_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add the shared filters; the command receives them as one ``filters`` argument."""

    @functools.wraps(f)
    def wrapper(
        *args: Any,
        types: tuple[str, ...],
        origins: tuple[str, ...],
        from_seq: int | None,
        to_seq: int | None,
        since: int | None,
        until: int | None,
        **kwargs: Any,
    ) -> Any:
        try:
            filters = EventFilter(types, origins, from_seq, to_seq, since, until).checked()
        except FilterError as e:
            raise click.UsageError(str(e)) from None
        return f(*args, filters=filters, **kwargs)

    for option in reversed(_FILTER_OPTIONS):
        wrapper = option(wrapper)
    return wrapper


json_option = click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")


def _row(e: Event) -> str:
    clock = "" if e.clock_synced else " (clock unsynced)"
    flag = " RECOVERED" if e.recovered else ""
    return (
        f"{e.seq:>8}  {iso(e.occurred_at_ms)}{clock}  {e.type.value:<17} "
        f"{e.origin.value:<8} {summary(e)}{flag}"
    )


def _emit(e: Event, as_json: bool) -> None:
    click.echo(json.dumps(e.to_dict()) if as_json else _row(e))


def rfc3339(ms: int) -> str:
    """``2026-11-28T01:10:08.123Z``."""
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# --- list ----------------------------------------------------------------------------------


@click.command("list")
@filter_options
@click.option(
    "--limit",
    default=50,
    show_default=True,
    type=click.IntRange(min=1),
    help="At most this many (the newest that match).",
)
@json_option
@journal_option
@config_option
def journal_list(
    filters: EventFilter,
    limit: int,
    as_json: bool,
    journal_path: Path | None,
    config_path: Path | None,
) -> None:
    """List events, oldest first (the newest LIMIT that match the filters).

    Columns: seq, recorded time (UTC), type, origin, summary. The order is seq.
    """
    with open_reader(journal_path, config_path) as reader:
        events = list(reader.query(filters, newest_first=True, limit=limit))
    events.reverse()
    if not events and not as_json:
        click.echo("no events match", err=True)
    for e in events:
        _emit(e, as_json)


# --- show ----------------------------------------------------------------------------------


def _find(reader: JournalReader, ref: str) -> Event | None:
    if ref.isdigit():
        return reader.get(int(ref))
    seq = reader.seq_of(ref)
    return None if seq is None else reader.get(seq)


def _checks(reader: JournalReader, e: Event) -> tuple[bool, bool]:
    """(its fields hash to its stored hash, its prev_hash is the previous row's hash)."""
    row = next(reader.chain_rows(after_seq=e.seq - 1))
    hash_ok = row.seq == e.seq and row_hash(row) == row.hash
    if e.seq == reader.base_seq() + 1:
        expected_prev = reader.genesis_hash()
    else:
        before = reader.get(e.seq - 1)
        expected_prev = "" if before is None else before.hash
    return hash_ok, expected_prev == e.prev_hash


@click.command("show")
@click.argument("ref", metavar="SEQ|EVENT_ID")
@click.option("--json", "as_json", is_flag=True, help="One JSON object, with the checks.")
@journal_option
@config_option
def journal_show(
    ref: str, as_json: bool, journal_path: Path | None, config_path: Path | None
) -> None:
    """Show one event in full: envelope, payload, hash, prev hash, and whether they check out.

    Exit status: 0 shown and its hash checks out, 1 its hash or link does not, 2 no such event.
    """
    with open_reader(journal_path, config_path) as reader:
        e = _find(reader, ref.strip())
        if e is None:
            fail(f"no event {ref!r} in {reader.path}")
        hash_ok, link_ok = _checks(reader, e)
    if as_json:
        click.echo(json.dumps({**e.to_dict(), "hash_ok": hash_ok, "link_ok": link_ok}))
    else:
        clock = "synchronised" if e.clock_synced else "NOT synchronised (the time may be wrong)"
        for key, value in (
            ("seq", e.seq),
            ("event_id", e.event_id),
            ("type", e.type.value),
            ("occurred_at", f"{rfc3339(e.occurred_at_ms)}  ({e.occurred_at_ms} ms)"),
            ("clock", clock),
            ("origin", e.origin.value),
            ("recovered", "yes: acted on before it was durable" if e.recovered else "no"),
            ("prev_hash", e.prev_hash),
            ("hash", e.hash),
            ("hash check", "ok" if hash_ok else "MISMATCH: its fields do not hash to it"),
            ("chain link", "ok" if link_ok else "BROKEN: prev_hash is not the previous hash"),
        ):
            click.echo(f"{key:<12} {value}")
        click.echo("payload")
        for line in json.dumps(e.payload.to_dict(), indent=2, sort_keys=True).splitlines():
            click.echo(f"  {line}")
    if not (hash_ok and link_ok):
        sys.exit(EXIT_REJECTED)


# --- tail ----------------------------------------------------------------------------------


def _stop_on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@click.command("tail")
@click.option(
    "-n", "--lines", default=10, show_default=True, type=click.IntRange(min=0), help="Show N."
)
@click.option(
    "-f", "--follow", is_flag=True, help="Then print new events as they are journaled (Ctrl-C)."
)
@click.option(
    "--interval",
    default=0.5,
    show_default=True,
    type=click.FloatRange(min=0.05),
    help="Seconds between polls when following.",
)
@filter_options
@json_option
@journal_option
@config_option
def journal_tail(
    *,
    lines: int,
    follow: bool,
    interval: float,
    filters: EventFilter,
    as_json: bool,
    journal_path: Path | None,
    config_path: Path | None,
) -> None:
    """Print the last N matching events; with -f, follow the journal until Ctrl-C.

    Following polls the read-only journal for seq beyond the last seen: it never blocks the
    daemon, and stops cleanly on Ctrl-C or SIGTERM (exit 0).
    """
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        with open_reader(journal_path, config_path) as reader:
            after = reader.last_seq()
            head = filters.between(0, after)
            recent = list(reader.query(head, newest_first=True, limit=lines)) if lines else []
            for e in reversed(recent):
                _emit(e, as_json)
            while follow and (filters.to_seq is None or after < filters.to_seq):
                batch = reader.read_after(after, 1000)
                if not batch:
                    time.sleep(interval)
                    continue
                for e in batch:
                    after = e.seq
                    if filters.matches(e):
                        _emit(e, as_json)
    except KeyboardInterrupt:
        return


# --- stats ---------------------------------------------------------------------------------
