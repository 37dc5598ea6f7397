"""``fmfb replay``: send a range of the journal again, in order, marked, resumable.

See ``gateway.replay`` for what a replay is and what it never does (it never feeds). This
module does the I/O: reading the journal in chunks (read-only; short read transactions, so a
long replay does not hold the daemon's WAL open), sending to the target, and moving the
replay's own cursor row after each accepted batch.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, Final

import click

from gateway.clock import SystemClock
from gateway.commands.options import config_option, journal_option
from gateway.config import Config
from gateway.eventbridge_entries import (
    MAX_ENTRIES,
    DeadLetterStep,
    Disposition,
    EntrySpec,
    SendStep,
    interpret,
    iter_plan,
    resume_seq,
)
from gateway.events import Event, EventType
from gateway.journal import JournalReader, OwnCursor
from gateway.replay import (
    ReplayUsageError,
    Selection,
    Target,
    cursor_name,
    mark,
    parse_target,
    progress_line,
    replay_detail,
    replay_source,
)

CHUNK: Final = 500  # events read per read transaction
EXIT_FAILED: Final = 1
RETRY_FIRST_S: Final = 0.5
RETRY_MAX_S: Final = 30.0

Advance = Callable[[int], None]


class ReplayFailedError(Exception):
    """The target refused an event for good; the cursor stays before it."""


def chunks(
    reader: JournalReader, selection: Selection, after: int, end: int
) -> Iterator[list[Event]]:
    """The selected events in (after, end], in seq order, CHUNK at a time (each chunk its own
    short read)."""
    position = after
    while position < end:
        events = list(
            reader.query(
                types=selection.types,
                since_ms=selection.since_ms,
                until_ms=selection.until_ms,
                from_seq=position + 1,
                to_seq=end,
                limit=CHUNK,
            )
        )
        if not events:
            return
        yield events
        position = events[-1].seq


def count_selected(reader: JournalReader, selection: Selection, after: int, end: int) -> int:
    return reader.count(
        types=selection.types,
        since_ms=selection.since_ms,
        until_ms=selection.until_ms,
        from_seq=after + 1,
        to_seq=end,
    )


# --- targets -------------------------------------------------------------------------------


class JsonlTarget:
    """Appends one JSON object per line; each chunk is fsynced before the cursor moves."""

    def __init__(self, path: Path, gateway_id: str, name: str) -> None:
        self.path = path
        self.gateway_id = gateway_id
        self.name = name
        self._file: IO[str] = path.open("a", encoding="utf-8")

    def send(self, events: Sequence[Event], advance: Advance) -> None:
        lines = [_compact(replay_detail(e, self.gateway_id, self.name)) + "\n" for e in events]
        self._file.write("".join(lines))
        self._file.flush()
        os.fsync(self._file.fileno())
        advance(events[-1].seq)

    def close(self) -> None:
        self._file.close()


def _compact(detail: dict[str, Any]) -> str:
    import json  # noqa: PLC0415

    return json.dumps(detail, separators=(",", ":"), ensure_ascii=False)


class EventBridgeTarget:
    """PutEvents to any bus, with gateway.eventbridge_entries' batches and reply reading."""

    def __init__(
        self,
        config: Config,
        *,
        bus: str,
        source: str,
        name: str,
        endpoint_url: str | None,
        batch_size: int,
        say: Callable[[str], None],
    ) -> None:
        from botocore.config import Config as BotoConfig  # noqa: PLC0415 - cloud only

        from gateway.credentials import aws_session  # noqa: PLC0415

        eb = config.sinks.eventbridge
        attempts = 5 if eb is None else eb.max_attempts
        timeout = 10.0 if eb is None else eb.timeout_s
        self.spec = EntrySpec(
            bus=bus, source=source, gateway_id=config.gateway_id, replay=mark(name)
        )
        self.batch_size = batch_size
        self.say = say
        self.control_path = config.control_path
        self._told_no_gateway = False
        self.client = aws_session(config.cloud).client(
            "events",
            endpoint_url=endpoint_url,
            region_name=config.cloud.aws.region,
            config=BotoConfig(
                retries={"mode": "standard", "max_attempts": attempts},
                connect_timeout=timeout,
                read_timeout=timeout,
            ),
        )

    def send(self, events: Sequence[Event], advance: Advance) -> None:
        from gateway.sinks.eventbridge import describe_call_error  # noqa: PLC0415

        for step in iter_plan(events, self.spec, max_entries=self.batch_size):
            if isinstance(step, DeadLetterStep):
                self.say(f"replay: seq {step.entry.seq} skipped: {step.error}")
                advance(step.through_seq)
                continue
            remaining = step
            delay = RETRY_FIRST_S
            while True:
                requests = [e.request for e in remaining.entries]
                self._announce([e.seq for e in remaining.entries])
                try:
                    response = self.client.put_events(Entries=requests) if requests else {}
                except Exception as e:
                    failure = describe_call_error(e)
                    if failure.disposition is not Disposition.TRANSIENT:
                        raise ReplayFailedError(
                            f"EventBridge refused seq {remaining.first_seq}..."
                            f"{remaining.through_seq}: {failure.error}"
                        ) from e
                    self.say(f"replay: EventBridge unreachable ({failure.error}); retrying")
                else:
                    reply = interpret(response, len(requests))
                    moved = resume_seq(remaining, reply)
                    if moved is not None:
                        advance(moved)
                    if reply.first_failure is None:
                        break
                    failure_entry = remaining.entries[reply.accepted]
                    if reply.first_failure.disposition is not Disposition.TRANSIENT:
                        raise ReplayFailedError(
                            f"EventBridge refused seq {failure_entry.seq}: "
                            f"{reply.first_failure.describe()}"
                        )
                    remaining = SendStep(
                        failure_entry.seq,
                        remaining.through_seq,
                        remaining.entries[reply.accepted :],
                    )
                    self.say(
                        f"replay: seq {failure_entry.seq} not accepted "
                        f"({reply.first_failure.describe()}); sending again"
                    )
                time.sleep(delay)
                delay = min(RETRY_MAX_S, delay * 2)

    def _announce(self, seqs: list[int]) -> None:
        """Tell the running gateway these events are about to reach EventBridge, so that a
        replayed press coming back through a rule like the published one (an id-less command)
        is taken as an echo and never fed. Done before every send: each copy can echo once."""
        from gateway.control import call  # noqa: PLC0415
        from gateway.errors import ControlError  # noqa: PLC0415

        if not seqs:
            return
        try:
            call(self.control_path, {"op": "expect-echoes", "seqs": seqs}, timeout_s=5)
        except ControlError as e:
            if not self._told_no_gateway:
                self._told_no_gateway = True
                self.say(
                    f"replay: no running gateway was told about this replay ({e}); if a rule "
                    "turns these events into feed commands, a gateway started later could "
                    "take them for real ones"
                )

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()


