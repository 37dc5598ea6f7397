"""The locked-down broker, for real: Mosquitto started with what gateway/broker_setup.py writes
(the design is in gateway/broker_plan.py), probed with the real ``mosquitto_pub`` /
``mosquitto_sub`` and the generated credentials.

A denied publish is silent (the publisher still gets its PUBACK and exits 0), so every denial
is proved the same way: an authorised subscriber is listening, the forged message is sent, then
a control message on the same topic from a client that may send it; once the control arrives
(a bounded wait), the forged one would have arrived before it, and it did not.

Run as root (CI), the broker drops to the user "mosquitto" as it does on the Pi, so its folder
and files get the owners and modes the installer gives them: this checks those too.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from inprocess import journaled
from mqtt_probe import until
from paho.mqtt.enums import CallbackAPIVersion
from waiting import wait_for

from gateway.broker_plan import (
    BrokerFiles,
    BrokerPlan,
    HomeAssistantAccess,
    MqttButton,
    TlsListener,
    gateway_buttons_user,
    gateway_feeder_user,
    gateway_home_users,
)
from gateway.broker_setup import write_broker_files
from gateway.config import parse_config
from gateway.devstack.daemon import running
from gateway.devstack.feeder_sim import FeederSim
from gateway.devstack.mosquitto import Mosquitto, free_port
from gateway.devstack.pki import make_pki
from gateway.events import EventType

TIMEOUT = 10.0
GATEWAY_ID = "gw"
GATEWAY = gateway_feeder_user(GATEWAY_ID)
GATEWAY_BUTTONS = gateway_buttons_user(GATEWAY_ID)
FEEDER = "cat-feeder"
MONITOR = "fmfb-monitor"
B1_TOPIC = "fmfb/button/b1"
B2_TOPIC = "fmfb/button/b2"
ACTION = "cat-feeder/action"
DISPENSED = "cat-feeder/dispensed"
STATES = "cat-feeder/states"
GUESS = "not-the-password"  # what an intruder tries
HOME_ASSISTANT = "homeassistant"
HA_PUBLISHER, HA_COMMANDS = gateway_home_users(GATEWAY_ID)
HA_FEED = f"fmfb/{GATEWAY_ID}/cmd/feed"
HA_DISCOVERY = f"homeassistant/button/{GATEWAY_ID}/feed_left/config"

pytestmark = pytest.mark.skipif(
    shutil.which("mosquitto") is None or shutil.which("mosquitto_pub") is None,
    reason="mosquitto and mosquitto-clients are not installed (scripts/install-deps)",
)


class LockedDownMosquitto(Mosquitto):
    """tests/mosquitto.py's broker, with the generated config instead of an open one."""

    def __init__(self, plan_for_port: Callable[[int, Path], BrokerPlan]) -> None:
        super().__init__()
        self.files = BrokerFiles(
            conf=self.workdir / "fmfb.conf",
            main_conf=self.workdir / "mosquitto.conf",
            password_file=self.workdir / "broker" / "passwd",
            acl_file=self.workdir / "broker" / "acl",
            credentials_dir=self.workdir / "credentials",
        )
        self.plan: BrokerPlan = plan_for_port(self.port, self.workdir)
        write_broker_files(self.plan, files=self.files)
        if os.geteuid() == 0:
            # As on the Pi: the broker runs as "mosquitto" and reads its files through the
            # group (scripts/install-pi copies the TLS files into its folder the same way);
            # the credentials stay root's alone.
            mosquitto = pwd.getpwnam("mosquitto")
            for path in (self.workdir, self.workdir / "broker"):
                os.chown(path, mosquitto.pw_uid, mosquitto.pw_gid)
                path.chmod(0o750)
            readable = [self.files.password_file, self.files.acl_file, self.files.conf]
            if self.plan.tls is not None:
                tls = self.plan.tls
                readable += [tls.cafile, tls.certfile, tls.keyfile]
            for path in readable:
                os.chown(path, 0, mosquitto.pw_gid)
                path.chmod(0o640)

    def config_text(self) -> str:
        return self.files.conf.read_text(encoding="utf-8") + "\n".join(
            [
                "persistence false",
                f"log_dest file {self.log_path}",
                "log_type all",
                "connection_messages true",
                "",
            ]
        )

    def password(self, username: str) -> str:
        return self.files.credentials(username).read_text(encoding="utf-8").strip()


