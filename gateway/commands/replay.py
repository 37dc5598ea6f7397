"""``fmfb replay``: send a range of the journal again, in order, marked, resumable.

See ``gateway.replay`` for what a replay is and what it never does (it never feeds). This
module does the I/O: reading the journal in chunks (read-only; short read transactions, so a
long replay does not hold the daemon's WAL open), sending to the target, and moving the
replay's own cursor row after each accepted batch.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

import click

from gateway.clock import SystemClock
from gateway.commands.common import fail, load_config, open_reader, when
from gateway.commands.options import config_option, journal_option
from gateway.config import Config
from gateway.errors import UsageError
from gateway.eventbridge_entries import (
    MAX_ENTRIES,
)
from gateway.events import Event, EventType
from gateway.journal import EventFilter, JournalReader, OwnCursor
from gateway.replay import (
    ReplayUsageError,
    Target,
    cursor_name,
    parse_target,
    progress_line,
    replay_source,
)
from gateway.replay_targets import (
    EventBridgeTarget,
    IotCoreTarget,
    JsonlTarget,
    ReplayFailedError,
)

CHUNK: Final = 500  # events read per read transaction
EXIT_FAILED: Final = 1


def chunks(
    reader: JournalReader, selection: EventFilter, after: int, end: int
) -> Iterator[list[Event]]:
    """The selected events in (after, end], in seq order, CHUNK at a time (each chunk its own
    short read)."""
    position = after
    while position < end:
        events = list(reader.query(selection.between(position, end), limit=CHUNK))
        if not events:
            return
        yield events
        position = events[-1].seq


# --- the command ---------------------------------------------------------------------------


@click.command("replay")
@click.option(
    "--to",
    "target_text",
    required=True,
    metavar="eventbridge|iot-core|jsonl:PATH",
    help="Where to send: EventBridge, IoT Core ([sinks.iot_core]), or append to a JSONL file.",
)
@click.option("--name", required=True, help="The replay's name: run it again to resume.")
@click.option("--from-seq", type=click.IntRange(min=1), help="First seq (inclusive).")
@click.option("--to-seq", type=click.IntRange(min=1), help="Last seq (inclusive).")
@click.option("--since", callback=when, help="Recorded at or after (ISO 8601 or 2h ago).")
@click.option("--until", callback=when, help="Recorded before (same forms).")
@click.option(
    "--type",
    "types",
    multiple=True,
    type=click.Choice([t.value for t in EventType]),
    help="Only this event type (repeatable).",
)
@click.option("--bus", help="EventBridge bus [default: the configured one, or feedmyfurbabies].")
@click.option(
    "--source",
    help="EventBridge source [default: the configured source + '.replay', so a rule on the "
    "live source (like the published one, which turns events into feed commands) does not "
    "match replays].",
)
@click.option("--endpoint-url", help="EventBridge endpoint (an emulator) [default: configured].")
@click.option(
    "--batch-size",
    default=MAX_ENTRIES,
    show_default=True,
    type=click.IntRange(1, MAX_ENTRIES),
    help="Entries per PutEvents call.",
)
@click.option("--quiet", is_flag=True, help="No progress on stderr.")
@journal_option
@config_option
def replay(  # noqa: PLR0917 - one parameter per option
    target_text: str,
    name: str,
    from_seq: int | None,
    to_seq: int | None,
    since: int | None,
    until: int | None,
    types: tuple[str, ...],
    bus: str | None,
    source: str | None,
    endpoint_url: str | None,
    batch_size: int,
    quiet: bool,
    journal_path: Path | None,
    config_path: Path | None,
) -> None:
    """Send a range of the journal again, in seq order, each event marked as a replay.

    \b
    A replay never feeds: it only reads the journal and sends to the target given; it never
    reaches the feeder and never becomes a command. It is resumable: its position is the
    cursor row replay:NAME in the journal (see `fmfb journal pending`); run the same command
    again after an interruption and it continues where it stopped. Seq, not time, is the
    order; --since/--until filter on each event's recorded time.
    \b
    Examples:
      fmfb replay --to jsonl:/tmp/all.jsonl --name export-1
      fmfb replay --to eventbridge --bus history-v2 --name backfill --type FeedRequested
      fmfb replay --to iot-core --name last-week --since 7d
    """

    def say(text: str) -> None:
        if not quiet:
            click.echo(text, err=True)

    try:
        target = parse_target(target_text)
        cursor_name(name)
        selection = EventFilter(types, (), from_seq, to_seq, since, until).checked()
    except UsageError as e:  # a bad target, name or range
        fail(str(e))
    config = load_config(config_path)
    with open_reader(journal_path, config_path) as reader:
        cursor = OwnCursor(reader.path, cursor_name(name), SystemClock())
        try:
            sender = _open_target(
                target,
                config,
                name=name,
                bus=bus,
                source=source,
                endpoint_url=endpoint_url,
                batch_size=batch_size,
                say=say,
            )
        except ReplayUsageError as e:
            cursor.close()
            fail(str(e))
        except ReplayFailedError as e:
            cursor.close()
            fail(str(e), EXIT_FAILED)
        try:
            _run(reader, cursor, sender, selection, name=name, target=target, say=say)
        except ReplayFailedError as e:
            fail(
                f"{e} (replay {name} stopped at seq {cursor.get() or 0}; run it again to retry)",
                EXIT_FAILED,
            )
        finally:
            sender.close()
            cursor.close()


def _open_target(
    target: Target,
    config: Config,
    *,
    name: str,
    bus: str | None,
    source: str | None,
    endpoint_url: str | None,
    batch_size: int,
    say: Callable[[str], None],
) -> JsonlTarget | EventBridgeTarget | IotCoreTarget:
    if target.kind == "jsonl":
        assert target.path is not None
        return JsonlTarget(target.path, config.gateway_id, name)
    if target.kind == "iot-core":
        return IotCoreTarget(config, name, say)
    eb = config.sinks.eventbridge
    live_bus = "feedmyfurbabies" if eb is None else eb.bus
    live_source = "com.feedmyfurbabies" if eb is None else eb.source
    chosen_source = source or replay_source(live_source)
    if chosen_source == live_source:
        say(
            f"replay: WARNING: sending with the live source {live_source!r}: a rule like the "
            "published one would turn replayed presses into feed commands"
        )
    return EventBridgeTarget(
        config,
        bus=bus or live_bus,
        source=chosen_source,
        name=name,
        endpoint_url=endpoint_url or (None if eb is None else eb.endpoint_url),
        batch_size=batch_size,
        say=say,
    )


def _run(
    reader: JournalReader,
    cursor: OwnCursor,
    sender: JsonlTarget | EventBridgeTarget | IotCoreTarget,
    selection: EventFilter,
    *,
    name: str,
    target: Target,
    say: Callable[[str], None],
) -> None:
    start = selection.start_after(cursor.get())
    end = selection.end(reader.last_seq())
    total = reader.count(selection.between(start, end)) if end > start else 0
    resumed = f" (resuming after seq {start})" if cursor.get() else ""
    say(f"replay {name} to {target}: {total} events in seq {start + 1}..{end}{resumed}")
    sent = 0
    last_shown = 0.0
    position = start

    def advance(seq: int) -> None:
        nonlocal position
        if seq > position:
            cursor.save(seq)
            position = seq

    for events in chunks(reader, selection, start, end):
        sender.send(events, advance)
        sent += len(events)
        now = time.monotonic()
        if now - last_shown >= 1.0:
            say(progress_line(name, sent, total, position, end))
            last_shown = now
    advance(end)
    say(progress_line(name, sent, total, position, end))
    click.echo(f"replay {name}: {sent} events sent to {target}, done through seq {end}")
    sys.stdout.flush()
