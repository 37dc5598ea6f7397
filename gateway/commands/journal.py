"""``fmfb journal pending | verify``: what each sink has left, and the chain's integrity.

(``list``, ``show``, ``tail``, ``stats``, ``export`` and ``chart`` are in
:mod:`gateway.commands.inspect`.)
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from gateway.commands.common import EXIT_REJECTED, age, open_reader
from gateway.commands.options import config_option, journal_option

if TYPE_CHECKING:
    from gateway.journal import JournalReader

VERIFY_PROGRESS_ROWS = 100_000


@click.command("pending")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per sink.")
@journal_option
@config_option
def journal_pending(as_json: bool, journal_path: Path | None, config_path: Path | None) -> None:
    """Per sink: its cursor, how many events it has not finished, and how old the oldest is."""
    now = time.time_ns() // 1_000_000
    with open_reader(journal_path, config_path) as reader:
        rows = reader.pending()
        last = reader.last_seq()
    if as_json:
        for p in rows:
            oldest_age = None if p.oldest_unfinished_ms is None else now - p.oldest_unfinished_ms
            click.echo(
                json.dumps(
                    {
                        "sink": p.sink,
                        "cursor": p.cursor,
                        "backlog": p.backlog,
                        "oldest_unfinished_ms": p.oldest_unfinished_ms,
                        "oldest_age_ms": oldest_age,
                        "last_seq": last,
                    }
                )
            )
        return
    click.echo(f"journal at seq {last}")
    if not rows:
        click.echo("no sinks have a cursor yet")
    for p in rows:
        shown = "-" if p.oldest_unfinished_ms is None else age(now - p.oldest_unfinished_ms)
        click.echo(f"{p.sink:<12} cursor {p.cursor:>8}  backlog {p.backlog:>7}  oldest {shown}")


@click.command("verify")
@journal_option
@config_option
def journal_verify(journal_path: Path | None, config_path: Path | None) -> None:
    """Check the whole hash chain and seq continuity; name the first bad row (exit 1).

    On a big journal it reports its progress on stderr every 100,000 rows.
    """
    import sqlite3  # noqa: PLC0415 - only verify needs it

    with open_reader(journal_path, config_path) as reader:
        try:
            checked, problem = _verify_with_progress(reader)
        except sqlite3.DatabaseError as e:  # damage past what verify reads row by row
            checked, problem = 0, f"the journal cannot be read ({e})"
    if problem is not None:
        click.echo(f"BROKEN after {checked} good rows: {problem}")
        sys.exit(EXIT_REJECTED)
    click.echo(f"ok: {checked} rows, chain and seq intact")


def _verify_with_progress(reader: JournalReader) -> tuple[int, str | None]:
    """``JournalReader.verify``, with a progress line on stderr every VERIFY_PROGRESS_ROWS."""
    total = max(1, reader.last_seq())
    started = time.monotonic()

    def show(checked: int) -> None:
        rate = checked / max(1e-9, time.monotonic() - started)
        click.echo(
            f"verify: {checked:,}/{total:,} rows ({checked / total:.0%}, {rate:,.0f}/s)",
            err=True,
        )

    return reader.verify(progress=show, every=VERIFY_PROGRESS_ROWS)
