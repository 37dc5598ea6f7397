"""Where the gateway keeps its files, read without the full config model.

``fmfb journal …``, ``fmfb status`` and ``fmfb feed`` need only the journal's path or the
control socket's: reading just those keys from the TOML keeps each such command from paying
for pydantic's model of the whole config (on a Pi Zero, most of a command's start-up). The
daemon and ``fmfb config check`` validate everything through :mod:`gateway.config`, which
takes its defaults from here, so the two can never disagree.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.errors import ConfigError

SYSTEM_CONFIG = Path("/etc/fmfb/config.toml")


def default_state_dir() -> Path:
    """systemd's StateDirectory when run as a service, else the XDG state home."""
    if os.environ.get("STATE_DIRECTORY"):
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return base / "fmfb"


def read_toml(path: Path) -> dict[str, Any]:
    """The config file's TOML, or a ConfigError that says what is wrong with the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start})") from e
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e


def chosen_config(path: Path | None) -> Path | None:
    """--config (or $FMFB_CONFIG), else /etc/fmfb/config.toml when it exists, else None: the
    embedded defaults."""
    if path is None and SYSTEM_CONFIG.exists():
        return SYSTEM_CONFIG
    return path


@dataclass(frozen=True, slots=True)
class StatePaths:
    state_dir: Path
    journal_file: Path
    control_path: Path

    @classmethod
    def of(cls, data: dict[str, Any]) -> StatePaths:
        """The paths a config (as parsed TOML) names, with the same defaults as Config."""

        def path_key(key: str) -> Path | None:
            value = data.get(key)
            if value is None:
                return None
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{key}: a path (a non-empty string)")
            return Path(value)

        state_dir = path_key("state_dir") or default_state_dir()
        return cls(
            state_dir=state_dir,
            journal_file=path_key("journal_path") or state_dir / "journal.db",
            control_path=path_key("control_socket") or state_dir / "control.sock",
        )

    @classmethod
    def load(cls, config_path: Path | None) -> StatePaths:
        path = chosen_config(config_path)
        return cls.of(read_toml(path) if path is not None else {})
