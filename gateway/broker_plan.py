"""The local Mosquitto, locked down: one user per MQTT client, an ACL per role, client ids bound
to users: who may do what, as data and text. :mod:`gateway.broker_setup` writes it (the
installer runs ``python -m gateway.broker_setup``); the tests start a real Mosquitto with it.

Why it is locked down: on an open broker anyone on the home Wi-Fi could run the motors by
publishing to ``cat-feeder/action`` (the gateway's policy never sees it), forge the feeder's
acknowledgements and food level into the journal, and take over the gateway's session by
connecting with its client id.

The design:

- **Authentication**: ``allow_anonymous false`` and a ``password_file`` made with
  ``mosquitto_passwd`` (salted PBKDF2-SHA512 hashes). Every client has its own user and a
  random password; the plaintext lives only in a credentials file per user readable by its
  owner alone (the gateway's by the service user, the rest by root).
- **Authorisation**: an ``acl_file`` that names, per user, exactly what it may publish
  (``topic write``) and subscribe to (``topic read``). Only the gateway's feeder link may write
  ``cat-feeder/action``; only the feeder may write ``dispensed``, ``states`` and
  ``availability`` (its retained last will included); each button may write its own topic and
  nothing else. A denied publish is dropped silently by the broker (the publisher still gets
  its PUBACK), so a forged message simply never reaches anyone.
- **Client ids bound to users**: ``use_username_as_clientid true``. The broker replaces
  whatever client id a client sends with its user name, so nobody can take over another
  client's session (and the queued messages and last will that go with it) without that
  client's password. Chosen over the dynamic-security plugin, which can pin a client id per
  user too, because it is two plain text files made by the stock ``mosquitto_passwd`` that an
  admin can read and diff, needs no plugin path (which differs between armhf, arm64 and x86),
  no broker-writable JSON state and no ``$CONTROL`` admin user that could change the rules at
  run time. The price: one connection per user. The gateway opens two (the feeder sink's
  persistent session and the MQTT buttons' clean one), so it has two users, named as the
  client ids it already uses: ``fmfb-<gateway_id>-feeder`` and ``fmfb-<gateway_id>-buttons``.
- **Listeners**: plain MQTT on 1883 (every address by default: the feeder is on Wi-Fi, so the
  broker must be reachable from the LAN; ``listen_address`` narrows it) and, optionally, TLS
  on 8883 with the admin's certificate, so passwords need not cross the Wi-Fi in clear.

This module does no I/O; :func:`gateway.broker_setup.write_broker_files` is the shell around it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from gateway.errors import BrokerSetupError

__all__ = [
    "DEBIAN_MAIN_CONF",
    "BrokerClient",
    "BrokerFiles",
    "BrokerPlan",
    "BrokerTopics",
    "MqttButton",
    "Role",
    "TlsListener",
    "acl_text",
    "firmware_config",
    "gateway_buttons_user",
    "gateway_feeder_user",
    "main_conf_problem",
    "mosquitto_conf_text",
]

DEFAULT_FEEDER_USER: Final = "cat-feeder"
DEFAULT_PORT: Final = 1883
DEFAULT_TLS_PORT: Final = 8883

# A user name becomes a client id, a file name and a word in the ACL file: keep it plain.
_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# Topics are words in the ACL and config files: no whitespace, no NUL, no MQTT wildcards
# (a button owns one topic), not a $SYS-style broker topic.
_TOPIC = re.compile(r"^[^\s#+$\x00][^\s#+\x00]*$")
# Lines of the Debian package's mosquitto.conf that would fight ours (a second listener on
# 1883, anonymous access, another password or ACL file).
_CONFLICTING = re.compile(
    r"^\s*(listener|port|bind_address|allow_anonymous|password_file|acl_file|"
    r"use_username_as_clientid|per_listener_settings|auth_plugin|plugin)\b",
    re.MULTILINE,
)
DEBIAN_MAIN_CONF: Final = """\
# Place your local configuration in /etc/mosquitto/conf.d/
#
# A full description of the configuration file is at
# /usr/share/doc/mosquitto/examples/mosquitto.conf.example

pid_file /run/mosquitto/mosquitto.pid

persistence true
persistence_location /var/lib/mosquitto/

log_dest file /var/log/mosquitto/mosquitto.log

