"""``fmfb config from-terraform``: the gateway's cloud config rendered from infra/'s outputs.

    terraform -chdir=infra output -json | fmfb config from-terraform --thing kitchen-pi \\
        --cert-file /etc/fmfb/iot/cert.pem --key-file /etc/fmfb/iot/key.pem --write-cert \\
        --out /etc/fmfb/config.toml

The rendering is pure (:func:`render`: outputs -> config sections), so nothing is copied by
hand and nothing here talks to AWS. Where each section lands in the config file is decided in
one place, :data:`SECTION_PATHS`.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import click

from gateway.config import parse_config
from gateway.errors import ConfigError
from gateway.toml_write import toml_text

# Where each rendered section goes in the gateway's config file, as a path of tables.
SECTION_PATHS: Final[Mapping[str, tuple[str, ...]]] = {
    "aws": ("cloud", "aws"),
    "credentials_provider": ("cloud", "credentials_provider"),
    "eventbridge": ("sinks", "eventbridge"),
    "iot_core": ("sinks", "iot_core"),
}


@dataclass(frozen=True)
class GatewayFiles:
    """Where the gateway keeps its certificate, its key (made on the Pi) and the CA."""

    cert_file: Path
    key_file: Path
    ca_file: Path | None = None  # None: the system trust store


def outputs_from_json(text: str) -> dict[str, Any]:
    """``terraform output -json`` (name -> {"value": ..., ...}) as name -> value."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"terraform outputs: not JSON ({e})") from e
    if not isinstance(data, dict):
        raise ConfigError("terraform outputs: expected a JSON object of outputs")
    values: dict[str, Any] = {}
    for name, output in data.items():
        if not isinstance(output, dict) or "value" not in output:
            raise ConfigError(f"terraform outputs: {name!r} has no value (not `output -json`?)")
        values[name] = output["value"]
    return values


def _require(outputs: Mapping[str, Any], name: str) -> Any:
    if name not in outputs or outputs[name] in (None, ""):
        raise ConfigError(
            f"terraform outputs: {name!r} is missing (apply infra/ first, then pipe "
            "`terraform -chdir=infra output -json`)"
        )
    return outputs[name]


def choose_thing(outputs: Mapping[str, Any], thing: str | None) -> str | None:
    """The gateway this config is for: ``thing``, or the only one; None when there is none."""
    gateways = outputs.get("gateways") or {}
    if not isinstance(gateways, dict):
        raise ConfigError("terraform outputs: 'gateways' is not a map of thing names")
    if thing is not None:
        if thing not in gateways:
            known = ", ".join(sorted(gateways)) or "none"
            raise ConfigError(f"no gateway {thing!r} in the outputs (known: {known})")
        return thing
    if len(gateways) > 1:
        raise ConfigError(f"several gateways ({', '.join(sorted(gateways))}): choose one (--thing)")
    return next(iter(gateways), None)


def render(
    outputs: Mapping[str, Any],
    *,
    thing: str | None,
    files: GatewayFiles | None,
    eventbridge_endpoint_url: str | None = None,
) -> dict[str, dict[str, Any]]:
    """The cloud sections (by the names of :data:`SECTION_PATHS`) for one gateway.

    With no gateway (``thing`` None) only ``aws`` and ``eventbridge`` are rendered: the gateway
    then needs AWS credentials from boto3's standard chain.
    """
    sections: dict[str, dict[str, Any]] = {
        "aws": {"region": str(_require(outputs, "region"))},
        "eventbridge": {
            "bus": str(_require(outputs, "bus_name")),
            "source": str(_require(outputs, "event_source")),
        },
    }
    if eventbridge_endpoint_url is not None:
        sections["eventbridge"]["endpoint_url"] = eventbridge_endpoint_url
    if thing is None:
        return sections
    if files is None:
        raise ConfigError(f"gateway {thing!r}: its certificate and key files are needed")
    gateway = _require(outputs, "gateways")[thing]
    tls: dict[str, Any] = {"cert_file": str(files.cert_file), "key_file": str(files.key_file)}
    if files.ca_file is not None:
        tls["ca_file"] = str(files.ca_file)
    sections["credentials_provider"] = {
        "endpoint": str(_require(outputs, "credentials_endpoint")),
        "role_alias": str(_require(outputs, "role_alias")),
        "thing_name": thing,
        **tls,
    }
    sections["iot_core"] = {
        "endpoint": str(_require(outputs, "iot_data_endpoint")),
        **tls,
        # The IoT policy lets a connection in only as its own thing name, and publish only to
        # its own events topic: both are spelt out, whatever the gateway_id is.
        "client_id": thing,
        "topic": str(gateway["events_topic"]),
        "command_topic": str(_require(outputs, "command_topic")),
    }
    return sections