def lab_plan(port: int, _workdir: Path) -> BrokerPlan:
    return BrokerPlan(
        gateway_id=GATEWAY_ID,
        buttons=(MqttButton("b1", B1_TOPIC), MqttButton("b2", B2_TOPIC)),
        monitor_user=MONITOR,
        home_assistant=HomeAssistantAccess(HOME_ASSISTANT),
        listen_address="127.0.0.1",
        port=port,
    )


@pytest.fixture(scope="module")
def locked() -> Iterator[LockedDownMosquitto]:
    broker = LockedDownMosquitto(lab_plan)
    try:
        broker.start()
        yield broker
    finally:
        broker.close()


# --- the real command-line clients -----------------------------------------------------------


def pub(
    broker: Mosquitto,
    topic: str,
    payload: str,
    *,
    user: str | None,
    password: str | None = None,
    client_id: str | None = None,
    port: int | None = None,
    tls_args: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    command = ["mosquitto_pub", "-h", broker.host, "-p", str(port or broker.port), "-q", "1"]
    command += ["-t", topic, "-m", payload, *tls_args]
    if user is not None:
        command += ["-u", user, "-P", password or ""]
    if client_id is not None:
        command += ["-i", client_id]
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=TIMEOUT)


def pub_as(broker: LockedDownMosquitto, user: str, topic: str, payload: str, **kw: Any) -> None:
    """Publish as ``user`` with its generated password; the broker must accept the connection
    (a denied *publish* is still exit 0: that silence is what the subscriber checks)."""
    result = pub(broker, topic, payload, user=user, password=broker.password(user), **kw)
    assert result.returncode == 0, result.stderr


class Sub:
    """``mosquitto_sub -d`` as ``user``: ready once its SUBACK is printed; records messages."""

    def __init__(self, broker: LockedDownMosquitto, user: str, *topics: str) -> None:
        # stdbuf: mosquitto_sub's stdout is block-buffered into a pipe; a line at a time lets
        # the test see the SUBACK (and each message) as it happens.
        command = ["stdbuf", "-oL", "mosquitto_sub", "-h", broker.host, "-p", str(broker.port)]
        command += ["-q", "1", "-d"]
        command += ["-u", user, "-P", broker.password(user), "-F", "MSG %t %p"]
        for topic in topics:
            command += ["-t", topic]
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        wait_for(
            lambda: (
                any("received SUBACK" in line for line in self.snapshot())
                or self.process.poll() is not None
            ),
            TIMEOUT,
            what=f"mosquitto_sub as {user} to subscribe",
        )
        assert self.process.poll() is None, self.snapshot()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    def snapshot(self) -> list[str]:
        with self._lock:
            return list(self.lines)

    def messages(self) -> list[tuple[str, str]]:
        out = []
        for line in self.snapshot():
            if line.startswith("MSG "):
                topic, _, payload = line.removeprefix("MSG ").partition(" ")
                out.append((topic, payload))
        return out

    def wait_message(self, topic: str, payload: str) -> list[tuple[str, str]]:
        return wait_for(
            lambda: (topic, payload) in self.messages() and self.messages(),
            TIMEOUT,
            what=f"{payload!r} on {topic}",
        )

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=TIMEOUT)
        self._reader.join(TIMEOUT)

    def __enter__(self) -> Sub:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


# --- who may connect -------------------------------------------------------------------------


def test_anonymous_and_wrong_passwords_are_refused(locked: LockedDownMosquitto) -> None:
    anonymous = pub(locked, B1_TOPIC, "x", user=None)
    assert anonymous.returncode != 0
    assert "not authori" in anonymous.stderr.lower(), anonymous.stderr
    wrong = pub(locked, ACTION, "x", user=GATEWAY, password=GUESS)
    assert wrong.returncode != 0
    assert "not authori" in wrong.stderr.lower(), wrong.stderr
    unknown = pub(locked, ACTION, "x", user="intruder", password=GUESS)
    assert unknown.returncode != 0
    # The control: the generated credentials are let in.
    pub_as(locked, "button-b1", B1_TOPIC, "ok")


# --- who may publish what --------------------------------------------------------------------


