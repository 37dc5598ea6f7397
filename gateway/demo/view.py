"""The demo's live terminal view and its plain-line output.

Two halves, kept apart so the first can be tested without a terminal:

- pure rendering: a :class:`Snapshot` of what the demo knows (the journal's newest events, the
  feeder, each sink's cursor and backlog, the "internet", what reached the SQS target) becomes
  a list of text lines (:func:`render`), and one line per step for the scripted, plain output
  (:func:`status_line`, :func:`event_line`);
- terminal I/O: :class:`CursesScreen` draws those lines with the standard library's curses
  and reads keys without blocking; :func:`can_draw` says whether there is a terminal to draw
  on (``scripts/run | tee log`` has none on stdout: the demo then prints plain lines).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.status import SinkStatus

KEY_HELP = (
    "keys: 1 SINGLE  2 DOUBLE  3 LONG (GPIO button)   s d l: the same on the MQTT button",
    "      c cut the internet   r restore it   q quit (Ctrl-C works too)",
)


@dataclass(frozen=True, slots=True)
class EventRow:
    seq: int
    type: str
    summary: str


@dataclass(frozen=True, slots=True)
class FeederRow:
    online: bool | None  # as the gateway's journal says (None: not heard from)
    food_level: int | None
    runs: Mapping[str, int] = field(default_factory=dict)  # bowl → motor runs (simulator)


@dataclass(frozen=True, slots=True)
class Snapshot:
    journal_seq: int
    events: Sequence[EventRow]
    sinks: Sequence[SinkStatus]  # as the daemon reports them
    feeder: FeederRow
    internet_up: bool
    sqs_received: int  # distinct events that reached the SQS target
    sqs_in_order: bool  # ... and they arrived in seq order
    message: str = ""  # the last thing that happened (a key, a step)
    state_dir: str = ""
    schedule: str = ""  # the schedule input's status detail (next meal, or why it waits)
    alerts: str = ""  # the open alerts


def summarize(payload: Mapping[str, Any]) -> str:
    """A short human summary of an event's payload (bowls, click, reason, level, ...)."""
    bits: list[str] = []
    bowls = payload.get("bowls")
    if isinstance(bowls, list | tuple) and bowls:
        bits.append("+".join(str(b) for b in bowls))
    for key in ("click_type", "button", "reason", "refused_by", "ran_ms", "level", "error"):
        value = payload.get(key)
        if value not in (None, ""):
            bits.append(f"{key}={value}")
    return " ".join(bits)


def _sink_text(sink: SinkStatus) -> str:
    link = "connected" if sink.connected else "OFFLINE  "
    name = f"{sink.name} sink"
    return f"{name:<17} {link}  cursor {sink.cursor:>5}  backlog {sink.backlog:>4}"


def _feeder_text(feeder: FeederRow) -> str:
    online = {True: "online", False: "OFFLINE", None: "not heard from"}[feeder.online]
    level = "?" if feeder.food_level is None else f"{feeder.food_level}%"
    runs = "  ".join(f"{bowl} bowl ran {n}x" for bowl, n in sorted(feeder.runs.items()))
    return f"the feeder        {online:<9}  food {level:>4}   {runs}".rstrip()


def _clip(line: str, width: int) -> str:
    return line if len(line) <= width else line[: max(0, width - 1)] + "…"


