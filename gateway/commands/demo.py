"""``fmfb demo``: the whole product on this machine, in one command (see :mod:`gateway.demo`).

A thin command: the options, the script read from ``--script`` or stdin, and the exit status.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command()
@click.option(
    "--script",
    metavar="STEPS",
    help='Run these steps with no keyboard and plain output, e.g. "press SINGLE; cut; '
    'press DOUBLE; restore; wait drained; quit". Exit 0 when every step succeeded.',
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the journal and logs here [default: a temporary directory, removed at exit].",
)
@click.option(
    "--no-tty",
    is_flag=True,
    help="Plain line output; steps are read from stdin (the default when stdin is not a terminal).",
)
def demo(script: str | None, state_dir: Path | None, no_tty: bool) -> None:
    """See the whole product work on this machine: no Pi, no feeder, no AWS account.

    Starts a private Mosquitto, a local AWS (moto's server: the bus feedmyfurbabies, the rule
    feeds and an SQS target), a simulated feeder, a cuttable "internet" link, and the gateway
    itself (the daemon of `fmfb run`, with a mock GPIO button and an MQTT button), all on
    127.0.0.1. A live view shows the journal growing, the feeder, each sink's cursor and backlog.

    \b
    Keys: 1 2 3  SINGLE / DOUBLE / LONG on the GPIO button
          s d l  the same on the MQTT button
          c      cut the internet (the EventBridge backlog grows)
          r      restore it (the backlog drains, in order)
          q      quit (Ctrl-C too): everything is stopped and cleaned up

    When stdout is not a terminal (scripts/run | tee log), the output is plain lines and the
    steps below are typed on the keyboard, one line at a time.

    \b
    Steps (--script, or stdin when it is not a terminal; ';' or new lines between them):
      press SINGLE|DOUBLE|LONG [gpio|mqtt]   cut   restore   status
      wait drained [SECONDS]   wait SECONDS   quit
    """
    # The demo's package (and gateway.devstack, moto, boto3) only when the demo runs: the
    # rest of the CLI, `fmfb --help` included, never imports them.
    from gateway.demo import DemoError  # noqa: PLC0415
    from gateway.demo.app import run_demo  # noqa: PLC0415
    from gateway.demo.script import Step, parse_script  # noqa: PLC0415

    try:
        if script is not None:
            steps: list[Step] | None = parse_script(script)
        elif no_tty or not sys.stdin.isatty():
            steps = parse_script(sys.stdin.read())
        else:
            steps = None  # keys: the live view, or typed steps when stdout is not a terminal
    except DemoError as e:
        raise click.UsageError(str(e)) from None
    sys.exit(run_demo(steps, state_dir=state_dir, out=sys.stdout))