def test_the_feeder_cannot_publish_a_feed_request(locked: LockedDownMosquitto) -> None:
    with Sub(locked, MONITOR, ACTION) as watcher:
        pub_as(locked, FEEDER, ACTION, '{"event":"LONG","forged":"feeder"}')
        pub_as(locked, GATEWAY, ACTION, '{"event":"SINGLE","control":1}')
        seen = watcher.wait_message(ACTION, '{"event":"SINGLE","control":1}')
    assert seen == [(ACTION, '{"event":"SINGLE","control":1}')]


def test_a_button_publishes_only_its_own_topic(locked: LockedDownMosquitto) -> None:
    with Sub(locked, MONITOR, "#") as watcher:
        pub_as(locked, "button-b1", B2_TOPIC, '{"action":"single","forged":"b1"}')
        pub_as(locked, "button-b1", ACTION, '{"event":"LONG","forged":"b1"}')
        pub_as(locked, "button-b1", DISPENSED, '{"id":"x","status":"served","forged":"b1"}')
        pub_as(locked, "button-b1", STATES, '{"food_capacity":100,"forged":"b1"}')
        # Controls on each of those topics, from the one client allowed to send there.
        pub_as(locked, "button-b2", B2_TOPIC, "b2-control")
        pub_as(locked, GATEWAY, ACTION, "gateway-control")
        pub_as(locked, FEEDER, DISPENSED, "feeder-control")
        pub_as(locked, FEEDER, STATES, "states-control")
        pub_as(locked, "button-b1", B1_TOPIC, "b1-own")
        watcher.wait_message(B1_TOPIC, "b1-own")
        for topic, payload in [
            (B2_TOPIC, "b2-control"),
            (ACTION, "gateway-control"),
            (DISPENSED, "feeder-control"),
            (STATES, "states-control"),
        ]:
            watcher.wait_message(topic, payload)
        seen = watcher.messages()
    assert not [m for m in seen if "forged" in m[1]], seen
    assert len(seen) == 5, seen


def test_a_button_cannot_even_read_the_feeders_traffic(locked: LockedDownMosquitto) -> None:
    with Sub(locked, "button-b1", ACTION) as snoop, Sub(locked, MONITOR, ACTION) as watcher:
        # Mosquitto 2.0.11 grants the subscription itself (SUBACK QoS 1) and applies the
        # ACL's read rule to each message it would deliver.
        pub_as(locked, GATEWAY, ACTION, "private")
        watcher.wait_message(ACTION, "private")
        assert snoop.messages() == []


def test_home_assistant_asks_the_gateway_and_nothing_else(locked: LockedDownMosquitto) -> None:
    """Only Home Assistant may ask the gateway for a feed on its command topic (which the
    gateway's policy then judges); it may not run the motors itself, nor write discovery.
    Only the gateway's publisher writes discovery; a button may write neither."""
    with Sub(locked, MONITOR, "#") as watcher:
        pub_as(locked, HOME_ASSISTANT, ACTION, '{"event":"LONG","forged":"ha"}')
        pub_as(locked, HOME_ASSISTANT, HA_DISCOVERY, '{"name":"forged by ha"}')
        pub_as(locked, "button-b1", HA_FEED, '{"bowls":["left"],"forged":"b1"}')
        pub_as(locked, "button-b1", HA_DISCOVERY, '{"name":"forged by b1"}')
        pub_as(locked, HA_COMMANDS, HA_FEED, '{"bowls":["left"],"forged":"reader"}')
        # Controls: each topic from the one client allowed to write it.
        pub_as(locked, HOME_ASSISTANT, HA_FEED, "ha-feed")
        pub_as(locked, HA_PUBLISHER, HA_DISCOVERY, "discovery")
        pub_as(locked, GATEWAY, ACTION, "gateway-control")
        for topic, payload in [
            (HA_FEED, "ha-feed"),
            (HA_DISCOVERY, "discovery"),
            (ACTION, "gateway-control"),
        ]:
            watcher.wait_message(topic, payload)
        seen = watcher.messages()
    assert not [m for m in seen if "forged" in m[1]], seen
    assert len(seen) == 3, seen


