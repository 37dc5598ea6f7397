"""Replay: any range of the journal sent again, in seq order, marked as a replay. Pure parts.

``fmfb replay`` (``gateway.commands.replay``) reads the journal read-only and sends each
selected event to one target — EventBridge (any bus), IoT Core, or a JSONL file — with
``cloud_detail(..., replay=ReplayMark(name))``: the detail carries ``"replay": {"name",
"original-seq", "original-time-ms"}`` besides the event's own seq and time.

**A replay never feeds.** It is a separate process that only reads the journal: it never
appends an event, never goes to the local feeder sink (``cat-feeder/action`` on the local
broker) and never enters the intake, so a replayed ``FeedRequested`` is a record, not a
command. Towards the cloud it is sent with its own EventBridge source by default
(``<source>.replay``), so a rule like the published one — which turns every event of the live
source into a command on ``cat-feeder/action`` — does not match replays; a person who sends
replays with the live source to a bus that has such a rule is told so.

A replay is a named cursor: its position is the row ``replay:<name>`` of the journal's
``cursors`` table, the last seq it has finished, written by the replay process itself in its
own short transactions after each batch the target accepted (the daemon never moves it). A
killed replay run again with the same name continues after that seq: nothing is missed and
order is kept; the batch in flight at the kill may arrive twice (``original-seq`` and
``event-id`` let a receiver drop the copy).

The range: ``--from-seq/--to-seq`` (inclusive), ``--since/--until`` (recorded time; seq is the
order), ``--type`` (repeatable). The end is fixed when a run starts (``--to-seq``, else the
journal's last seq then), so a replay of a live journal finishes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from gateway.cloud_event import ReplayMark, cloud_detail, detail_json
from gateway.errors import UsageError
from gateway.events import Event

CURSOR_PREFIX: Final = "replay:"
_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
REPLAY_SOURCE_SUFFIX: Final = ".replay"


class ReplayUsageError(UsageError):
    """A replay asked for in a way that cannot work (the message says why)."""


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ReplayUsageError(
            f"replay name {name!r}: 1 to 64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )
    return name


def cursor_name(name: str) -> str:
    """The replay's row in the journal's cursors table."""
    return CURSOR_PREFIX + check_name(name)


def mark(name: str) -> ReplayMark:
    return ReplayMark(check_name(name))


def replay_source(live_source: str) -> str:
    """The default EventBridge source of replays: the live one plus ``.replay``."""
    return live_source + REPLAY_SOURCE_SUFFIX


@dataclass(frozen=True, slots=True)
class Target:
    kind: str  # "eventbridge" | "iot-core" | "jsonl"
    path: Path | None = None

    def __str__(self) -> str:
        return f"jsonl:{self.path}" if self.kind == "jsonl" else self.kind


def parse_target(text: str) -> Target:
    if text in ("eventbridge", "iot-core"):
        return Target(text)
    if text.startswith("jsonl:") and len(text) > len("jsonl:"):
        return Target("jsonl", Path(text[len("jsonl:") :]))
    raise ReplayUsageError(f"--to {text!r}: use eventbridge, iot-core or jsonl:PATH")


def replay_detail(event: Event, gateway_id: str, name: str) -> dict[str, Any]:
    """What every target receives for ``event``: the cloud detail, marked."""
    return cloud_detail(event, gateway_id, mark(name))


def jsonl_line(event: Event, gateway_id: str, name: str) -> str:
    """One line of a JSONL replay (no newline inside: compact JSON)."""
    return detail_json(event, gateway_id, mark(name))


def progress_line(name: str, sent: int, total: int, seq: int, end: int) -> str:
    pct = 100.0 if total == 0 else 100.0 * sent / total
    return f"replay {name}: {sent}/{total} events ({pct:.0f}%), at seq {seq} of {end}"


def is_replay_cursor(sink: str) -> bool:
    return sink.startswith(CURSOR_PREFIX)
