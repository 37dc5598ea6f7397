"""firmware/main.py itself, on the host, against a real Mosquitto through a TCP fault proxy.

The firmware runs as a subprocess (tests/firmware_host/run_firmware.py) with the real
umqtt.simple source as frozen into MicroPython 1.23-1.24 (1.4.0) and 1.27 (1.7.0) (and 1.22's
1.3.4, for plain MQTT and the TLS refusal), and shims
only for the hardware and the port: machine (pins log every change, the watchdog really
resets), network, ntptime, time.ticks_*/sleep_ms, and MicroPython's socket API over real
sockets. The device's clock runs SPEED times faster than real time (tests/firmware_host/
vclock.py); the proxy stamps what the device sends with the same clock.

Each fault asserts the promise: every request fed exactly once (counted on the motor pin and
in the firmware's log), its acknowledgement delivered to the gateway's side of the broker,
and no watchdog reset.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from tcp_fault_proxy import TcpFaultProxy
from waiting import wait_for

from gateway.devstack.mosquitto import Mosquitto

HOST_DIR = Path(__file__).resolve().parent / "firmware_host"
SPEED = 25  # device ms per real ms: 10 x 20 s of motors in 8 s
T0 = time.monotonic()
KEEPALIVE_S = 60
RUN_MS = 20_000
LEFT_IN1 = 3
VERSIONS = ["1.4.0", "1.7.0"]  # frozen in MicroPython 1.23-1.24 and 1.27
OLD = "1.3.4"  # frozen in MicroPython 1.22: plain MQTT only (it cannot verify TLS)


def device_ms() -> float:
    return (time.monotonic() - T0) * 1000 * SPEED


class Firmware:
    """firmware/main.py in its own process, ``flash`` its working directory."""

    def __init__(
        self, flash: Path, umqtt: str, port: int, client_id: str, mqtt: dict | None = None
    ) -> None:
        self.flash = flash
        self.umqtt = umqtt
        config = {
            "wifi": {"ssid": "test", "password": "test", "tx_power_dbm": 8.5},
            "mqtt": {
                "host": "127.0.0.1",
                "port": port,
                "client_id": client_id,
                "keepalive_s": KEEPALIVE_S,
                "timeout_s": 10,
                **(mqtt or {}),
            },
            "motors": {"left": [LEFT_IN1, 4], "right": [6, 7]},
            "feeding": {"cap_feeds": 100, "max_run_ms": RUN_MS},
            "watchdog_ms": 30_000,
        }
        flash.mkdir(parents=True, exist_ok=True)
        (flash / "config.json").write_text(json.dumps(config))
        self.runs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        env = dict(os.environ, FMFB_UMQTT=self.umqtt, FMFB_SPEED=str(SPEED), FMFB_T0=repr(T0))
        with (self.flash / "console.log").open("ab") as out:
            self.runs.append(
                subprocess.Popen(
                    [sys.executable, "-u", str(HOST_DIR / "run_firmware.py")],
                    cwd=self.flash,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )

    @property
    def process(self) -> subprocess.Popen[bytes]:
        return self.runs[-1]

    def power_cut(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        for run in self.runs:
            if run.poll() is None:
                run.kill()
                run.wait(timeout=10)

    def console(self) -> str:
        path = self.flash / "console.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def motor_starts(self, pin: int = LEFT_IN1) -> int:
        """Rising edges on a motor pin: portions actually fed."""
        starts = 0
        path = self.flash / "pins.log"
        for line in path.read_text().splitlines() if path.exists() else []:
            _t, number, value = line.split()
            starts += int(number) == pin and value == "1"
        return starts

    def motor_on(self, pin: int = LEFT_IN1) -> bool:
        state = False
        path = self.flash / "pins.log"
        for line in path.read_text().splitlines() if path.exists() else []:
            _t, number, value = line.split()
            if int(number) == pin:
                state = value == "1"
        return state

    def fed(self, request_id: str) -> int:
        return self.console().count(f"[feeder] feeding {request_id} ")

    def assert_healthy(self) -> None:
        assert "WATCHDOG RESET" not in self.console(), self.console()
        assert "Traceback" not in self.console(), self.console()
        assert self.process.poll() is None, self.console()


class Gateway:
    """The gateway's side of the broker: publishes requests, collects acknowledgements."""

    def __init__(self, broker: Mosquitto) -> None:
        self.acks: dict[str, list[dict[str, object]]] = {}
        self.online = 0
        self.offline = 0
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-gateway")
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.subscribe([("cat-feeder/dispensed", 1), ("cat-feeder/availability", 1)])
        self.client.loop_start()

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            if message.topic == "cat-feeder/availability":
                self.online += message.payload == b"online"
                self.offline += message.payload == b"offline"
                return
            ack = json.loads(message.payload)
            self.acks.setdefault(str(ack["id"]), []).append(ack)

    def request(self, request_id: str, portion_ms: int = RUN_MS, ttl_ms: int = 3_600_000) -> None:
        payload = {
            "event": "SINGLE",
            "reportedTime": "2026-01-01T00:00:00.000Z",
            "id": request_id,
            "bowls": ["left"],
            "portion_ms": portion_ms,
            # An absolute time long past: the relative ttl_ms must win (no clock shared).
            "expires_at_ms": 1,
            "ttl_ms": ttl_ms,
        }
        self.client.publish("cat-feeder/action", json.dumps(payload), qos=1).wait_for_publish(5)

    def acked(self, *ids: str) -> bool:
        with self._lock:
            return all(self.acks.get(i) for i in ids)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def rig(
    broker: Mosquitto, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[Firmware, TcpFaultProxy, Gateway]]:
    umqtt = request.param
    proxy = TcpFaultProxy(broker.port, clock=device_ms)
    gateway = Gateway(broker)
    firmware = Firmware(tmp_path / "flash", umqtt, proxy.port, f"feeder-{tmp_path.name}")
    try:
        yield firmware, proxy, gateway
    finally:
        firmware.stop()
        gateway.close()
        proxy.close()


