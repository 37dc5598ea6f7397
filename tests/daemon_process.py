"""The gateway daemon as a real subprocess, for end-to-end, crash and CLI tests.

``DaemonProcess`` writes a TOML config into its own directory (state directory, the test
broker's port, the policy asked for, one MQTT button on a topic of its own), starts
``fmfb run --config FILE`` with ``AWS_EC2_METADATA_DISABLED=true`` and stderr captured to a
file, and waits until the control socket answers a status request — which the daemon opens only
after ``GatewayStarted`` is durable. ``cli(...)`` runs other ``fmfb`` commands against the same
config, so a test drives the daemon exactly as a person would.

Every process is started in its own session and is killed (by its own pid) at ``close()``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from waiting import wait_for

from gateway.control import call
from gateway.errors import ControlError
from gateway.journal import EventFilter, JournalReader
from gateway.toml_write import toml_text

# The CLI as this interpreter runs it: no dependence on PATH, pyenv shims or a venv's bin/.
FMFB: list[str] = [sys.executable, "-c", "from gateway.cli import main; main(prog_name='fmfb')"]

START_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0
CLI_TIMEOUT = 30.0

# Policies tests ask for by name.
HIGH_CAPS: Mapping[str, int] = {"cap_per_bowl": 1000, "cap_period_s": 86_400, "min_gap_s": 0}
LOW_LIMITS: Mapping[str, int] = {"cap_per_bowl": 2, "cap_period_s": 86_400, "min_gap_s": 3600}

# Variables a test environment may carry that must not leak into a daemon or CLI by accident.
_SCRUBBED = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "FMFB_CONFIG", "STATE_DIRECTORY")


def fmfb_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def run_fmfb(
    *args: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    timeout: float = CLI_TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """Run ``fmfb ARGS`` to completion; stdout and stderr captured as text."""
    return subprocess.run(
        [*FMFB, *(str(a) for a in args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=fmfb_env(env),
        check=False,
        stdin=subprocess.DEVNULL,
    )


class DaemonProcess:
    """One gateway daemon (``fmfb run``) on its own state directory.

    ``workdir`` defaults to a fresh temporary directory; pass the same ``workdir`` and
    ``gateway_id`` to start a daemon again on the same journal (crash tests do).
    """

    def __init__(
        self,
        broker_port: int,
        *,
        workdir: Path | None = None,
        gateway_id: str | None = None,
        policy: Mapping[str, int] = HIGH_CAPS,
        feeding: Mapping[str, Any] | None = None,
        button_name: str = "e2e-button",
        button_topic: str | None = None,
        extra_config: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        broker_host: str = "127.0.0.1",
    ) -> None:
        if broker_port == 1883:
            raise ValueError("port 1883 is the system broker's; tests never use it")
        # Short paths: a Unix socket path must fit in 108 bytes.
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="fmfb-d-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.gateway_id = gateway_id or f"e2e-{uuid.uuid4().hex[:8]}"
        self.state_dir = self.workdir / "state"
        self.config_path = self.workdir / "config.toml"
        self.button_name = button_name
        self.button_topic = button_topic or f"fmfb-test/{self.gateway_id}/button"
        self.env = dict(env or {})
        self.stderr_path = self.workdir / "daemon.stderr"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        config: dict[str, Any] = {
            "gateway_id": self.gateway_id,
            "state_dir": str(self.state_dir),
            "log_level": "INFO",
            "broker": {
                "host": broker_host,
                "port": broker_port,
                "keepalive_s": 5,
                # Reconnect quickly after a broker outage: tests wait on it.
                "reconnect_min_s": 0.05,
                "reconnect_max_s": 0.5,
            },
            "feeding": {"expiry_s": 3600, "ack_timeout_s": 3600, **(feeding or {})},
            "policy": dict(policy),
            "buttons": {
                "pin_factory": "mock",
                "mqtt": [{"name": button_name, "topic": self.button_topic}],
            },
        }
        for key, value in (extra_config or {}).items():
            if isinstance(value, Mapping) and isinstance(config.get(key), dict):
                config[key] = {**config[key], **value}
            else:
                config[key] = value
        self.config = config
        self.config_path.write_text(toml_text(config), encoding="utf-8")

    # --- paths -------------------------------------------------------------------------------

    @property
    def journal_path(self) -> Path:
        return self.state_dir / "journal.db"

    @property
    def control_path(self) -> Path:
        return self.state_dir / "control.sock"

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self, *, wait: bool = True, timeout: float = START_TIMEOUT) -> DaemonProcess:
        if self.running:
            raise RuntimeError(f"daemon already running (pid {self.pid})")
        with self.stderr_path.open("ab") as err:
            err.write(f"--- start {self.starts + 1} ---\n".encode())
            err.flush()
            self.process = subprocess.Popen(
                [*FMFB, "run", "--config", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                env=fmfb_env(self.env),
                start_new_session=True,
            )
        self.starts += 1
        if wait:
            self.wait_ready(timeout=timeout)
        return self

    def _status_now(self) -> dict[str, Any] | None:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(
                f"daemon exited with {self.process.returncode} before it was ready\n"
                f"{self.stderr_text()}"
            )
        try:
            answer = call(self.control_path, {"op": "status"}, timeout_s=2.0)
        except (ControlError, OSError, ValueError):
            return None
        if not answer.get("ok"):
            return None
        status: dict[str, Any] = answer["status"]
        # A killed predecessor's socket can linger; only this process's answer counts.
        return status if status["pid"] == self.pid else None

    def wait_ready(self, timeout: float = START_TIMEOUT) -> dict[str, Any]:
        """Wait until the control socket answers (GatewayStarted is durable by then)."""
        status: dict[str, Any] = wait_for(
            self._status_now, timeout=timeout, interval=0.02, what="the daemon's control socket"
        )
        return status

    def status(self) -> dict[str, Any]:
        answer = call(self.control_path, {"op": "status"}, timeout_s=5.0)
        assert answer.get("ok"), answer
        result: dict[str, Any] = answer["status"]
        return result

    def sink_status(self, name: str = "feeder") -> dict[str, Any]:
        for sink in self.status()["sinks"]:
            if sink["name"] == name:
                return dict(sink)
        raise AssertionError(f"no sink {name!r} in status")

    def wait_feeder_connected(self, timeout: float = START_TIMEOUT) -> None:
        wait_for(
            lambda: self.sink_status()["connected"],
            timeout=timeout,
            what="the feeder sink to connect to the broker",
        )

    def terminate(self) -> None:
        """SIGTERM: a clean stop (systemd's way)."""
        assert self.process is not None, "not started"
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def kill(self) -> int:
        """SIGKILL: a crash. Returns once the process is gone."""
        assert self.process is not None, "not started"
        if self.process.poll() is None:
            self.process.kill()
        return self.process.wait(timeout=STOP_TIMEOUT)

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        """The exit status; raises subprocess.TimeoutExpired if it does not exit in time."""
        assert self.process is not None, "not started"
        return self.process.wait(timeout=timeout)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        self.terminate()
        return self.wait(timeout)

    def close(self) -> None:
        """Kill the daemon if it is still running (by its pid), keep the files for inspection."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=STOP_TIMEOUT)

    def __enter__(self) -> DaemonProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- looking at it -----------------------------------------------------------------------

    def stderr_text(self) -> str:
        with contextlib.suppress(FileNotFoundError):
            return self.stderr_path.read_text(encoding="utf-8", errors="replace")
        return ""

    def cli(
        self, *args: str | os.PathLike[str], timeout: float = CLI_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        """``fmfb ARGS --config <this daemon's config>``."""
        return run_fmfb(*args, "--config", self.config_path, timeout=timeout)

    def reader(self) -> JournalReader:
        return JournalReader.open(self.journal_path)

    def events(self, types: Sequence[str] = ()) -> list[Any]:
        with self.reader() as reader:
            return list(reader.query(EventFilter(types=tuple(types))))

    def __repr__(self) -> str:
        state = f"pid {self.process.pid}" if self.running and self.process else "stopped"
        return f"DaemonProcess({self.gateway_id}, {state}, {self.workdir})"
