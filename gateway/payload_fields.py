"""Validating plain JSON objects (journal rows, wire payloads) field by field.

Each helper returns the value or raises :class:`~gateway.errors.PayloadError` naming the key,
so a bad row or message says exactly which field is wrong. Re-exported by ``gateway.events``.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any, TypeVar

from gateway.errors import PayloadError
from gateway.event_kinds import Bowl

E = TypeVar("E", bound=StrEnum)

# --- validation of JSON objects (journal rows, wire payloads) -------------------------------


def require(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    """Return ``data[key]`` if present and of ``kind``; else a PayloadError naming the key.

    ``bool`` is refused where ``int`` is asked for: JSON ``true`` is not a duration.
    """
    # The common case first, in one comparison: a value of exactly the type asked for (never a
    # bool for an int: ``type(True) is bool``). Every journal row read back passes here several
    # times; anything else takes the full checks below, which also word the error.
    value = data.get(key, _MISSING)
    if type(value) is kind:
        return value
    return _checked(data, key, kind)


class _Missing:
    """The value of an absent key: of a type nobody asks ``require`` for."""


_MISSING: Any = _Missing()


def _checked(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
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


# Each enum's members by value: a dict lookup, where calling the enum costs a few µs per field
# and every journal row read back has several.
_MEMBERS: dict[type[Any], dict[Any, Any]] = {}


def parse_enum(enum: type[E], key: str, value: Any) -> E:
    members = _MEMBERS.get(enum)
    if members is None:
        members = _MEMBERS[enum] = {m.value: m for m in enum}
    try:
        member: E = members[value]
    except (KeyError, TypeError):  # TypeError: an unhashable value (a list, an object)
        allowed = ", ".join(repr(m.value) for m in enum)
        raise PayloadError(key, f"{value!r} is not one of {allowed}") from None
    return member


def parse_bowls(value: Any, key: str = "bowls") -> tuple[Bowl, ...]:
    """A non-empty list of distinct bowls, returned in canonical order (left before right)."""
    if type(value) is list:
        # Every valid list, looked up at once (a few dozen at most); anything else, including
        # a list holding unhashable things, gets the checks below and their error.
        with contextlib.suppress(TypeError):
            known = _VALID_BOWLS.get(tuple(value))
            if known is not None:
                return known
    if not isinstance(value, list | tuple) or not value:
        raise PayloadError(key, "expected a non-empty list of bowls")
    bowls = {parse_enum(Bowl, key, v) for v in value}
    if len(bowls) != len(value):
        raise PayloadError(key, "a bowl is named twice")
    return canonical_bowls(bowls)


def canonical_bowls(bowls: Iterable[Bowl]) -> tuple[Bowl, ...]:
    chosen = set(bowls)
    return tuple(b for b in Bowl if b in chosen)


# Each valid bowls list (every order of every non-empty set of distinct bowls) → its canonical
# tuple.
_VALID_BOWLS: dict[tuple[Any, ...], tuple[Bowl, ...]] = {
    tuple(b.value for b in chosen): canonical_bowls(chosen)
    for n in range(1, len(Bowl) + 1)
    for chosen in itertools.permutations(Bowl, n)
}


def non_negative_int(data: Mapping[str, Any], key: str) -> int:
    value: int = require(data, key, int)
    if value < 0:
        raise PayloadError(key, f"must not be negative, got {value}")
    return value