def test_the_gateways_commands_link_hears_home_assistant(locked: LockedDownMosquitto) -> None:
    with Sub(locked, HA_COMMANDS, f"fmfb/{GATEWAY_ID}/cmd/#") as gateway_side:
        pub_as(locked, HOME_ASSISTANT, HA_FEED, "feed-left")
        assert gateway_side.wait_message(HA_FEED, "feed-left")


# --- whose session is whose ------------------------------------------------------------------


class PahoClient:
    """A long-lived connection (as the gateway's), recording disconnects and messages."""

    def __init__(self, broker: Mosquitto, client_id: str, user: str | None, password: str | None):
        self.disconnects = 0
        self.connected = threading.Event()
        self.messages: list[tuple[str, bytes]] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        if user is not None:
            self.client.username_pw_set(user, password)
        self.client.on_connect = lambda *_a: self.connected.set()
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = lambda *_a: self.subscribed.set()
        self.client.on_message = lambda _c, _u, m: self.messages.append((m.topic, m.payload))
        # No automatic reconnect worth counting on: a kicked client stays counted.
        self.client.reconnect_delay_set(min_delay=30, max_delay=30)
        self.client.connect(broker.host, broker.port, keepalive=30)
        self.client.loop_start()
        assert self.connected.wait(TIMEOUT), f"{client_id} did not connect"

    def _on_disconnect(self, *_a: Any) -> None:
        self.disconnects += 1

    def subscribe(self, topic: str) -> None:
        self.client.subscribe(topic, qos=1)
        assert self.subscribed.wait(TIMEOUT)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_nobody_takes_over_the_gateways_session(locked: LockedDownMosquitto) -> None:
    gateway = PahoClient(locked, GATEWAY, GATEWAY, locked.password(GATEWAY))
    try:
        gateway.subscribe(DISPENSED)
        # A button with its own valid password asks for the gateway's client id: the broker
        # gives it its user name instead, so the gateway's connection is untouched ...
        pub_as(locked, "button-b1", B1_TOPIC, "takeover?", client_id=GATEWAY)
        # ... and the gateway's own user with a guessed password is not let in at all.
        stolen = pub(locked, B1_TOPIC, "x", user=GATEWAY, password=GUESS, client_id=GATEWAY)
        assert stolen.returncode != 0
        # The feeder's report still reaches the gateway's session, which never dropped.
        pub_as(locked, FEEDER, DISPENSED, "still-yours")
        wait_for(
            lambda: (DISPENSED, b"still-yours") in gateway.messages,
            TIMEOUT,
            what="the feeder's report at the gateway",
        )
        assert gateway.disconnects == 0
        assert f"Client {GATEWAY} already connected" not in locked.log_text()
    finally:
        gateway.close()


def test_control_on_an_open_broker_the_same_trick_takes_the_session() -> None:
    # Without the lock-down, the second connection does kick the gateway: the check above
    # (disconnects == 0, no "already connected" line) is one that can fail.
    with Mosquitto() as open_broker:
        gateway = PahoClient(open_broker, GATEWAY, None, None)
        try:
            result = pub(open_broker, B1_TOPIC, "takeover", user=None, client_id=GATEWAY)
            assert result.returncode == 0, result.stderr
            wait_for(lambda: gateway.disconnects >= 1, TIMEOUT, what="the gateway to be kicked")
            assert f"Client {GATEWAY} already connected" in open_broker.log_text()
        finally:
            gateway.close()


# --- the gateway and the feeder, end to end, with their own credentials ----------------------


