"""The one JSON text a payload is stored as: compact, keys sorted, UTF-8 (no newlines).

Every append encodes its payload on the event loop, so this is on the path of every press.
``json.JSONEncoder.encode`` builds a new C encoder (and a circular-reference memo) on each call,
which was half the cost of encoding a payload; here one C encoder is built at import and reused.
Payloads are trees of dicts, lists, str, int, float, bool and None made by ``to_dict`` (never
circular), so the memo buys nothing. ``json.encoder.c_make_encoder`` is not a documented API:
it is used only if building it works and it encodes a probe exactly as ``JSONEncoder`` does,
else every call goes through ``JSONEncoder`` (slower, the same text).
"""

from __future__ import annotations

import json
import json.encoder
from collections.abc import Callable, Mapping
from typing import Any, Final

# Built once: json.dumps with these options builds a new encoder per call.
_ENCODER: Final = json.JSONEncoder(separators=(",", ":"), sort_keys=True, ensure_ascii=False)

# Keys out of order, nesting, non-ASCII, escapes, every scalar type: what payloads hold.
_PROBE: Final[dict[str, Any]] = {
    "b": [1, -2, 3.5, 1e16, True, False, None],
    "a": {"z": '🐈 "quoted" \\ back\nslash\t\u0001', "y": []},
    "é": 2**70,
}


def _reusable_c_encoder(make: Callable[..., Any] | None) -> Callable[[Any, int], Any] | None:
    """An encoder built by ``make`` (``c_make_encoder``) that gives JSONEncoder's text, or None."""
    if make is None:  # a Python without the _json accelerator
        return None
    e = _ENCODER
    try:
        encoder = make(
            None,  # markers: no circular-reference memo
            e.default,  # unknown types raise TypeError as json.dumps does
            json.encoder.encode_basestring,  # ensure_ascii=False
            None,  # indent
            e.key_separator,
            e.item_separator,
            e.sort_keys,
            e.skipkeys,
            e.allow_nan,
        )
        same = "".join(encoder(_PROBE, 0)) == e.encode(_PROBE)
    except (TypeError, ValueError):  # its signature changed in a later Python
        return None
    return encoder if same else None


_C_ENCODER: Final = _reusable_c_encoder(getattr(json.encoder, "c_make_encoder", None))


def canonical_json(data: Mapping[str, Any]) -> str:
    """The one JSON text a payload is stored as: compact, keys sorted, UTF-8 (no newlines)."""
    if _C_ENCODER is not None:
        return "".join(_C_ENCODER(data, 0))
    return _ENCODER.encode(data)
