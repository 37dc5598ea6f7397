"""Validating JSON objects field by field (journal rows, wire payloads). Pure.

Each helper returns the value asked for or raises :class:`~gateway.errors.PayloadError` naming
the key, so a decoder reports exactly which field of untrusted input was wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, TypeVar

from gateway.errors import PayloadError

E = TypeVar("E", bound=StrEnum)


def require(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    """Return ``data[key]`` if present and of ``kind``; else a PayloadError naming the key.

    ``bool`` is refused where ``int`` is asked for: JSON ``true`` is not a duration.
    """
    if key not in data:
        raise PayloadError(key, "missing")
    value = data[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise PayloadError(key, f"expected {_kind_name(kinds)}, got a boolean")
    if not isinstance(value, kinds):
        raise PayloadError(key, f"expected {_kind_name(kinds)}, got {type(value).__name__}")
    return value


def optional(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    if data.get(key) is None:
        return None
    return require(data, key, kind)


def _kind_name(kinds: tuple[type, ...]) -> str:
    names = {int: "an integer", str: "a string", list: "a list", dict: "an object", bool: "a bool"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def parse_enum(enum: type[E], key: str, value: Any) -> E:
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in enum)
        raise PayloadError(key, f"{value!r} is not one of {allowed}") from None


def non_negative_int(data: Mapping[str, Any], key: str) -> int:
    value: int = require(data, key, int)
    if value < 0:
        raise PayloadError(key, f"must not be negative, got {value}")
    return value