def wait_on(
    firmware: Firmware,
    predicate: Callable[[], object],
    timeout: float,
    what: str,
    gateway: Gateway | None = None,
) -> None:
    """wait_for, showing the firmware's console and what the gateway got when it times out."""
    try:
        wait_for(predicate, timeout=timeout, what=what)
    except AssertionError as e:
        acks = "" if gateway is None else f"\n--- acks ---\n{gateway.acks}"
        raise AssertionError(f"{e}{acks}\n--- console ---\n{firmware.console()}") from None


def start_online(firmware: Firmware, gateway: Gateway) -> None:
    before = gateway.online
    firmware.start()
    wait_on(firmware, lambda: gateway.online > before, 20, "online")


def served_once(firmware: Firmware, gateway: Gateway, *ids: str) -> None:
    wait_on(firmware, lambda: gateway.acked(*ids), 30, f"acks of {ids}", gateway)
    for request_id in ids:
        assert firmware.fed(request_id) == 1, firmware.console()
        statuses = {ack["status"] for ack in gateway.acks[request_id]}
        assert statuses == {"served"}, gateway.acks[request_id]
    assert firmware.motor_starts() == len(ids), firmware.console()


@pytest.mark.parametrize("rig", [OLD, *VERSIONS], indirect=True)
def test_broker_stops_answering_mid_publish(rig: tuple[Firmware, TcpFaultProxy, Gateway]) -> None:
    firmware, proxy, gateway = rig
    start_online(firmware, gateway)
    proxy.stall_on(b"cat-feeder/dispensed")  # the PUBACK of the first ack never comes
    gateway.request("r1", portion_ms=2000)
    wait_on(firmware, lambda: proxy.accepted >= 2, 20, "a reconnect after the stall")
    gateway.request("r2", portion_ms=2000)
    served_once(firmware, gateway, "r1", "r2")
    assert "MQTT: publish:" in firmware.console(), firmware.console()
    firmware.assert_healthy()


@pytest.mark.parametrize("rig", [OLD, *VERSIONS], indirect=True)
def test_broker_that_never_answers_connect(rig: tuple[Firmware, TcpFaultProxy, Gateway]) -> None:
    """TCP connects, the CONNACK never comes: each attempt times out (1.4.0's connect() takes
    no timeout; 1.7.0's sets "forever" by default), the feeder backs off and tries again, the
    watchdog stays fed."""
    firmware, proxy, gateway = rig
    proxy.stall_new(True)
    firmware.start()
    wait_on(firmware, lambda: proxy.accepted >= 3, 20, "three connect attempts")
    assert "MQTT: connect:" in firmware.console(), firmware.console()
    assert gateway.online == 0
    proxy.stall_new(False)
    wait_on(firmware, lambda: gateway.online >= 1, 30, "online once the broker answers")
    gateway.request("c1", portion_ms=2000)
    served_once(firmware, gateway, "c1")
    firmware.assert_healthy()


