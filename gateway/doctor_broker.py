"""``fmfb doctor``'s broker checks: reachable with the gateway's credentials, anonymous refused,
and the ACL really keeping others off ``cat-feeder/action``.

Connecting as one of the gateway's own users would kick the running gateway's session (the
locked-down broker binds client id = user name), so when the gateway runs and its link is up,
that link's state is the proof; doctor connects as a gateway user only when the gateway is not
running or its link is down.

A denied publish is silent (Mosquitto still acknowledges it), so the ACL is proved as the
broker tests prove it: a user who may read ``cat-feeder/action`` (a monitor user) listens; a
user who must not publish there (a button, else the gateway's buttons link) publishes a marked
message there and then one to a topic it may use; the broker forwards one client's messages in
order, so once the second arrives the first would have, and it must not have.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway.config import BrokerConfig, Config
from gateway.doctor_findings import Finding, Outcome, bad, ok, skip
from gateway.status import GatewayStatus

TIMEOUT_S: Final = 5.0
ROLE_PREFIXES: Final = ("button-",)
KNOWN_USERS: Final = ("cat-feeder", "zigbee2mqtt")


class ProbeError(Exception):
    """A probe client could not connect; the text is the broker's reason."""


@dataclass
class Probe:
    """A paho client for one check: connected on entry, gone on exit."""

    broker: BrokerConfig
    username: str | None
    password: str | None
    client_id: str

    def __post_init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._lock = threading.Lock()
        self.reason: str | None = None
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5
        )
        if self.username is not None:
            client.username_pw_set(self.username, self.password)
        tls = self.broker.tls
        if tls is not None:
            client.tls_set(
                ca_certs=str(tls.ca_file),
                certfile=str(tls.cert_file) if tls.cert_file else None,
                keyfile=str(tls.key_file) if tls.key_file else None,
            )
        client.on_connect = self._on_connect
        client.on_subscribe = lambda *_a: self._subscribed.set()
        client.on_message = self._on_message
        self.client = client

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self.reason = str(reason)
        self._connected.set()

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload)))

    def __enter__(self) -> Probe:
        where = f"{self.broker.host}:{self.broker.port}"
        try:
            self.client.connect(self.broker.host, self.broker.port, keepalive=10)
        except OSError as e:
            raise ProbeError(f"cannot reach {where}: {e.strerror or e}") from e
        self.client.loop_start()
        if not self._connected.wait(TIMEOUT_S):
            self.close()
            raise ProbeError(f"{where} did not answer the CONNECT within {TIMEOUT_S:g} s")
        if self.reason is not None:
            self.close()
            raise ProbeError(
                f"{where} refused {self.username or 'an anonymous client'}: {self.reason}"
            )
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def subscribe(self, *topics: str) -> None:
        self.client.subscribe([(t, 1) for t in topics])
        if not self._subscribed.wait(TIMEOUT_S):
            raise ProbeError("no SUBACK")

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(TIMEOUT_S)

    def received(self) -> list[tuple[str, bytes]]:
        with self._lock:
            return list(self.messages)


def _probe_id() -> str:
    return f"fmfb-doctor-{uuid.uuid4().hex[:8]}"


def _link_ids(config: Config) -> list[tuple[str, str]]:
    """(link, client id) of each of the gateway's connections, as the daemon names them."""
    links = [("feeder", config.broker.client_id or f"fmfb-{config.gateway_id}-feeder")]
    if config.buttons.mqtt:
        links.append(("mqtt-buttons", f"fmfb-{config.gateway_id}-buttons"))
    return links


def broker_checks(config: Config, status: GatewayStatus | None) -> list[Finding]:
    findings = list(_reachable(config, status))
    if any(f.outcome is Outcome.FAIL for f in findings):
        return findings  # nothing else can be learnt from a broker we cannot reach
    findings.append(_anonymous(config.broker))
    findings.append(_acl(config, running=status is not None))
    return findings


def _reachable(config: Config, status: GatewayStatus | None) -> Iterator[Finding]:
    broker = config.broker
    where = f"{broker.host}:{broker.port}"
    for link, client_id in _link_ids(config):
        check = f"broker {link}"
        running = None
        if status is not None:
            running = status.sink("feeder") if link == "feeder" else status.input(link)
        if running is not None and running.connected:
            yield ok(check, f"the running gateway's {client_id} is connected to {where}")
            continue
        try:
            user, password = broker.credentials(client_id)
            with Probe(broker, user, password, client_id):
                pass
        except (ProbeError, Exception) as e:
            yield bad(check, str(e), _connect_fix(str(e), broker, client_id))
            continue
        yield ok(check, f"{client_id} connects to {where} with the configured credentials")