def place(sections: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The sections nested where the config file has them (:data:`SECTION_PATHS`)."""
    config: dict[str, Any] = {}
    for name, values in sections.items():
        *parents, leaf = SECTION_PATHS[name]
        table = config
        for parent in parents:
            table = table.setdefault(parent, {})
        table[leaf] = dict(values)
    return config


def merge(existing: Mapping[str, Any], placed: Mapping[str, Any]) -> dict[str, Any]:
    """``existing`` with the rendered keys written over it; every other key is kept (a
    person's ``publish_rate_per_s`` survives a re-render, a changed endpoint does not)."""
    merged: dict[str, Any] = dict(existing)
    for key, value in placed.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _write_atomically(path: Path, text: str, mode: int) -> None:
    """A half-written config must never be what the daemon reads: write aside, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        Path(tmp).chmod(mode)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_existing(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the existing config: {e}") from e


@click.command("from-terraform")
@click.option("--thing", help="The gateway's thing name [default: the only one in the outputs].")
@click.option(
    "--cert-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where the gateway's certificate is (or goes, with --write-cert).",
)
@click.option(
    "--key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The private key the CSR was made with (it never leaves the Pi).",
)
@click.option(
    "--ca-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="CA for IoT Core's and the credentials provider's certificates [default: system store].",
)
@click.option(
    "--write-cert", is_flag=True, help="Write the certificate from the outputs to --cert-file."
)
@click.option(
    "--eventbridge-endpoint-url", help="A local emulator instead of AWS (tests, moto's server)."
)
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write into this config file: its other keys are kept (its comments are not). "
    "Without it the sections are printed.",
)
def from_terraform(  # noqa: PLR0917 - one parameter per option
    thing: str | None,
    cert_file: Path | None,
    key_file: Path | None,
    ca_file: Path | None,
    write_cert: bool,
    eventbridge_endpoint_url: str | None,
    out_path: Path | None,
) -> None:
    """Render the gateway's cloud config from `terraform output -json` on standard input.

    \b
    terraform -chdir=infra output -json | fmfb config from-terraform \\
        --cert-file /etc/fmfb/iot/cert.pem --key-file /etc/fmfb/iot/key.pem --write-cert \\
        --out /etc/fmfb/config.toml
    """
    try:
        outputs = outputs_from_json(sys.stdin.read())
        chosen = choose_thing(outputs, thing)
        files = _files(chosen, cert_file, key_file, ca_file)
        sections = render(
            outputs, thing=chosen, files=files, eventbridge_endpoint_url=eventbridge_endpoint_url
        )
        placed = place(sections)
        data = placed if out_path is None else merge(_read_existing(out_path), placed)
        parse_config(data, source="the rendered config")  # never write what would not load
        if write_cert and files is not None and chosen is not None:
            pem = str(outputs["gateways"][chosen]["certificate_pem"])
            _write_atomically(files.cert_file, pem, 0o644)
        text = toml_text(data)
        if out_path is None:
            click.echo(text, nl=False)
        else:
            _write_atomically(out_path, text, 0o640)
            click.echo(f"wrote {out_path} (gateway {chosen or 'none'})", err=True)
    except (ConfigError, OSError) as e:
        raise click.ClickException(str(e)) from e


def _files(
    thing: str | None, cert_file: Path | None, key_file: Path | None, ca_file: Path | None
) -> GatewayFiles | None:
    if thing is None:
        return None
    if cert_file is None or key_file is None:
        raise ConfigError(f"gateway {thing!r}: --cert-file and --key-file are needed")
    # Absolute: the daemon may run from another directory than this command.
    return GatewayFiles(
        cert_file.absolute(), key_file.absolute(), None if ca_file is None else ca_file.absolute()
    )