@pytest.mark.parametrize("rig", VERSIONS, indirect=True)
def test_half_open_link(rig: tuple[Firmware, TcpFaultProxy, Gateway]) -> None:
    firmware, proxy, gateway = rig
    start_online(firmware, gateway)
    proxy.half_open()
    cut_at = device_ms()
    gateway.request("r1", portion_ms=2000)  # lost in the dead connection, then redelivered
    wait_on(firmware, lambda: proxy.accepted >= 2, 20, "a reconnect after the half-open")
    noticed_after = device_ms() - cut_at
    served_once(firmware, gateway, "r1")
    assert "1.5 x keepalive" in firmware.console(), firmware.console()
    # Found dead by the missing PINGRESP: within 1.5 x keepalive plus one ping interval.
    assert noticed_after <= KEEPALIVE_S * 1000 * 2.5, noticed_after
    firmware.assert_healthy()


@pytest.mark.parametrize("rig", VERSIONS, indirect=True)
def test_burst_of_ten_after_an_outage(rig: tuple[Firmware, TcpFaultProxy, Gateway]) -> None:
    firmware, proxy, gateway = rig
    start_online(firmware, gateway)  # the persistent session and its subscription exist
    proxy.refuse()
    ids = [f"b{i}" for i in range(10)]
    for request_id in ids:
        gateway.request(request_id)
    connections = proxy.accepted
    proxy.accept()
    wait_on(firmware, lambda: proxy.accepted > connections, 20, "the reconnect")
    burst_from = proxy.accepted
    wait_on(firmware, lambda: gateway.acked(*ids), 60, "ten acks", gateway)
    served_once(firmware, gateway, *ids)
    # 10 x 20 s of motors on one connection, never silent for a keepalive.
    assert proxy.accepted == burst_from, "the link was dropped during the burst"
    stamps = [t for t, number, _ in proxy.device_sends if number == burst_from]
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert stamps[-1] - stamps[0] >= 10 * RUN_MS * 0.9
    assert max(gaps) < KEEPALIVE_S * 1000, max(gaps)
    firmware.assert_healthy()


@pytest.mark.parametrize("rig", ["1.7.0"], indirect=True)
def test_ttl_runs_from_receipt_and_expires_while_queued(
    rig: tuple[Firmware, TcpFaultProxy, Gateway],
) -> None:
    """Three 20 s requests with a 30 s time-to-live, received together: the third has waited
    40 s (device clock) when its turn comes, and is refused; the absolute expires_at_ms, long
    past on a synced clock, is not looked at."""
    firmware, _proxy, gateway = rig
    start_online(firmware, gateway)
    for request_id in ("t1", "t2", "t3"):
        gateway.request(request_id, ttl_ms=30_000)
    wait_on(firmware, lambda: gateway.acked("t1", "t2", "t3"), 30, "three acks")
    assert [a["status"] for a in gateway.acks["t1"]] == ["served"], gateway.acks
    assert [a["status"] for a in gateway.acks["t2"]] == ["served"], gateway.acks
    assert [(a["status"], a["reason"]) for a in gateway.acks["t3"]] == [("refused", "expired")]
    assert firmware.motor_starts() == 2, firmware.console()
    assert firmware.fed("t3") == 0, firmware.console()
    firmware.assert_healthy()


@pytest.mark.parametrize("rig", VERSIONS, indirect=True)
def test_power_cut_mid_feed(rig: tuple[Firmware, TcpFaultProxy, Gateway]) -> None:
    firmware, _proxy, gateway = rig
    start_online(firmware, gateway)
    gateway.request("p1")
    gateway.request("p2", portion_ms=2000)
    wait_on(firmware, firmware.motor_on, 20, "the first portion under way")
    firmware.power_cut()
    # The connection died without a DISCONNECT: the broker publishes the retained last will.
    wait_on(firmware, lambda: gateway.offline >= 1, 20, "the last will")
    firmware.start()  # from the flash files
    wait_on(firmware, lambda: gateway.acked("p1", "p2"), 30, "both acks after the cut")
    assert [a["reason"] for a in gateway.acks["p1"]] == ["interrupted"], gateway.acks
    assert [a["status"] for a in gateway.acks["p2"]] == ["served"], gateway.acks
    assert firmware.fed("p1") == 1, firmware.console()
    assert firmware.fed("p2") == 1, firmware.console()
    assert firmware.motor_starts() == 2, firmware.console()
    # Remembered across the reboot: the same request again is refused, no motor.
    gateway.request("p2", portion_ms=2000)
    wait_on(firmware, lambda: len(gateway.acks["p2"]) == 2, 20, "the duplicate's ack")
    assert gateway.acks["p2"][1]["reason"] == "duplicate", gateway.acks
    assert firmware.motor_starts() == 2, firmware.console()
    firmware.assert_healthy()


