"""Options several commands share, defined once."""

from __future__ import annotations

from pathlib import Path

import click

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="FMFB_CONFIG",
    help="TOML config file [env FMFB_CONFIG; default /etc/fmfb/config.toml if it exists, "
    "else embedded defaults].",
)

journal_option = click.option(
    "--journal",
    "journal_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Journal file to read [default: the configured one].",
)
