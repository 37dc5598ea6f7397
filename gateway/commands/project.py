"""``fmfb project NAME --out FILE``: build or bring up to date a projection of the journal.

One subcommand per projection in :data:`PROJECTIONS` (a new projection is one module and one
line here). The journal is read read-only: the daemon may be running.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from gateway.commands.common import fail, open_reader, when
from gateway.commands.options import config_option, journal_option
from gateway.errors import GatewayError
from gateway.projections import Projection, Runner
from gateway.projections.feeding_history import PROJECTION as FEEDING_HISTORY

PROJECTIONS: dict[str, Projection] = {FEEDING_HISTORY.name: FEEDING_HISTORY}


@click.group()
def project() -> None:
    """Build a datastore from the journal: a pure fold of its events, as of any point.

    \b
    Each run continues from where the file's last run stopped (its position is stored in the
    same transaction as its rows: every event is applied exactly once, even if a build is
    killed). --rebuild starts the file over; --until-seq/--until build it "as of" a point.
    """


def _command(name: str, projection: Projection) -> click.Command:
    @click.command(name)
    @click.option(
        "--out",
        required=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help="The SQLite file to build or update.",
    )
    @click.option("--until-seq", type=click.IntRange(min=0), help="Fold events up to this seq.")
    @click.option(
        "--until",
        callback=when,
        help="Fold events recorded before this time (ISO 8601 or a duration ago); seq is the "
        "order: the fold stops at the first event recorded at or after it.",
    )
    @click.option("--rebuild", is_flag=True, help="Start the file over from the first event.")
    @click.option("--quiet", is_flag=True, help="No progress on stderr.")
    @journal_option
    @config_option
    def build(
        *,
        out: Path,
        until_seq: int | None,
        until: int | None,
        rebuild: bool,
        quiet: bool,
        journal_path: Path | None,
        config_path: Path | None,
    ) -> None:
        if until_seq is not None and until is not None:
            fail("give --until-seq or --until, not both")
        if rebuild:
            Runner.remove(out)

        def progress(seq: int, target: int) -> None:
            if not quiet:
                click.echo(f"{name}: seq {seq}/{target}", err=True)

        with open_reader(journal_path, config_path) as reader:
            try:
                with Runner(projection, out) as runner:
                    result = runner.run(
                        reader, until_seq=until_seq, until_ms=until, progress=progress
                    )
            except GatewayError as e:
                fail(str(e))
        rate = result.applied / result.seconds if result.seconds > 0 else 0.0
        click.echo(
            f"{name}: {out} at seq {result.seq} (from {result.start_seq}; {result.applied} "
            f"events applied in {result.seconds:.1f}s, {rate:,.0f}/s)"
        )
        sys.stdout.flush()

    build.help = f"Build or update the {name} projection in FILE (see the README for its tables)."
    return build


for _name, _projection in PROJECTIONS.items():
    project.add_command(_command(_name, _projection))
