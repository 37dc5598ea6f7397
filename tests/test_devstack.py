"""The local stack (``gateway.devstack``): the cuttable relay, the in-process daemon, and that
neither the CLI nor the production daemon imports any of it."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from gateway.config import parse_config
from gateway.devstack import DevStackError
from gateway.devstack.daemon import InProcessDaemon, running
from gateway.devstack.mosquitto import Mosquitto
from gateway.devstack.relay import Relay
from gateway.events import EventType
from gateway.journal import JournalReader

# --- the relay (the demo's "internet") -------------------------------------------------------


def _echo_server() -> tuple[socket.socket, int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            # The relay under test cuts connections on purpose: a peer gone mid-echo is fine.
            with conn, contextlib.suppress(OSError):
                while data := conn.recv(1024):
                    conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    return server, server.getsockname()[1]


def _round_trip(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"meow")
        return sock.recv(1024)


def test_relay_forwards_and_can_be_cut_and_restored() -> None:
    server, upstream = _echo_server()
    relay = Relay("127.0.0.1", upstream).start()
    try:
        assert relay.online
        assert _round_trip(relay.port) == b"meow"
        port = relay.port
        held = socket.create_connection(("127.0.0.1", port), timeout=5)
        held.sendall(b"x")
        assert held.recv(10) == b"x"
        relay.cut()
        assert not relay.online
        with pytest.raises(ConnectionRefusedError):
            _round_trip(port)
        assert held.recv(10) == b""  # the open connection was closed too
        held.close()
        relay.restore()
        assert relay.port == port
        assert _round_trip(port) == b"meow"
    finally:
        relay.close()
        server.close()


# --- the daemon in this loop -----------------------------------------------------------------


def _config(tmp_path: Path, broker: Mosquitto) -> dict[str, object]:
    return {
        "gateway_id": "devstack-test",
        "state_dir": str(tmp_path / "state"),
        "broker": {"host": broker.host, "port": broker.port},
        "buttons": {"pin_factory": "mock", "gpio": [], "mqtt": []},
    }


async def test_running_starts_the_daemon_and_stops_it_as_sigterm_would(
    tmp_path: Path, broker_session: Mosquitto
) -> None:
    config = parse_config(_config(tmp_path, broker_session))
    async with running(config) as daemon:
        assert daemon.ready.is_set()
        assert daemon.status().gateway_id == "devstack-test"
    with JournalReader.open(config.journal_file) as reader:
        last = reader.get(reader.last_seq())
    assert last is not None
    assert last.type is EventType.GATEWAY_STOPPED


async def test_a_daemon_that_cannot_start_raises_what_stopped_it(tmp_path: Path) -> None:
    # The state directory is a file: the journal cannot be opened.
    blocker = tmp_path / "state"
    blocker.write_text("not a directory")
    config = parse_config(
        {
            "gateway_id": "devstack-test",
            "state_dir": str(blocker),
            "buttons": {"pin_factory": "mock", "gpio": [], "mqtt": []},
        }
    )
    runner = InProcessDaemon(config, ready_timeout_s=10)
    with pytest.raises(Exception) as caught:
        await runner.start()
    assert not isinstance(caught.value, DevStackError), "the daemon's own error, not a timeout"
    assert runner.exited


# --- nothing of it in production -------------------------------------------------------------


def test_the_cli_and_the_daemon_never_import_the_local_stack() -> None:
    code = (
        "import sys\n"
        "import gateway.daemon\n"
        "from gateway.cli import main\n"
        "for args in (['--help'], ['demo', '--help'], ['--version']):\n"
        "    try:\n"
        "        main(args, prog_name='fmfb')\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = ('moto', 'boto3', 'gateway.devstack', 'gateway.demo')\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in heavy[:2]\n"
        "                or m.startswith(heavy[2:]))\n"
        "print('LOADED', loaded)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "LOADED []" in result.stdout, result.stdout
