"""``/etc/fmfb/config.toml`` for a Raspberry Pi install, from the installer's answers.

``scripts/install-pi`` runs ``python -m gateway.install_config``. What it writes is parsed
with the gateway's own config model before it is written, so an install never leaves a
config that ``fmfb run`` would refuse.

With the locked-down broker (gateway/broker_plan.py) the client id is the user name, so each
of the gateway's two connections (the feeder link ``fmfb-<gateway_id>-feeder`` and the buttons
link ``fmfb-<gateway_id>-buttons``) has a user of its own. The config names the folder of
their credentials files (``broker.credentials_dir``), never a password: each link reads the
file named for its client id when it connects.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from gateway.broker_plan import MqttButton, gateway_buttons_user, gateway_feeder_user
from gateway.config import parse_config
from gateway.errors import ConfigError, GatewayError

__all__ = ["GpioButton", "InstallAnswers", "main", "render_config"]

STATE_DIR: Final = "/var/lib/fmfb"
CREDENTIALS_DIR: Final = "/etc/fmfb/mqtt"


def _s(value: str) -> str:
    """A TOML basic string. JSON's escapes are a subset of TOML's (it never writes ``\\/``)."""
    return json.dumps(value, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class GpioButton:
    name: str
    pin: str | int

    @classmethod
    def parse(cls, text: str) -> GpioButton:
        """``NAME=PIN``: a BCM number (``17``) or a gpiozero pin name (``GPIO17``)."""
        name, sep, pin = text.partition("=")
        if not sep or not name or not pin:
            raise ConfigError(f"{text!r}: a GPIO button is NAME=PIN")
        return cls(name=name, pin=int(pin) if pin.isdigit() else pin)


@dataclass(frozen=True, slots=True)
class InstallAnswers:
    gateway_id: str
    credentials_dir: str = CREDENTIALS_DIR
    broker_port: int = 1883
    gpio_buttons: tuple[GpioButton, ...] = ()
    mqtt_buttons: tuple[MqttButton, ...] = ()
    aws_region: str | None = None
    home_assistant: bool = False


def render_config(answers: InstallAnswers) -> str:
    """The config file's text; raises ConfigError if the gateway would refuse it."""
    gid = answers.gateway_id
    lines = [
        "# feedmyfurbabies gateway configuration, written by scripts/install-pi.",
        "# Every key is documented in /opt/fmfb/README.md and systemd/config.example.toml;",
        "# after editing: fmfb config check, then sudo systemctl restart fmfb.",
        "",
        f"gateway_id = {_s(gid)}",
        f"state_dir = {_s(STATE_DIR)}",
        "",
        "[broker]  # the local Mosquitto, locked down by the installer",
        'host = "127.0.0.1"',
        f"port = {answers.broker_port}",
        "# Each of the gateway's connections is its own user (= its client id on this",
        f"# broker): {gateway_feeder_user(gid)} and {gateway_buttons_user(gid)}. Each reads its",
        "# password from the file of that name in this folder (readable by fmfb only).",
        f"credentials_dir = {_s(answers.credentials_dir)}",
        "",
        "[buttons]",
        'pin_factory = "auto"',
    ]
    if not answers.mqtt_buttons:
        lines.append("mqtt = []")
    for button in answers.gpio_buttons:
        pin = button.pin if isinstance(button.pin, int) else _s(button.pin)
        lines += ["", "[[buttons.gpio]]", f"name = {_s(button.name)}", f"pin = {pin}"]
    for mqtt_button in answers.mqtt_buttons:
        lines += [
            "",
            "[[buttons.mqtt]]",
            f"name = {_s(mqtt_button.name)}",
            f"topic = {_s(mqtt_button.topic)}",
        ]
    if answers.aws_region is not None:
        lines += [
            "",
            "# The cloud sinks: add [sinks.eventbridge] / [sinks.iot_core] as the README says",
            "# (or render them: terraform -chdir=infra output -json | fmfb config from-terraform).",
            "[cloud.aws]",
            f"region = {_s(answers.aws_region)}",
        ]
    if answers.home_assistant:
        lines += [
            "",
            "[home_assistant]  # discovery, state and commands; its broker user was made too",
            "enabled = true",
        ]
    text = "\n".join(lines) + "\n"
    parse_config(tomllib.loads(text), source="the generated config")
    return text


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m gateway.install_config",
        description="Print /etc/fmfb/config.toml for an install (scripts/install-pi runs this).",
    )
    p.add_argument("--gateway-id", required=True)
    p.add_argument(
        "--credentials-dir",
        default=CREDENTIALS_DIR,
        help="the folder of the gateway links' credentials files, as the gateway will see it",
    )
    p.add_argument("--broker-port", type=int, default=1883)
    p.add_argument("--gpio-button", action="append", default=[], metavar="NAME=PIN")
    p.add_argument("--mqtt-button", action="append", default=[], metavar="NAME=TOPIC")
    p.add_argument("--aws-region")
    p.add_argument("--home-assistant", action="store_true", help="switch Home Assistant on")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        answers = InstallAnswers(
            gateway_id=args.gateway_id,
            credentials_dir=args.credentials_dir,
            broker_port=args.broker_port,
            gpio_buttons=tuple(GpioButton.parse(b) for b in args.gpio_button),
            mqtt_buttons=tuple(MqttButton.parse(b) for b in args.mqtt_button),
            aws_region=args.aws_region,
            home_assistant=args.home_assistant,
        )
        sys.stdout.write(render_config(answers))
    except (GatewayError, OSError) as e:
        print(f"install_config: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
