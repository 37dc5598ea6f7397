"""A real, private Mosquitto broker: for the demo, the tests and the benchmarks.

Each ``Mosquitto`` runs its own ``mosquitto`` process on a free loopback port, with its
config, log and (optionally) persistence database in its own directory (a temporary one unless
the caller names one). Fault tests stop, kill and restart it; ``restart()`` keeps the port and
the persistence, so clients with persistent sessions find their queued messages again.

Never port 1883: that is the system broker's.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from gateway.devstack import DevStackError
from gateway.devstack.processes import stop_process

SYSTEM_BROKER_PORT = 1883
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
# Debian installs the broker in sbin, which is not on a normal user's PATH.
SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin")


@dataclass(frozen=True)
class Tls:
    """Server side of an mTLS listener (what AWS IoT Core looks like to a client)."""

    cafile: Path
    certfile: Path
    keyfile: Path
    require_certificate: bool = True


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the kernel's pick), never 1883."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port: int = sock.getsockname()[1]
        if port != SYSTEM_BROKER_PORT:
            return port


def find_mosquitto() -> str:
    """The ``mosquitto`` binary: on PATH, or where Debian puts it."""
    found = shutil.which("mosquitto") or next(
        (str(Path(d) / "mosquitto") for d in SBIN_DIRS if (Path(d) / "mosquitto").exists()),
        None,
    )
    if found is None:
        raise DevStackError(
            "the mosquitto broker is not installed (Debian: sudo apt-get install mosquitto; "
            "or run scripts/install-deps)"
        )
    return found


def _port_accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class Mosquitto:
    """A private mosquitto broker on 127.0.0.1.

    ``persistent=True`` keeps a persistence database in the broker's directory, so
    retained messages, persistent sessions and their queued QoS 1/2 messages survive
    ``stop()``/``restart()`` (mosquitto saves on a clean shutdown; ``kill()`` loses what was
    not autosaved yet — pass ``extra_config=["autosave_interval 1"]`` to narrow that window).
    ``tls`` turns the listener into an mTLS one. ``extra_config`` lines are appended verbatim.
    ``workdir``: where config, log and persistence go; the caller's directory is kept by
    ``close()``, a temporary one (the default) is removed.
    """

    def __init__(
        self,
        *,
        persistent: bool = False,
        tls: Tls | None = None,
        port: int | None = None,
        extra_config: Sequence[str] = (),
        binary: str | None = None,
        workdir: Path | None = None,
    ) -> None:
        if port == SYSTEM_BROKER_PORT:
            raise ValueError("port 1883 is the system broker's; the local stack never uses it")
        self.host = "127.0.0.1"
        self._fixed_port = port is not None
        self.port = port if port is not None else free_port(self.host)
        self.persistent = persistent
        self.tls = tls
        self.extra_config = list(extra_config)
        self.binary = binary
        self._owns_workdir = workdir is None
        if workdir is None:
            workdir = Path(tempfile.mkdtemp(prefix="fmfb-mosquitto-"))
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.config_path = self.workdir / "mosquitto.conf"
        self.log_path = self.workdir / "mosquitto.log"
        self.output_path = self.workdir / "mosquitto.out"
        self.persistence_dir = self.workdir / "persistence"
        self._process: subprocess.Popen[bytes] | None = None
        self._last_exit: int | None = None

    # -- config ---------------------------------------------------------------------------

    def config_text(self) -> str:
        lines = [
            "# written by gateway/devstack/mosquitto.py",
            f"listener {self.port} {self.host}",
        ]
        if self.tls is None:
            lines.append("allow_anonymous true")
        else:
            lines += [
                f"cafile {self.tls.cafile}",
                f"certfile {self.tls.certfile}",
                f"keyfile {self.tls.keyfile}",
                f"require_certificate {'true' if self.tls.require_certificate else 'false'}",
                "use_identity_as_username true",
                "allow_anonymous false",
                # Without it Nagle on the broker makes a round trip ~17 ms instead of ~0.6 ms.
                "set_tcp_nodelay true",
            ]
        if self.persistent:
            lines += [
                "persistence true",
                # mosquitto wants the trailing slash on a directory.
                f"persistence_location {self.persistence_dir}/",
                "persistence_file mosquitto.db",
            ]
        else:
            lines.append("persistence false")
        if os.geteuid() == 0:
            # Started as root, mosquitto drops to the user "mosquitto", which could not write
            # this temporary directory.
            lines.append("user root")
        lines += [
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "log_timestamp true",
            *self.extra_config,
        ]
        return "\n".join(lines) + "\n"

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.running and self._process is not None else None

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the broker and return once its port accepts TCP connections."""
        if self.running:
            raise DevStackError(f"mosquitto already running on port {self.port}")
        if self.binary is None:
            self.binary = find_mosquitto()
        attempts = 1 if self._fixed_port else 3
        self._last_exit = None
        for attempt in range(attempts):
            if self._launch(timeout):
                return
            # The kernel's free port can be taken between our probe and mosquitto's bind: a
            # broker whose port was not fixed (never started yet) may pick another one.
            if attempt + 1 < attempts and "Address already in use" in self.diagnostics():
                self._fixed_port = False
                self.port = free_port(self.host)
                continue
            break
        exited = f"exited with status {self._last_exit}" if self._last_exit is not None else ""
        raise DevStackError(
            f"mosquitto did not accept connections on {self.host}:{self.port} "
            f"within {timeout:.1f}s {exited}\n{self.diagnostics()}"
        )

    def _launch(self, timeout: float) -> bool:
        assert self.binary is not None
        if self.persistent:
            self.persistence_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config_text(), encoding="utf-8")
        with self.output_path.open("ab") as output:
            self._process = subprocess.Popen(
                [self.binary, "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._last_exit = self._process.returncode
                self._process = None
                return False
            if _port_accepts(self.host, self.port):
                # Once it listens, the port is ours for restarts.
                self._fixed_port = True
                return True
            time.sleep(0.01)
        self.kill()
        return False

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM (mosquitto saves its persistence database) and wait for the exit."""
        process, self._process = self._process, None
        if process is not None:
            stop_process(process, timeout)

    def kill(self) -> None:
        """SIGKILL: a crash. Nothing is saved that was not autosaved already."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        process.wait(timeout=STOP_TIMEOUT)
        self._process = None

    def restart(self, timeout: float = START_TIMEOUT) -> None:
        """Stop (if running) and start again on the same port with the same persistence."""
        self.stop()
        self.start(timeout=timeout)

    def close(self) -> None:
        """Stop the broker and remove its temporary directory (a caller's one is kept)."""
        self.stop()
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- diagnostics ----------------------------------------------------------------------

    def log_text(self) -> str:
        """The broker's log file so far ("" before it wrote one)."""
        with contextlib.suppress(FileNotFoundError):
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        return ""

    def diagnostics(self) -> str:
        """Log, console output and config: what to show when the broker misbehaves."""
        output = ""
        with contextlib.suppress(FileNotFoundError):
            output = self.output_path.read_text(encoding="utf-8", errors="replace")
        return (
            f"--- {self.log_path} ---\n{self.log_text()}"
            f"--- mosquitto stdout/stderr ---\n{output}"
            f"--- {self.config_path} ---\n{self.config_text()}"
        )

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"Mosquitto({self.host}:{self.port}, {state}, persistent={self.persistent})"
