"""``fmfb``: run the gateway, ask it for a feed, and inspect its journal.

Built on click. This module is only the command tree: each command lives in
:mod:`gateway.commands` and is imported when it runs (:class:`LazyGroup`), so that typing
``fmfb journal list`` on a Pi Zero does not pay for the daemon, pydantic or the cloud SDKs.
"""

from __future__ import annotations

import click

from gateway import __version__
from gateway.commands.lazy import Lazy, LazyGroup

_C = "gateway.commands"

COMMANDS = {
    "run": Lazy(f"{_C}.running:run", "Run the gateway daemon in the foreground (as systemd does)."),
    "feed": Lazy(f"{_C}.running:feed", "Ask the running gateway to feed BOWLS now."),
    "press": Lazy(f"{_C}.running:press", "Send CLICK (SINGLE, DOUBLE or LONG) as BUTTON would."),
    "status": Lazy(f"{_C}.running:status", "Show the running gateway's status."),
    "demo": Lazy(f"{_C}.demo:demo", "The whole product on this machine: no Pi, no AWS."),
    "replay": Lazy(f"{_C}.replay:replay", "Send journaled events again, marked, in seq order."),
    "project": Lazy(f"{_C}.project:project", "Build a datastore from the journal (a fold)."),
    "doctor": Lazy(f"{_C}.doctor:doctor", "Check the gateway, and say how to fix what is wrong."),
}

JOURNAL_COMMANDS = {
    "list": Lazy(f"{_C}.inspect:journal_list", "List events in seq order (newest last)."),
    "show": Lazy(f"{_C}.inspect:journal_show", "Show one event in full, with its checks."),
    "tail": Lazy(f"{_C}.inspect:journal_tail", "Print events as they are journaled."),
    "stats": Lazy(f"{_C}.report:journal_stats", "Feeds, refusals, food and uptime, folded."),
    "export": Lazy(f"{_C}.report:journal_export", "Write events as JSONL or CSV."),
    "chart": Lazy(f"{_C}.report:journal_chart", "Write a self-contained HTML chart."),
    "pending": Lazy(f"{_C}.journal:journal_pending", "Per sink: cursor, backlog, oldest."),
    "verify": Lazy(f"{_C}.journal:journal_verify", "Check the whole hash chain and seq order."),
}

SCHEDULE_COMMANDS = {
    "next": Lazy(f"{_C}.schedule:schedule_next", "Show the next meal that will be fed."),
    "skip": Lazy(f"{_C}.schedule:schedule_skip", "Skip the next meal (journaled)."),
    "pause": Lazy(f"{_C}.schedule:schedule_pause", "Pause every schedule until a time."),
    "resume": Lazy(f"{_C}.schedule:schedule_resume", "End a pause now."),
}

CONFIG_COMMANDS = {
    "check": Lazy(f"{_C}.config:config_check", "Validate the config file."),
    "show": Lazy(f"{_C}.config:config_show", "Print the effective configuration as JSON."),
    "from-terraform": Lazy(
        f"{_C}.from_terraform:from_terraform",
        "Write the cloud sections from `terraform output -json`.",
    ),
}


@click.group(
    cls=LazyGroup,
    lazy=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="fmfb")
def main() -> None:
    """The feedmyfurbabies gateway: a cat feeder that keeps feeding offline, and keeps every
    event of its life in an ordered, hash-chained journal.

    \b
    Start it:            fmfb run                 (embedded defaults: no Pi, no AWS needed)
    Try everything:      fmfb demo                (a broker, a local AWS, a simulated feeder)
    Ask for a feed:      fmfb feed left|right|both
    Press a button:      fmfb press mqtt-button SINGLE
    See what happened:   fmfb journal list        (newest last; --json for scripts)
    See what is behind:  fmfb journal pending
    Check the chain:     fmfb journal verify
    Something wrong?     fmfb doctor
    """


@main.group(cls=LazyGroup, lazy=JOURNAL_COMMANDS)
def journal() -> None:
    """Inspect the journal (safe while the daemon runs; also works on a copied file).

    The journal's order is seq, not time: the Pi has no real-time clock, and each event records
    whether its clock was synchronised. Time filters use each event's recorded time.
    """


@main.group("schedule", cls=LazyGroup, lazy=SCHEDULE_COMMANDS)
def schedule_group() -> None:
    """The running gateway's meal schedules ([[schedule]] in the config): next, skip, pause."""


@main.group("config", cls=LazyGroup, lazy=CONFIG_COMMANDS)
def config_group() -> None:
    """Check or show the configuration."""
