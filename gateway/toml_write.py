"""Writing config-shaped data as TOML (tomllib only reads): ``fmfb config from-terraform``
writes config files with it, and the tests write theirs with it too, so there is one writer."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gateway.errors import ConfigError


def toml_text(data: Mapping[str, Any]) -> str:
    """A TOML document for config-shaped data: tables of scalars and lists of scalars."""
    return _toml_table(data, "").lstrip("\n")


def _toml_table(data: Mapping[str, Any], prefix: str) -> str:
    scalars = []
    tables = []
    for key, value in data.items():
        name = f"{prefix}{_toml_key(key)}"
        if isinstance(value, Mapping):
            tables.append(f"\n[{name}]\n" + _toml_table(value, f"{name}.").lstrip("\n"))
        elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            for item in value:
                tables.append(f"\n[[{name}]]\n" + _toml_table(item, f"{name}.").lstrip("\n"))
        else:
            scalars.append(f"{_toml_key(key)} = {_toml_value(value)}\n")
    return "".join(scalars) + "".join(tables)


def _toml_key(key: str) -> str:
    bare = key.replace("_", "").replace("-", "").isalnum() and key.isascii()
    return key if bare else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        # A JSON string is a valid TOML basic string (the same escapes).
        return json.dumps(str(value))
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ConfigError(f"cannot write {value!r} as TOML")
