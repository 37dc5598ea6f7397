"""The stored payload text: the reused C encoder must give exactly json.dumps's text (a row's hash
covers it, so old and new rows must agree), and must step aside when it cannot."""

from __future__ import annotations

import json
import json.encoder
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import canonical
from gateway.event_kinds import Bowl, Origin

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text()
    | st.sampled_from([*Bowl, *Origin]),  # StrEnums, as to_dict leaves them
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def test_this_python_uses_the_reused_c_encoder() -> None:
    """If this fails on a new Python, payloads are still encoded right, only slower: look at
    json.encoder.c_make_encoder's new signature."""
    assert json.encoder.c_make_encoder is not None
    assert canonical._C_ENCODER is not None


@given(st.dictionaries(st.text(), JSON_VALUES, max_size=8))
def test_the_text_is_json_dumps_with_the_canonical_options(data: dict[str, Any]) -> None:
    assert canonical.canonical_json(data) == dumps(data)


@pytest.mark.parametrize(
    "make",
    [
        None,  # no _json accelerator
        lambda *args: (_ for _ in ()).throw(TypeError("takes 10 arguments")),  # new signature
        lambda *args: lambda data, level: ["{}"],  # builds, but encodes the probe wrongly
    ],
    ids=["missing", "new-signature", "wrong-text"],
)
def test_without_a_usable_c_encoder_the_same_text_comes_from_json_encoder(
    monkeypatch: pytest.MonkeyPatch, make: Any
) -> None:
    assert canonical._reusable_c_encoder(make) is None
    monkeypatch.setattr(canonical, "_C_ENCODER", None)
    data = {"b": [Bowl.LEFT, 1.5], "a": 'é "q"\n', "c": {"y": None, "x": True}}
    assert canonical.canonical_json(data) == dumps(data)


def test_what_json_cannot_hold_fails_as_json_dumps_does() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        canonical.canonical_json({"when": object()})
    assert canonical.canonical_json({"x": math.inf}) == dumps({"x": math.inf})