def render(snapshot: Snapshot, width: int = 100, height: int = 30) -> list[str]:
    """The whole screen as lines, at most ``height`` lines of at most ``width`` characters.

    The journal gets whatever rows are left after the fixed parts; it shows the newest events.
    """
    s = snapshot
    internet = (
        "UP   (the gateway reaches the AWS emulator)"
        if s.internet_up
        else "CUT  (events wait in the journal)"
    )
    order = "in seq order" if s.sqs_in_order else "OUT OF ORDER"
    head = [
        "fmfb demo: a gateway, a feeder, a broker and a local AWS, all on this machine",
        "",
        f"internet          {internet}",
        *(_sink_text(sink) for sink in s.sinks),
        _feeder_text(s.feeder),
        f"SQS target        {s.sqs_received} events received from the bus, {order}",
        *([f"schedule          {s.schedule}"] if s.schedule else []),
        *([f"alerts            {s.alerts}"] if s.alerts else []),
        "",
    ]
    foot = ["", *KEY_HELP, f"> {s.message}" if s.message else ">"]
    rows_left = max(1, height - len(head) - len(foot) - 1)
    journal_title = f"journal (seq {s.journal_seq}, newest last)"
    shown = list(s.events)[-rows_left:]
    journal = [journal_title]
    journal += [f"  {e.seq:>5}  {e.type:<18} {e.summary}" for e in shown]
    if not shown:
        journal.append("  (empty)")
    lines = head + journal + foot
    return [_clip(line, width) for line in lines[:height]]


def status_line(snapshot: Snapshot) -> str:
    """One line for the scripted output: the internet, each sink, the feeder, the SQS count."""
    s = snapshot
    sinks = " | ".join(
        f"{x.name} {'connected' if x.connected else 'OFFLINE'} cursor {x.cursor} "
        f"backlog {x.backlog}"
        for x in s.sinks
    )
    level = "?" if s.feeder.food_level is None else f"{s.feeder.food_level}%"
    runs = sum(s.feeder.runs.values())
    return (
        f"status: seq {s.journal_seq} | internet {'up' if s.internet_up else 'CUT'} | {sinks} | "
        f"bowls run {runs} food {level} | sqs received {s.sqs_received}"
        + (f" | schedule: {s.schedule}" if s.schedule else "")
        + (f" | alerts: {s.alerts}" if s.alerts else "")
    )


def event_line(row: EventRow) -> str:
    return f"journal: seq {row.seq:>4}  {row.type:<18} {row.summary}".rstrip()


def can_draw() -> bool:
    """Whether the live view can run: keys come from a terminal, the screen goes to one, and
    the terminal type is one curses can drive."""
    term = os.environ.get("TERM", "")
    return sys.stdin.isatty() and sys.stdout.isatty() and term not in {"", "dumb", "unknown"}


class CursesScreen:
    """The live view on a terminal: draws lines, reads keys without blocking."""

    def __init__(self) -> None:
        self._curses: Any = None
        self._screen: Any = None

    def __enter__(self) -> CursesScreen:
        import curses  # noqa: PLC0415 - only for the interactive view

        self._curses = curses
        screen = curses.initscr()
        try:
            curses.noecho()
            curses.cbreak()  # keys at once; Ctrl-C still raises SIGINT
            screen.keypad(True)
            screen.nodelay(True)
            with contextlib.suppress(curses.error):
                curses.curs_set(0)
        except BaseException:
            curses.endwin()
            raise
        self._screen = screen
        return self

    def __exit__(self, *exc: object) -> None:
        curses = self._curses
        if self._screen is not None:
            with contextlib.suppress(curses.error):
                self._screen.keypad(False)
                curses.nocbreak()
                curses.echo()
            curses.endwin()
            self._screen = None

    def size(self) -> tuple[int, int]:
        height, width = self._screen.getmaxyx()
        return int(width), int(height)

    def draw(self, lines: Sequence[str]) -> None:
        screen, curses = self._screen, self._curses
        height, width = screen.getmaxyx()
        screen.erase()
        for y, line in enumerate(lines[:height]):
            with contextlib.suppress(curses.error):  # writing the bottom-right cell raises
                screen.addstr(y, 0, line[: max(0, width - 1)])
        screen.refresh()

    def read_keys(self) -> list[str]:
        """Keys pressed since the last call (printable ones as characters)."""
        out: list[str] = []
        while True:
            code = self._screen.getch()
            if code == -1:
                return out
            if 0 <= code < 256:
                out.append(chr(code))