include_dir /etc/mosquitto/conf.d
"""


class Role:
    """What a broker user is for (the words used in the ACL file's comments and the summary)."""

    GATEWAY_FEEDER = "gateway-feeder-link"
    GATEWAY_BUTTONS = "gateway-buttons-link"
    FEEDER = "feeder"
    BUTTON = "button"
    ZIGBEE2MQTT = "zigbee2mqtt"
    MONITOR = "monitor"
    GATEWAY_HOME = "gateway-home-assistant-link"
    GATEWAY_HOME_COMMANDS = "gateway-home-assistant-commands-link"
    HOME_ASSISTANT = "home-assistant"


def gateway_feeder_user(gateway_id: str) -> str:
    """The gateway's feeder-sink connection: its user name, and so its client id."""
    return f"fmfb-{gateway_id}-feeder"


def gateway_buttons_user(gateway_id: str) -> str:
    """The gateway's MQTT-buttons connection: its user name, and so its client id."""
    return f"fmfb-{gateway_id}-buttons"


def gateway_home_users(gateway_id: str) -> tuple[str, str]:
    """The gateway's two Home Assistant connections (what it publishes; the commands it
    reads): their user names, and so their client ids (gateway/daemon.py names them)."""
    return f"fmfb-{gateway_id}-home-assistant", f"fmfb-{gateway_id}-ha-commands"


@dataclass(frozen=True, slots=True)
class HomeAssistantAccess:
    """Home Assistant on this broker: its user, its discovery prefix and the gateway's topics
    for it (``[home_assistant]``'s defaults: ``homeassistant`` and ``fmfb/<gateway id>``)."""

    user: str = "homeassistant"
    discovery_prefix: str = "homeassistant"
    base_topic: str = "fmfb/{gateway_id}"


def check_username(name: str) -> str:
    if not _USERNAME.match(name):
        raise BrokerSetupError(
            f"{name!r} cannot be a broker user name: 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def check_topic(topic: str) -> str:
    if not _TOPIC.match(topic) or "//" in topic:
        raise BrokerSetupError(
            f"{topic!r} cannot be a locked-down topic: no spaces, no wildcards (+ #), "
            "not starting with $"
        )
    return topic


@dataclass(frozen=True, slots=True)
class BrokerTopics:
    action: str = "cat-feeder/action"
    dispensed: str = "cat-feeder/dispensed"
    states: str = "cat-feeder/states"
    availability: str = "cat-feeder/availability"

    def feeder_reports(self) -> tuple[str, ...]:
        return (self.dispensed, self.states, self.availability)


@dataclass(frozen=True, slots=True)
class MqttButton:
    """A button that publishes its clicks to ``topic`` (the gateway's ``[[buttons.mqtt]]``)."""

    name: str
    topic: str

    @classmethod
    def parse(cls, text: str) -> MqttButton:
        """``NAME=TOPIC``, as the installer's ``--mqtt-button`` takes it."""
        name, sep, topic = text.partition("=")
        if not sep or not name or not topic:
            raise BrokerSetupError(f"{text!r}: an MQTT button is NAME=TOPIC")
        return cls(name=name, topic=topic)


@dataclass(frozen=True, slots=True)
class TlsListener:
    """A TLS listener for the LAN: the broker's certificate, key and the CA that signed it."""

    cafile: Path
    certfile: Path
    keyfile: Path
    port: int = DEFAULT_TLS_PORT
    address: str | None = None  # None: every address (it is for the LAN)


@dataclass(frozen=True, slots=True)
class BrokerClient:
    """One broker user: what it may publish (``write``) and subscribe to (``read``)."""

    username: str
    role: str
    write: tuple[str, ...]
    read: tuple[str, ...]
    note: str


@dataclass(frozen=True, slots=True)
class BrokerPlan:
    """Who talks to the local broker, and on which listeners; everything else follows."""

    gateway_id: str
    feeder_user: str = DEFAULT_FEEDER_USER
    buttons: tuple[MqttButton, ...] = ()
    # zigbee2mqtt's base topic: one user for the bridge, writing under it (its buttons' topics
    # are <base>/<friendly name>) and reading its own /set and /get requests there.
    zigbee2mqtt_base: str | None = None
    # A read-only user for an admin watching traffic (``mosquitto_sub -t '#'``); None: none.
    monitor_user: str | None = None
    # Home Assistant's user and the gateway's two links for it; None: no Home Assistant.
    home_assistant: HomeAssistantAccess | None = None
    topics: BrokerTopics = field(default_factory=BrokerTopics)
    listen_address: str | None = None  # None: every address (the feeder is on the Wi-Fi)
    port: int = DEFAULT_PORT
    tls: TlsListener | None = None

    def _z2m_serves(self, button: MqttButton) -> bool:
        base = self.zigbee2mqtt_base
        return base is not None and button.topic.startswith(f"{base}/")

    def clients(self) -> tuple[BrokerClient, ...]:
        """Every user of the broker, gateway first; raises on a bad or repeated name/topic."""
        topics = self.topics
        for topic in (topics.action, *topics.feeder_reports()):
            check_topic(topic)
        button_topics = [check_topic(b.topic) for b in self.buttons]
        # A button (or the bridge) granted a feeder topic could run the motors or forge
        # reports: the very thing the lock-down is for.
        reserved = {topics.action, *topics.feeder_reports()}
        for topic in button_topics:
            if topic in reserved:
                raise BrokerSetupError(f"{topic!r} is the feeder's topic, not a button's")
        base = self.zigbee2mqtt_base
        if base is not None and any(t.startswith(f"{check_topic(base)}/") for t in reserved):
            raise BrokerSetupError(f"zigbee2mqtt's base topic {base!r} covers a feeder topic")
        clients = [
            BrokerClient(
                gateway_feeder_user(self.gateway_id),
                Role.GATEWAY_FEEDER,
                write=(topics.action,),
                read=topics.feeder_reports(),
                note="the gateway's feeder sink: the only publisher of feed requests",
            ),
            BrokerClient(
                gateway_buttons_user(self.gateway_id),
                Role.GATEWAY_BUTTONS,
                write=(),
                read=tuple(dict.fromkeys(button_topics)),
                note="the gateway's MQTT buttons input: reads each button's topic",
            ),
            BrokerClient(
                self.feeder_user,
                Role.FEEDER,
                write=topics.feeder_reports(),
                read=(topics.action,),
                note="the ESP32-C3 feeder: the only publisher of acks, food level, availability",
            ),
        ]
        for button in self.buttons:
            if self._z2m_serves(button):
                continue  # zigbee2mqtt publishes it
            clients.append(
                BrokerClient(
                    f"button-{button.name}",
                    Role.BUTTON,
                    write=(button.topic,),
                    read=(),
                    note=f"MQTT button {button.name!r}: its own topic only",
                )
            )
        if base is not None:
            clients.append(
                BrokerClient(
                    "zigbee2mqtt",
                    Role.ZIGBEE2MQTT,
                    write=(f"{base}/#",),
                    read=(f"{base}/#",),
                    note=f"the zigbee2mqtt bridge: its base topic {base}/ only",
                )
            )
        if self.home_assistant is not None:
            clients += self._home_assistant_clients(self.home_assistant)
        if self.monitor_user is not None:
            clients.append(
                BrokerClient(
                    self.monitor_user,
                    Role.MONITOR,
                    write=(),
                    read=("#",),
                    note="read-only view of all traffic, for an admin",
                )
            )
        names = [check_username(c.username) for c in clients]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise BrokerSetupError(f"broker user names must be unique; repeated: {repeated}")
        return tuple(clients)

    def _home_assistant_clients(self, ha: HomeAssistantAccess) -> list[BrokerClient]:
        """Only the gateway writes discovery and state; only Home Assistant writes the
        gateway's command topics (a feed from Home Assistant goes through the gateway's
        policy, never straight to the feeder: it gets no write on the action topic)."""
        base = check_topic(ha.base_topic.replace("{gateway_id}", self.gateway_id))
        prefix = check_topic(ha.discovery_prefix)
        commands = f"{base}/cmd/#"
        publisher, reader = gateway_home_users(self.gateway_id)
        return [
            BrokerClient(
                publisher,
                Role.GATEWAY_HOME,
                write=(f"{prefix}/#", f"{base}/#"),
                read=(f"{prefix}/status",),
                note="the gateway's Home Assistant publisher: discovery, state, alerts",
            ),
            BrokerClient(
                reader,
                Role.GATEWAY_HOME_COMMANDS,
                write=(),
                read=(commands,),
                note="the gateway's Home Assistant commands input",
            ),
            BrokerClient(
                ha.user,
                Role.HOME_ASSISTANT,
                write=(commands, f"{prefix}/status"),
                read=(f"{prefix}/#", f"{base}/#", self.topics.availability),
                note="Home Assistant: reads discovery and state, asks the gateway to feed",
            ),
        ]


def acl_text(clients: Sequence[BrokerClient]) -> str:
    """Mosquitto's acl_file: per user, what it may write and read; anything else is denied."""
    lines = [
        "# The feedmyfurbabies broker's ACL, written by scripts/install-pi",
        "# (gateway/broker_setup.py); re-run the installer to change it.",
        "# With an acl_file, whatever is not granted here is denied: a denied publish is",
        "# dropped without telling the publisher, a denied subscription gets a failure code.",
        "# Client ids are the user names (use_username_as_clientid), so these rules also",
        "# decide whose session is whose.",
    ]
    for client in clients:
        lines += ["", f"# {client.role}: {client.note}", f"user {client.username}"]
        both = [t for t in client.write if t in client.read]
        lines += [f"topic readwrite {t}" for t in both]
        lines += [f"topic write {t}" for t in client.write if t not in both]
        lines += [f"topic read {t}" for t in client.read if t not in both]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class BrokerFiles:
    """Where the broker's files live on the running system (not under an install root)."""

    conf: Path = Path("/etc/mosquitto/conf.d/fmfb.conf")
    main_conf: Path = Path("/etc/mosquitto/mosquitto.conf")
    password_file: Path = Path("/etc/mosquitto/fmfb/passwd")
    acl_file: Path = Path("/etc/mosquitto/fmfb/acl")
    credentials_dir: Path = Path("/etc/fmfb/mqtt")

    def credentials(self, username: str) -> Path:
        return self.credentials_dir / username

    @property
    def firmware_config(self) -> Path:
        return self.credentials_dir / "feeder-config.json"


def mosquitto_conf_text(plan: BrokerPlan, files: BrokerFiles) -> str:
    """The conf.d snippet that locks the broker down (see the module docstring for why)."""
    listen = f"listener {plan.port}"
    if plan.listen_address is not None:
        listen += f" {plan.listen_address}"
    # use_username_as_clientid is a listener option in Mosquitto 2.0: before any `listener`
    # line it would open a default listener on 1883, so each listener block repeats it.
    bind_to_user = [
        "# The client id is the user name, whatever the client asks for: no one can take",
        "# over another client's session (its queued messages, its last will) without its",
        "# password. One connection per user, so the gateway has one user per connection.",
        "use_username_as_clientid true",
    ]
    lines = [
        "# The feedmyfurbabies broker, locked down; written by scripts/install-pi",
        "# (gateway/broker_setup.py). Re-run the installer to change it: edits are overwritten.",
        "",
        "# One set of rules for every listener.",
        "per_listener_settings false",
        "# Nobody without a user and password: an open broker lets anyone on the Wi-Fi run",
        "# the motors, forge the feeder's reports and take over the gateway's session.",
        "allow_anonymous false",
        f"password_file {files.password_file}",
        f"acl_file {files.acl_file}",
        "",
        "# Plain MQTT (the feeder and buttons on the LAN; the gateway on loopback).",
        listen,
        *bind_to_user,
    ]
    if plan.tls is not None:
        tls = plan.tls
        lines += [
            "",
            "# MQTT over TLS for the LAN: passwords never cross the Wi-Fi in clear.",
            f"listener {tls.port}" + ("" if tls.address is None else f" {tls.address}"),
            *bind_to_user,
            f"cafile {tls.cafile}",
            f"certfile {tls.certfile}",
            f"keyfile {tls.keyfile}",
            "tls_version tlsv1.2",
        ]
    return "\n".join(lines) + "\n"


def main_conf_problem(text: str) -> str | None:
    """Why the package's main mosquitto.conf would undo the lock-down, or None if it is fine.

    Ours goes in conf.d, so the main file must include that folder and must not open its own
    listener or decide authentication itself (a second ``listener 1883`` fails to bind; an
    ``allow_anonymous true`` there would fight ours)."""
    conflict = _CONFLICTING.search(text)
    if conflict:
        return f"it sets {conflict.group(1)} itself"
    if not re.search(r"^\s*include_dir\s+/etc/mosquitto/conf\.d/?\s*$", text, re.MULTILINE):
        return "it does not include /etc/mosquitto/conf.d"
    return None


def firmware_config(
    plan: BrokerPlan,
    password: str,
    broker_host: str,
    *,
    use_tls: bool = False,
) -> dict[str, Any]:
    """The feeder's ``config.json`` (firmware/config.example.json's shape) with its broker
    credentials filled in; Wi-Fi, pins and limits keep the example's values to edit."""
    tls = use_tls and plan.tls is not None
    port = plan.tls.port if tls and plan.tls is not None else plan.port
    topics = plan.topics
    return {
        "wifi": {
            "ssid": "my-home-wifi",
            "password": "change-me",
            "tx_power_dbm": None,
            "retry_s": 30,
        },
        "mqtt": {
            "host": broker_host,
            "port": port,
            "user": plan.feeder_user,
            "password": password,
            # The broker uses the user name as the client id anyway; saying so here keeps the
            # persistent session's name obvious.
            "client_id": plan.feeder_user,
            "keepalive_s": 60,
            "timeout_s": 10,
            "tls": tls,
            "ca_file": "ca.pem" if tls else None,
        },
        "topics": {
            "action": topics.action,
            "dispensed": topics.dispensed,
            "states": topics.states,
            "availability": topics.availability,
        },
        # GPIO 4 is the level sensor's (GPIO 2 is a strapping pin): left's second input is 5.
        "motors": {"left": [3, 5], "right": [6, 7]},
        "motor_duty_pct": 100,
        "feeding": {
            "default_portion_ms": 10000,
            "max_run_ms": 20000,
            "cap_feeds": 6,
            "cap_period_ms": 3600000,
            "dedupe_size": 64,
            "hopper_ms": 0,
        },
        "food_sensor": None,
        "ntp_host": "pool.ntp.org",
        "ntp_interval_s": 3600,
        "states_interval_s": 300,
        "watchdog_ms": 30000,
    }