def _connect_fix(error: str, broker: BrokerConfig, client_id: str) -> str:
    lowered = error.lower()
    if "cannot reach" in lowered or "did not answer" in lowered:
        return (
            f"is Mosquitto running and listening on {broker.host}:{broker.port}? "
            "`systemctl status mosquitto`; check [broker] host and port"
        )
    if "credentials_dir" in lowered:
        return "sudo scripts/install-pi writes the gateway's credentials files"
    where = (
        f"{broker.credentials_dir / client_id}"
        if broker.credentials_dir is not None
        else "[broker] username/password"
    )
    return f"the password in {where} must match the broker's (sudo scripts/install-pi resets both)"


def _anonymous(broker: BrokerConfig) -> Finding:
    check = "broker anonymous"
    try:
        with Probe(broker, None, None, _probe_id()):
            pass
    except ProbeError as e:
        return ok(check, f"anonymous clients are refused ({e})")
    return bad(
        check,
        "the broker accepts anonymous clients: anyone on the Wi-Fi can run the motors by "
        "publishing to cat-feeder/action",
        "sudo scripts/install-pi locks the broker down (allow_anonymous false, users, ACLs)",
    )


def _users(broker: BrokerConfig, gateway_id: str) -> tuple[list[str], list[str]]:
    """(watchers, intruders) among the users whose credentials this process can read: a
    watcher may read everything (a monitor user: not the gateway's, the feeder's, a button's
    or zigbee2mqtt's, whose sessions a connection in their name would kick); an intruder is a
    button, else the gateway's buttons link."""
    folder = broker.credentials_dir
    if folder is None or not folder.is_dir():
        return [], []
    readable = []
    for path in sorted(folder.iterdir()):
        if path.suffix or not path.is_file():
            continue
        try:
            path.read_text(encoding="utf-8")
        except OSError:
            continue
        readable.append(path.name)
    mine = f"fmfb-{gateway_id}-"
    buttons = [u for u in readable if u.startswith(ROLE_PREFIXES)]
    watchers = [
        u for u in readable if not u.startswith((mine, *ROLE_PREFIXES)) and u not in KNOWN_USERS
    ]
    intruders = buttons or [u for u in readable if u == f"{mine}buttons"]
    return watchers, intruders


def _acl(config: Config, *, running: bool) -> Finding:
    check = "broker acl"
    broker = config.broker
    action = config.topics.action
    # If the ACL is broken this reaches the feeder: no bowls and already expired, so a feeder
    # refuses it whatever firmware it runs.
    marker = json.dumps({"fmfb-doctor": uuid.uuid4().hex, "expires_at_ms": 0}).encode()
    open_broker = _anonymous(broker).outcome is Outcome.FAIL
    if not open_broker:
        watchers, intruders = _users(broker, config.gateway_id)
        if running and intruders and not intruders[0].startswith(ROLE_PREFIXES):
            # Only the gateway's own buttons user is left to play the intruder, and connecting
            # as it would kick the running gateway's buttons link.
            intruders = []
        if not watchers or not intruders:
            return skip(
                check,
                "not proven: doctor needs a user that may read everything (scripts/install-pi "
                "--monitor-user) and a button's credentials, readable in "
                f"{broker.credentials_dir} (run as root)",
            )
        watcher: tuple[str | None, str | None] = broker.credentials(watchers[0])
        intruder: tuple[str | None, str | None] = broker.credentials(intruders[0])
        control_topic = _own_topic(config, intruders[0])
    else:
        watcher = intruder = (None, None)
        control_topic = None
    try:
        with Probe(broker, *watcher, _probe_id()) as listener:
            listener.subscribe(action, *([control_topic] if control_topic else []))
            with Probe(broker, *intruder, _probe_id()) as forger:
                forger.publish(action, marker)
                if control_topic is not None:
                    forger.publish(control_topic, marker)
                    got = _wait(listener, lambda m: (control_topic, marker) in m, TIMEOUT_S)
                else:
                    # Nothing the intruder may send to mark the end: a bounded wait instead.
                    got = _wait(listener, lambda m: (action, marker) in m, 1.0)
    except ProbeError as e:
        return skip(check, f"not proven: {e}")
    who = intruder[0] or "an anonymous client"
    if (action, marker) in got:
        return bad(
            check,
            f"{who} published to {action} and a listener received it: anyone with those "
            "credentials can run the motors",
            "sudo scripts/install-pi writes the ACL (only the gateway may publish there)",
        )
    if control_topic is not None and (control_topic, marker) not in got:
        return skip(check, f"not proven: {who}'s own message did not arrive either")
    return ok(check, f"{who} may not publish to {action} (a listener saw nothing)")


def _own_topic(config: Config, user: str) -> str | None:
    """The topic a button user may publish: its configured button's (name = user - prefix)."""
    name = user.removeprefix("button-")
    return next((b.topic for b in config.buttons.mqtt if b.name == name), None)


def _wait(
    listener: Probe, done: Callable[[list[tuple[str, bytes]]], bool], within_s: float
) -> list[tuple[str, bytes]]:
    """The listener's messages once ``done`` says so, or when ``within_s`` is up."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        got = listener.received()
        if done(got):
            return got
        time.sleep(0.02)  # paho's thread fills the list: polled, bounded by the deadline
    return listener.received()