@pytest.mark.parametrize("umqtt", VERSIONS)
def test_70000_publishes_on_one_connection(broker: Mosquitto, tmp_path: Path, umqtt: str) -> None:
    """QoS 1, each waiting for its own PUBACK, on one connection: the packet id wraps."""
    config = {"mqtt": {"host": broker.host, "port": broker.port, "client_id": "bench"}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    env = dict(os.environ, FMFB_UMQTT=umqtt, FMFB_SPEED="1", FMFB_T0=repr(T0))
    result = subprocess.run(
        [sys.executable, "-u", str(HOST_DIR / "run_firmware.py"), "publish", "70000"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # 65,535 ids, then wrapped to 1 again: 70,000 - 65,535 = 4,465.
    assert "published 70000 last pid 4465" in result.stdout, result.stdout
    with contextlib.suppress(FileNotFoundError):
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("umqtt", "mqtt", "reason"),
    [
        (OLD, {"tls": True, "ca_file": "ca.pem"}, "ignores the SSL context"),
        ("1.7.0", {"tls": True}, "mqtt.ca_file is not set"),
    ],
)
def test_tls_refused_where_it_would_not_verify(
    broker: Mosquitto, tmp_path: Path, umqtt: str, mqtt: dict, reason: str
) -> None:
    with TcpFaultProxy(broker.port) as proxy:
        firmware = Firmware(tmp_path / "flash", umqtt, proxy.port, "feeder-tls", mqtt)
        firmware.start()
        try:
            firmware.process.wait(timeout=20)
        finally:
            firmware.stop()
        console = firmware.console()
        assert firmware.process.returncode != 0, console
        assert "[feeder] cannot start: TLS refused" in console, console
        assert reason in console, console
        assert proxy.accepted == 0, "it must not reach the broker at all"
        assert firmware.motor_starts() == 0


def run_exec(tmp_path: Path, code: str, umqtt: str = "1.7.0") -> str:
    """``code`` in a firmware process (shims in place, main.py imported as ``firmware``)."""
    config = {"motors": {"left": [5, 10], "right": [20, 21]}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    env = dict(os.environ, FMFB_UMQTT=umqtt, FMFB_SPEED="1", FMFB_T0=repr(T0))
    result = subprocess.run(
        [sys.executable, "-u", str(HOST_DIR / "run_firmware.py"), "exec", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_pins_are_driven_low_first_thing(tmp_path: Path) -> None:
    run_exec(tmp_path, "pass")
    first = [line.split()[1:] for line in (tmp_path / "pins.log").read_text().splitlines()[:4]]
    assert sorted(first) == [["10", "0"], ["20", "0"], ["21", "0"], ["5", "0"]], first


def test_ntp_answers_are_sanity_checked(tmp_path: Path) -> None:
    code = """
import ntptime
clock = firmware.Clock("ntp.test", 3600000)
# A zeroed NTP reply reads as 2036-02-07 (era 1): out of range, not believed.
ntptime.time = lambda: 2085978496 - firmware._EPOCH_OFFSET_S
clock.maybe_sync()
assert not clock.synced
assert not clock.check(0, 0)
assert clock.check(1767225600, 0)  # 2026-01-01
clock.synced = True
# Once synced, a two-hour jump is believed only when three answers in a row say so.
assert not clock.check(1767225600 + 7200, 1767225600)
assert not clock.check(1767225600 + 7200, 1767225600)
assert clock.check(1767225600 + 7200, 1767225600)
print("checked")
"""
    assert "checked" in run_exec(tmp_path, code)


def test_wifi_leaves_reconnecting_to_the_port(tmp_path: Path) -> None:
    code = """
import time, network
wifi = firmware.WiFi({"ssid": "home", "password": "pw", "tx_power_dbm": 8.5})
assert wifi.wlan.settings == {"txpower": 8.5, "reconnects": -1}, wifi.wlan.settings
wifi.wlan.connected = False
wifi.wlan.stat = network.STAT_IDLE
assert not wifi.up() and wifi.wlan.connects == 1  # asked once ...
for _ in range(50):  # ... and never while the port is CONNECTING (the C3 would raise)
    assert not wifi.up()
assert wifi.wlan.connects == 1
wifi.wlan.stat = 201  # the port gave up (no AP found): ask again, after retry_s only
assert not wifi.up() and wifi.wlan.connects == 1
wifi.asked = time.ticks_add(time.ticks_ms(), -31000)
assert not wifi.up() and wifi.wlan.connects == 2
wifi.wlan.connected = True
assert wifi.up()
print("cooperates")
"""
    assert "cooperates" in run_exec(tmp_path, code)
