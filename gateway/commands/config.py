"""``fmfb config check | show``: the configuration, validated and with its defaults filled in."""

from __future__ import annotations

from pathlib import Path

import click

from gateway.commands.common import load_config
from gateway.commands.options import config_option


@click.command("check")
@config_option
def config_check(config_path: Path | None) -> None:
    """Validate the config file; print the effective journal, broker and sinks, and any key
    of an older file that has moved."""
    config = load_config(config_path)
    for notice in config.deprecated:
        click.echo(f"warning: {notice}", err=True)
    sinks = ", ".join(config.sinks.configured()) or "none"
    click.echo(
        f"ok: journal {config.journal_file}, broker {config.broker.host}:{config.broker.port}, "
        f"sinks {sinks}"
    )


@click.command("show")
@config_option
def config_show(config_path: Path | None) -> None:
    """Print the effective configuration (defaults filled in) as JSON."""
    click.echo(load_config(config_path).model_dump_json(indent=2))