async def test_gateway_and_feeder_simulator_work_end_to_end(
    locked: LockedDownMosquitto, tmp_path: Path
) -> None:
    # Each of the daemon's links reads its own user's password from the folder the installer
    # writes (user = client id), so the feeder link and the buttons link never share a session.
    broker = {
        "host": locked.host,
        "port": locked.port,
        "credentials_dir": str(locked.files.credentials_dir),
        "reconnect_min_s": 0.05,
        "reconnect_max_s": 0.3,
    }
    config = parse_config(
        {
            "gateway_id": GATEWAY_ID,
            "state_dir": str(tmp_path / "state"),
            "broker": broker,
            "feeding": {"portion_ms": 1000, "ack_timeout_s": 600},
            "policy": {"min_gap_s": 0},
            "buttons": {
                "pin_factory": "mock",
                "gpio": [],
                "mqtt": [{"name": "b1", "topic": B1_TOPIC}],
            },
        }
    )
    sim = FeederSim(
        locked.host,
        locked.port,
        client_id=FEEDER,
        username=FEEDER,
        password=locked.password(FEEDER),
        memory_path=tmp_path / "flash.json",
    )
    await asyncio.to_thread(sim.start)
    try:
        async with running(config) as daemon:
            await until(
                lambda: (link := daemon.status().input("mqtt-buttons")) and link.connected,
                TIMEOUT,
                "the buttons link",
            )
            await until(
                lambda: (feeder := daemon.status().sink("feeder")) and feeder.connected,
                TIMEOUT,
                "the feeder link",
            )
            # The feeder's availability (its retained "online") reached the gateway.
            await until(lambda: journaled(daemon, EventType.FEEDER_ONLINE), TIMEOUT, "FeederOnline")
            # A press from the button device, with the button's own credentials.
            await asyncio.to_thread(
                pub_as, locked, "button-b1", B1_TOPIC, json.dumps({"action": "single"})
            )
            dispensed = await until(
                lambda: journaled(daemon, EventType.FEED_DISPENSED), TIMEOUT, "the dispense"
            )
            buttons = daemon.status().input("mqtt-buttons")
            assert buttons is not None and buttons.received == 1
            assert [run.bowls for run in sim.runs] == [("left",)]
            assert dispensed[0].payload.to_dict()["bowls"] == ["left"]
    finally:
        await asyncio.to_thread(sim.stop)
    # Neither link was ever kicked: each has its own user, so its own client id.
    assert "already connected, closing old connection" not in locked.log_text()


def test_the_broker_dropped_to_mosquitto_and_read_its_files(locked: LockedDownMosquitto) -> None:
    if os.geteuid() != 0:
        pytest.skip("only a broker started as root drops privileges")
    assert locked.pid is not None
    status = Path(f"/proc/{locked.pid}/status").read_text(encoding="utf-8")
    uid = next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))
    assert int(uid) == pwd.getpwnam("mosquitto").pw_uid
    # It read the password and ACL files after dropping (they refused the anonymous client
    # above); the plaintext credentials stayed unreadable to it.
    for username in (GATEWAY, FEEDER, MONITOR):
        assert locked.files.credentials(username).stat().st_mode & 0o777 == 0o600


# --- the optional TLS listener ---------------------------------------------------------------


def test_the_tls_listener_is_locked_down_the_same_way() -> None:
    tls_port = free_port()

    def tls_plan(port: int, workdir: Path) -> BrokerPlan:
        pki = make_pki(workdir / "broker" / "tls")
        return BrokerPlan(
            gateway_id=GATEWAY_ID,
            monitor_user=MONITOR,
            listen_address="127.0.0.1",
            port=port,
            tls=TlsListener(pki.ca, pki.server_cert, pki.server_key, tls_port, "127.0.0.1"),
        )

    broker = LockedDownMosquitto(tls_plan)
    try:
        broker.start()
        assert broker.plan.tls is not None
        over_tls = ("--cafile", str(broker.plan.tls.cafile))
        anonymous = pub(broker, STATES, "x", user=None, port=tls_port, tls_args=over_tls)
        assert anonymous.returncode != 0
        assert "not authori" in anonymous.stderr.lower(), anonymous.stderr
        gateway = PahoClient(broker, GATEWAY, GATEWAY, broker.password(GATEWAY))
        try:
            with Sub(broker, MONITOR, STATES, DISPENSED) as watcher:
                # The feeder over TLS, asking for the gateway's client id: it is let in as
                # itself (its publish arrives) and the gateway's session is untouched.
                pub_as(
                    broker,
                    FEEDER,
                    STATES,
                    "over-tls",
                    client_id=GATEWAY,
                    port=tls_port,
                    tls_args=over_tls,
                )
                watcher.wait_message(STATES, "over-tls")
                # Plain MQTT on that port, even with the right password, gets nowhere: the
                # listener really is TLS.
                plain = pub(
                    broker,
                    STATES,
                    "x",
                    user=FEEDER,
                    password=broker.password(FEEDER),
                    port=tls_port,
                )
                assert plain.returncode != 0
            assert gateway.disconnects == 0
        finally:
            gateway.close()
        assert f"Client {GATEWAY} already connected" not in broker.log_text()
    finally:
        broker.close()
