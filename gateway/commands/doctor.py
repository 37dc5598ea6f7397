"""``fmfb doctor``: every check, a line each with its fix; ``--json``; exit 1 on a failure."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from gateway.commands.common import EXIT_REJECTED
from gateway.commands.options import config_option

_MARK = {"pass": "ok  ", "fail": "FAIL", "skip": "skip"}


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the findings as one JSON array.")
@click.option(
    "--service-user",
    default="fmfb",
    show_default=True,
    help="The user the gateway runs as (the unit's User=), for the GPIO check.",
)
@config_option
def doctor(as_json: bool, service_user: str, config_path: Path | None) -> None:
    """Check this gateway and say how to fix what is wrong.

    \b
    The config; the broker with the gateway's credentials, anonymous refused, the ACL on
    cat-feeder/action; GPIO access; the clock; disk space and the journal's size; the
    journal's tail; each sink's backlog and last success; the cloud credentials; the feeder.
    Run it as root to let it read the broker users' credentials for the ACL check.
    Exit status: 0 nothing failed, 1 something failed.
    """
    from gateway.doctor import Environment, run  # noqa: PLC0415 - pydantic, paho: only here
    from gateway.doctor_findings import Outcome  # noqa: PLC0415

    findings = run(config_path, Environment(service_user=service_user))
    failed = any(f.outcome is Outcome.FAIL for f in findings)
    if as_json:
        click.echo(json.dumps([f.as_json() for f in findings], indent=2))
    else:
        width = max(len(f.check) for f in findings)
        for f in findings:
            click.echo(f"{_MARK[f.outcome.value]}  {f.check:<{width}}  {f.detail}")
            if f.fix:
                click.echo(f"      {'':<{width}}  fix: {f.fix}")
        click.echo("some checks failed" if failed else "no problem found")
    if failed:
        sys.exit(EXIT_REJECTED)
