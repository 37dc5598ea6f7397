"""Set-up and tear-down around a demo session: the directory, logging, the environment, the
stack, SIGTERM, and what is printed before and after.

On q, Ctrl-C or SIGTERM the daemon stops (journaling ``GatewayStopped``), then the simulator,
the relay, moto and Mosquitto, and the temporary directory is removed (kept with
``--state-dir``).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from gateway import redact
from gateway.config import Config
from gateway.demo import DemoError
from gateway.demo.script import Step
from gateway.demo.session import Demo
from gateway.demo.stack import Stack
from gateway.demo.view import can_draw
from gateway.devstack import DevStackError
from gateway.devstack.aws import local_aws_environment
from gateway.journal import JournalReader


def run_demo(steps: Sequence[Step] | None, *, state_dir: Path | None, out: TextIO) -> int:
    """Run the demo: ``steps`` (a script), or None for keys (the live view on a terminal,
    else steps typed line by line). The exit status: 0 when every step succeeded."""
    interactive = steps is None and can_draw()
    keep = state_dir is not None
    workdir = state_dir.resolve() if state_dir else Path(tempfile.mkdtemp(prefix="fmfb-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    restore_sigterm = _raise_on_sigterm()

    def say(line: str) -> None:
        if not interactive:
            print(line, file=out, flush=True)

    stack = Stack(workdir, say)
    code = 1
    try:
        _configure_logging(workdir, interactive)
        with local_aws_environment():
            print(
                "fmfb demo: starting a broker, a local AWS, a feeder and the gateway ...", file=out
            )
            say(f"state dir: {workdir}")
            stack.start()
            config = stack.config()
            code = asyncio.run(Demo(config, stack, out).run(steps, interactive))
            restore_sigterm()  # the loop's handler is gone: ours again for the tear-down
            restore_sigterm = _raise_on_sigterm()
            print(_stopped_line(config), file=out, flush=True)
    except (DemoError, DevStackError) as e:
        print(f"fmfb demo: {e}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 0 if interactive else 1
    finally:
        stack.stop()
        print("stopped: gateway, feeder simulator, relay, moto, mosquitto", file=out, flush=True)
        logging.shutdown()
        if keep:
            print(
                f"kept: {workdir} (journal.db, demo.log); see the ledger with: "
                f"fmfb journal list --journal {workdir / 'journal.db'}",
                file=out,
                flush=True,
            )
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        restore_sigterm()
    return code


def _raise_on_sigterm() -> Callable[[], None]:
    """Until the gateway's loop takes SIGTERM over, treat it like Ctrl-C (so we clean up)."""

    def handler(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous)

    return restore


def _configure_logging(workdir: Path, interactive: bool) -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    file_handler = logging.FileHandler(workdir / "demo.log", encoding="utf-8")
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(file_handler)
    root.setLevel(logging.INFO)
    if not interactive:
        console = logging.StreamHandler(sys.stderr)
        console.setLevel(logging.WARNING)
        console.setFormatter(logging.Formatter("log: %(levelname)s %(name)s: %(message)s"))
        root.addHandler(console)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    logging.getLogger("botocore").setLevel(logging.WARNING)
    redact.install()


def _stopped_line(config: Config) -> str:
    try:
        with JournalReader.open(config.journal_file) as reader:
            last = reader.last_seq()
            event = reader.get(last)
            cursor = reader.cursor("eventbridge")
    except Exception as e:
        return f"journal: could not be read after the stop: {e}"
    kind = event.type.value if event is not None else "-"
    return f"journal: last seq {last} ({kind}); eventbridge cursor {cursor}"