class IotCoreTarget:
    """Publishes each event (QoS 1, in order, one PUBACK at a time, paced) over mTLS with the
    configured [cloud.iot_core] certificate, on its events topic."""

    def __init__(self, config: Config, name: str, say: Callable[[str], None]) -> None:
        from awscrt import mqtt5  # noqa: PLC0415 - cloud only
        from awsiot import mqtt5_client_builder  # noqa: PLC0415

        from gateway.sinks.iot_core import events_topic  # noqa: PLC0415

        iot = config.sinks.iot_core
        if iot is None:
            raise ReplayUsageError("--to iot-core needs [cloud.iot_core] in the config")
        self.mqtt5 = mqtt5
        self.topic = events_topic(iot, config.gateway_id)
        self.gateway_id = config.gateway_id
        self.name = name
        self.say = say
        self.interval = 1.0 / iot.publish_rate_per_s
        self._connected = threading.Event()
        self._error: str | None = None
        self._last = 0.0

        def connected(_data: Any) -> None:
            self._connected.set()

        def failed(data: Any) -> None:
            self._error = str(getattr(data, "exception", data))
            self._connected.set()

        # Its own client id: the daemon's session (the gateway id) must not be taken over.
        client_id = f"{iot.client_id or config.gateway_id}-replay-{name}"[:128]
        self.client = mqtt5_client_builder.mtls_from_path(
            endpoint=iot.endpoint,
            port=iot.port,
            cert_filepath=str(iot.cert_file),
            pri_key_filepath=str(iot.key_file),
            ca_filepath=None if iot.ca_file is None else str(iot.ca_file),
            client_id=client_id,
            enable_metrics_collection=iot.metrics,
            clean_start=True,
            on_lifecycle_connection_success=connected,
            on_lifecycle_connection_failure=failed,
        )
        self.client.start()
        if not self._connected.wait(30) or self._error is not None:
            self.client.stop()
            raise ReplayFailedError(
                f"IoT Core {iot.endpoint}:{iot.port}: {self._error or 'timeout'}"
            )

    def send(self, events: Sequence[Event], advance: Advance) -> None:
        mqtt5 = self.mqtt5
        for event in events:
            wait = self._last + self.interval - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self._last = time.monotonic()
            packet = mqtt5.PublishPacket(
                payload=_compact(replay_detail(event, self.gateway_id, self.name)).encode(),
                qos=mqtt5.QoS.AT_LEAST_ONCE,
                topic=self.topic,
                payload_format_indicator=mqtt5.PayloadFormatIndicator.AWS_MQTT5_PFI_UTF8,
                content_type="application/json",
            )
            result = self.client.publish(packet).result(timeout=60)
            puback = getattr(result, "puback", None)
            code = None if puback is None else puback.reason_code
            if code is not None and int(code) >= 0x80:
                raise ReplayFailedError(f"IoT Core refused seq {event.seq}: {code}")
        advance(events[-1].seq)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.stop()


