"""End to end: the daemon as a real subprocess (``fmfb run``) against a real Mosquitto.

A separate paho client presses an MQTT button; another one stands where the feeder would, on
``cat-feeder/action``. The broker is stopped and restarted under the daemon; the daemon is
stopped with SIGTERM; systemd's notify protocol is read from a socket the test binds.
"""

from __future__ import annotations

import contextlib
import re
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_process import HIGH_CAPS, DaemonProcess, run_fmfb
from e2e_probe import Probe, Received
from waiting import wait_for

from gateway.devstack.mosquitto import Mosquitto

pytestmark = pytest.mark.e2e

ACTION = "cat-feeder/action"
CONTRACT_FIELDS = {"event", "reportedTime", "id", "bowls", "portion_ms", "expires_at_ms"}
RFC3339_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
ACCEPTED = re.compile(r"^accepted: feed (\S+) \(seq (\d+), request ([0-9a-f-]{36})\)", re.M)
PORTION_MS = 7_000
EXPIRY_S = 1_800


@pytest.fixture
def daemon(broker: Mosquitto, tmp_path: Path) -> Iterator[DaemonProcess]:
    with DaemonProcess(
        broker.port,
        workdir=tmp_path / "gw",
        policy=HIGH_CAPS,
        feeding={"portion_ms": PORTION_MS, "expiry_s": EXPIRY_S},
    ) as d:
        yield d


def feed_requests(daemon: DaemonProcess) -> list[dict[str, object]]:
    return [e.payload.to_dict() for e in daemon.events(["FeedRequested"])]


def wait_button_subscribed(daemon: DaemonProcess, presser: Probe) -> None:
    """Prove the daemon's button subscription is live without journaling a press.

    A payload that is not a press is counted (never journaled) under "button:<name>:...": once
    the status shows such a count, the next real press on that topic reaches the daemon.
    """
    prefix = f"button:{daemon.button_name}:"

    def counted() -> bool:
        presser.publish(daemon.button_topic, b"\x01 not a press")
        return any(k.startswith(prefix) for k in daemon.status()["bad_inputs"])

    wait_for(counted, timeout=15, interval=0.05, what="the daemon to subscribe to its button")


def check_action(message: Received, *, event: str, bowls: list[str]) -> dict[str, object]:
    body = message.json()
    assert isinstance(body, dict)
    assert body.keys() >= CONTRACT_FIELDS, f"missing {CONTRACT_FIELDS - body.keys()} in {body}"
    assert body["event"] == event
    assert body["bowls"] == bowls
    assert body["portion_ms"] == PORTION_MS
    assert type(body["portion_ms"]) is int
    assert type(body["expires_at_ms"]) is int  # integers on the wire, never floats
    assert RFC3339_MS.match(body["reportedTime"]), body["reportedTime"]
    assert isinstance(body["id"], str)
    assert message.qos == 1
    # The broker drops a stale request: an MQTT 5 message expiry no longer than the request's.
    assert message.message_expiry_s is not None
    assert 0 < message.message_expiry_s <= EXPIRY_S
    return body


def test_mqtt_button_press_reaches_the_feeder(broker: Mosquitto, daemon: DaemonProcess) -> None:
    with (
        Probe(broker.host, broker.port, subscribe=[ACTION]) as feeder,
        Probe(broker.host, broker.port) as presser,
    ):
        daemon.start()
        daemon.wait_feeder_connected()
        wait_button_subscribed(daemon, presser)
        assert feed_requests(daemon) == []  # the probing payloads journaled nothing

        presser.publish(daemon.button_topic, b'{"action":"single"}')
        (single,) = feeder.wait_messages(lambda ms: len(ms) >= 1, what="the SINGLE action")
        body = check_action(single, event="SINGLE", bowls=["left"])

        presser.publish(daemon.button_topic, b'{"action":"hold","battery":97}')
        msgs = feeder.wait_messages(lambda ms: len(ms) >= 2, what="the LONG action")
        long_body = check_action(msgs[1], event="LONG", bowls=["left", "right"])

        # What reached the feeder is what the journal recorded, one request per press.
        requests = feed_requests(daemon)
        assert [r["request_id"] for r in requests] == [body["id"], long_body["id"]]
        assert [r["click_type"] for r in requests] == ["SINGLE", "LONG"]
        assert {r["button"] for r in requests} == {daemon.button_name}
        assert [r["expires_at_ms"] for r in requests] == [
            body["expires_at_ms"],
            long_body["expires_at_ms"],
        ]
        events = daemon.events(["FeedRequested"])
        assert all(e.origin.value == "button" for e in events)
        # expires_at_ms is the request's time plus the configured expiry.
        assert body["expires_at_ms"] == events[0].occurred_at_ms + EXPIRY_S * 1000