# --- the command ---------------------------------------------------------------------------


def _when(_ctx: click.Context, _param: click.Parameter, value: str | None) -> int | None:
    from gateway.cli import parse_when  # noqa: PLC0415 - gateway.cli imports this module

    return None if value is None else parse_when(value)


@click.command("replay")
@click.option(
    "--to",
    "target_text",
    required=True,
    metavar="eventbridge|iot-core|jsonl:PATH",
    help="Where to send: EventBridge, IoT Core ([cloud.iot_core]), or append to a JSONL file.",
)
@click.option("--name", required=True, help="The replay's name: run it again to resume.")
@click.option("--from-seq", type=click.IntRange(min=1), help="First seq (inclusive).")
@click.option("--to-seq", type=click.IntRange(min=1), help="Last seq (inclusive).")
@click.option("--since", callback=_when, help="Recorded at or after (ISO 8601 or 2h ago).")
@click.option("--until", callback=_when, help="Recorded before (same forms).")
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
    from gateway.cli import _config, _fail, _open_reader  # noqa: PLC0415 - see _when

    def say(text: str) -> None:
        if not quiet:
            click.echo(text, err=True)

    try:
        target = parse_target(target_text)
        cursor_name(name)
        selection = Selection(from_seq, to_seq, since, until, types)
    except ReplayUsageError as e:
        _fail(str(e))
    config = _config(config_path)
    with _open_reader(journal_path, config_path) as reader:
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
            _fail(str(e))
        except ReplayFailedError as e:
            cursor.close()
            _fail(str(e), EXIT_FAILED)
        try:
            _run(reader, cursor, sender, selection, name=name, target=target, say=say)
        except ReplayFailedError as e:
            _fail(
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
    selection: Selection,
    *,
    name: str,
    target: Target,
    say: Callable[[str], None],
) -> None:
    start = selection.start_after(cursor.get())
    end = selection.end(reader.last_seq())
    total = count_selected(reader, selection, start, end) if end > start else 0
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