def test_feed_during_broker_outage_is_delivered_after_reconnect(tmp_path: Path) -> None:
    # A persistent broker, and a feeder probe with a persistent session: what the daemon
    # publishes right after the restart is queued for the probe even if it is not back yet.
    with (
        Mosquitto(persistent=True) as broker,
        DaemonProcess(broker.port, workdir=tmp_path / "gw", policy=HIGH_CAPS) as daemon,
    ):
        feeder = Probe(broker.host, broker.port, subscribe=[ACTION], persistent=True).start()
        try:
            daemon.start()
            daemon.wait_feeder_connected()
            first = daemon.cli("feed", "right")
            assert first.returncode == 0, first.stderr
            feeder.wait_messages(lambda ms: len(ms) == 1, what="the first feed")

            broker.stop()
            wait_for(
                lambda: not daemon.sink_status()["connected"],
                what="the daemon to notice the broker is gone",
            )
            during = daemon.cli("feed", "left")
            assert during.returncode == 0, during.stdout + during.stderr
            m = ACCEPTED.search(during.stdout)
            assert m, during.stdout
            assert m.group(1) == "left"
            request_id = m.group(3)
            # Journaled, not yet delivered: the sink holds it behind its cursor.
            sink = daemon.sink_status()
            assert not sink["connected"]
            assert sink["backlog"] >= 1
            assert sink["cursor"] < int(m.group(2))

            connects = feeder.connects
            broker.restart()
            wait_for(lambda: feeder.connects > connects, what="the probe to reconnect")
            msgs = feeder.wait_messages(
                lambda ms: any(x.json()["id"] == request_id for x in ms),
                timeout=20,
                what="the request made during the outage",
            )
            delivered = [x.json() for x in msgs if x.json()["id"] == request_id]
            assert delivered  # at least once; a duplicate delivery is allowed ...
            assert all(d["bowls"] == ["left"] for d in delivered)
            wait_for(
                lambda: daemon.sink_status()["backlog"] == 0,
                what="the feeder sink's cursor to catch up",
            )
            # ... but the journal holds exactly one request for it, and no second feed.
            requests = feed_requests(daemon)
            assert [r["request_id"] for r in requests].count(request_id) == 1
            assert len(requests) == 2
            assert daemon.events(["FeedRejected"]) == []
        finally:
            feeder.close()


def test_sigterm_stops_cleanly_and_the_journal_verifies(
    broker: Mosquitto, daemon: DaemonProcess
) -> None:
    daemon.start()
    fed = daemon.cli("feed", "both")
    assert fed.returncode == 0, fed.stderr
    assert "accepted: feed left+right" in fed.stdout

    daemon.terminate()
    assert daemon.wait(timeout=15) == 0, daemon.stderr_text()

    events = daemon.events()
    assert [e.type.value for e in events] == ["GatewayStarted", "FeedRequested", "GatewayStopped"]
    assert [e.seq for e in events] == [1, 2, 3]
    assert not daemon.control_path.exists()  # the socket is removed on a clean stop
    assert "stopped cleanly" in daemon.stderr_text()

    verify = run_fmfb("journal", "verify", "--journal", daemon.journal_path)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "ok: 3 rows" in verify.stdout


class NotifyListener:
    """An AF_UNIX datagram socket standing where systemd's NOTIFY_SOCKET would be."""

    def __init__(self) -> None:
        # A short path: sun_path holds 108 bytes.
        self.dir = Path(tempfile.mkdtemp(prefix="fmfb-n-"))
        self.path = self.dir / "notify.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.settimeout(0.2)
        self._lock = threading.Lock()
        self._datagrams: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="notify-listener", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._datagrams.append(data.decode())

    @property
    def datagrams(self) -> list[str]:
        with self._lock:
            return list(self._datagrams)

    def lines(self) -> list[str]:
        return [line for d in self.datagrams for line in d.split("\n")]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()
        with contextlib.suppress(OSError):
            self.path.unlink()
            self.dir.rmdir()


def test_systemd_notify_ready_watchdog_and_stopping(broker: Mosquitto, tmp_path: Path) -> None:
    listener = NotifyListener()
    try:
        with DaemonProcess(
            broker.port,
            workdir=tmp_path / "gw",
            # WATCHDOG_PID is left unset: the child's pid cannot be known before it starts.
            env={"NOTIFY_SOCKET": str(listener.path), "WATCHDOG_USEC": "400000"},
        ) as daemon:
            daemon.start()
            ready = wait_for(
                lambda: [d for d in listener.datagrams if "READY=1" in d.split("\n")],
                what="READY=1",
            )
            status = [line for line in ready[0].split("\n") if line.startswith("STATUS=")]
            assert status, ready[0]
            assert "seq " in status[0]  # the status line says where the journal is
            wait_for(
                lambda: listener.lines().count("WATCHDOG=1") >= 2,
                timeout=10,
                what="two WATCHDOG=1 pings (WatchdogSec 0.4 s: one every 0.2 s)",
            )
            assert "STOPPING=1" not in listener.lines()

            daemon.terminate()
            wait_for(lambda: "STOPPING=1" in listener.lines(), what="STOPPING=1 after SIGTERM")
            assert daemon.wait(timeout=15) == 0, daemon.stderr_text()
            # READY came before STOPPING.
            lines = listener.lines()
            assert lines.index("READY=1") < lines.index("STOPPING=1")
    finally:
        listener.close()
