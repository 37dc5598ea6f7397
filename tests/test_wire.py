"""The local MQTT wire format: decoders refuse garbage with PayloadError only; encoders match
the contract in docs/architecture.md ("Local MQTT topics")."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.errors import PayloadError
from gateway.events import Bowl, ClickType, FeedRequested, Origin
from gateway.wire import (
    DEFAULT_CLICK_BOWLS,
    MAX_PAYLOAD_BYTES,
    MAX_RAN_MS,
    DispensedReport,
    DispenseStatus,
    StatesReport,
    click_for_bowls,
    decode_availability,
    decode_button,
    decode_dispensed,
    decode_states,
    encode_action,
    message_expiry_s,
    rfc3339_ms,
)

LEFT = (Bowl.LEFT,)
RIGHT = (Bowl.RIGHT,)
BOTH = (Bowl.LEFT, Bowl.RIGHT)


def j(value: Any) -> bytes:
    return json.dumps(value).encode()


def field_of(decoder: Callable[[bytes], object], payload: bytes) -> str:
    with pytest.raises(PayloadError) as info:
        decoder(payload)
    return info.value.field


# --- buttons ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "click"),
    [
        (b"SINGLE", ClickType.SINGLE),
        (b"DOUBLE", ClickType.DOUBLE),
        (b"LONG", ClickType.LONG),
        (b"single", ClickType.SINGLE),
        (b"  Double\r\n", ClickType.DOUBLE),
        (b"\tlong ", ClickType.LONG),
        (b"hold", ClickType.LONG),  # zigbee2mqtt's legacy <device>/action topic, bare
        (b'{"action": "single"}', ClickType.SINGLE),
        (b'{"action": "double"}', ClickType.DOUBLE),
        (b'{"action": "hold"}', ClickType.LONG),
        (b'{"action": "long"}', ClickType.LONG),
        (b'{"action": "SINGLE", "battery": 97, "linkquality": 120}', ClickType.SINGLE),
        (b' \n{"action":"double"} ', ClickType.DOUBLE),
    ],
)
def test_button_presses(payload: bytes, click: ClickType) -> None:
    assert decode_button(payload) is click


@pytest.mark.parametrize(
    "payload",
    [
        b'{"action": "release"}',
        b'{"action": ""}',
        b'{"action": null}',
        b'{"battery": 100, "linkquality": 87, "voltage": 3000}',
        b'{"linkquality": 42}',
        b"release",
    ],
)
def test_z2m_messages_without_a_press_are_ignored(payload: bytes) -> None:
    assert decode_button(payload) is None


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (b'{"action": "triple"}', "action"),
        (b'{"action": "single_left"}', "action"),
        (b'{"action": 1}', "action"),
        (b'{"action": true}', "action"),
        (b'{"action": ["single"]}', "action"),
        (b"{}", "action"),
        (b"TRIPLE", "action"),  # a bare word we do not know: an unknown action, not "not JSON"
        (b"", ""),
        (b"   ", ""),
        (b'"single"', ""),  # a JSON string is not an object
        (b'["single"]', ""),
        (b"42", ""),
        (b"null", ""),
        (b"\xff\xfe", ""),
        (b"SINGLE\x00", ""),
    ],
)
def test_button_errors_name_the_field(payload: bytes, field: str) -> None:
    assert field_of(decode_button, payload) == field


# --- dispensed -------------------------------------------------------------------------------


def test_dispensed_served() -> None:
    payload = j({"id": "0190-abc", "status": "served", "bowls": ["right", "left"], "ran_ms": 1500})
    assert decode_dispensed(payload) == DispensedReport(
        request_id="0190-abc",
        status=DispenseStatus.SERVED,
        reason=None,
        bowls=BOTH,  # canonical order
        ran_ms=1500,
    )


def test_dispensed_refused_with_reason_and_minimal() -> None:
    report = decode_dispensed(j({"id": "r1", "status": "refused", "reason": "jam"}))
    assert report == DispensedReport("r1", DispenseStatus.REFUSED, "jam", None, None)
    assert report.status == "refused"
    nulls = decode_dispensed(
        j({"id": "r2", "status": "served", "reason": None, "bowls": None, "ran_ms": None})
    )
    assert nulls == DispensedReport("r2", DispenseStatus.SERVED, None, None, None)


def test_dispensed_accepts_boundaries() -> None:
    assert decode_dispensed(j({"id": "x" * 128, "status": "served", "ran_ms": 0})).ran_ms == 0
    top = decode_dispensed(j({"id": "x", "status": "served", "ran_ms": MAX_RAN_MS}))
    assert top.ran_ms == MAX_RAN_MS


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"status": "served"}, "id"),
        ({"id": "", "status": "served"}, "id"),
        ({"id": "x" * 129, "status": "served"}, "id"),
        ({"id": 7, "status": "served"}, "id"),
        ({"id": None, "status": "served"}, "id"),
        ({"id": "a\nb", "status": "served"}, "id"),
        ({"id": "\ud800", "status": "served"}, "id"),
        ({"id": "r"}, "status"),
        ({"id": "r", "status": "SERVED"}, "status"),
        ({"id": "r", "status": "eaten"}, "status"),
        ({"id": "r", "status": 1}, "status"),
        ({"id": "r", "status": "refused", "reason": 5}, "reason"),
        ({"id": "r", "status": "refused", "reason": "x" * 257}, "reason"),
        ({"id": "r", "status": "refused", "reason": "\udc00"}, "reason"),
        ({"id": "r", "status": "served", "ran_ms": -1}, "ran_ms"),
        ({"id": "r", "status": "served", "ran_ms": 1.0}, "ran_ms"),
        ({"id": "r", "status": "served", "ran_ms": 1500.5}, "ran_ms"),
        ({"id": "r", "status": "served", "ran_ms": True}, "ran_ms"),
        ({"id": "r", "status": "served", "ran_ms": "1500"}, "ran_ms"),
        ({"id": "r", "status": "served", "ran_ms": MAX_RAN_MS + 1}, "ran_ms"),
        ({"id": "r", "status": "served", "bowls": []}, "bowls"),
        ({"id": "r", "status": "served", "bowls": ["middle"]}, "bowls"),
        ({"id": "r", "status": "served", "bowls": ["left", "left"]}, "bowls"),
        ({"id": "r", "status": "served", "bowls": "left"}, "bowls"),
        ({"id": "r", "status": "served", "bowls": [["left"]]}, "bowls"),
    ],
)
def test_dispensed_errors_name_the_field(data: dict[str, Any], field: str) -> None:
    assert field_of(decode_dispensed, j(data)) == field


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"served",
        b"[1, 2]",
        b'{"id": "r", "status": "served", "ran_ms": NaN}',
        b'{"id": "r", "status": "served", "ran_ms": Infinity}',
        b'{"id": "r", "status": "served", "ran_ms": ' + b"9" * 5000 + b"}",
        b"[" * 5000 + b"]" * 5000,
        b'{"id": "r", "status": "served"',
        '{"id": "r", "status": "served"}'.encode("utf-16"),
        b"\xef\xbb\xbf" + j({"id": "r", "status": "served"}),  # a BOM is not JSON
    ],
)
def test_dispensed_whole_payload_errors(payload: bytes) -> None:
    assert field_of(decode_dispensed, payload) == ""


def test_oversized_payloads_are_refused_before_parsing() -> None:
    padding = "x" * MAX_PAYLOAD_BYTES
    big = j({"id": "r", "status": "served", "pad": padding})
    with pytest.raises(PayloadError, match="limit") as info:
        decode_dispensed(big)
    assert info.value.field == ""
    for decoder in (decode_button, decode_states, decode_availability):
        assert field_of(decoder, b" " * (MAX_PAYLOAD_BYTES + 1)) == ""
    # just under the limit is still read
    fits = j({"food_capacity": 5, "pad": "x" * (MAX_PAYLOAD_BYTES - 100)})
    assert len(fits) <= MAX_PAYLOAD_BYTES
    assert decode_states(fits) == StatesReport(5)


def test_bytearray_is_read_and_non_bytes_refused() -> None:
    assert decode_availability(bytearray(b"online")) is True
    assert field_of(decode_availability, "online") == ""  # type: ignore[arg-type]


# --- states ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "level"),
    [
        (b'{"food_capacity": 0}', 0),
        (b'{"food_capacity": 100}', 100),
        (b'{"food_capacity": 42, "rssi": -60, "motor": {"left": "idle"}}', 42),
        (b'{"rssi": -60}', None),
        (b"{}", None),
        (b'{"food_capacity": null}', None),
    ],
)
def test_states(payload: bytes, level: int | None) -> None:
    assert decode_states(payload) == StatesReport(food_capacity=level)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (b'{"food_capacity": -1}', "food_capacity"),
        (b'{"food_capacity": 101}', "food_capacity"),
        (b'{"food_capacity": 50.0}', "food_capacity"),
        (b'{"food_capacity": 49.5}', "food_capacity"),
        (b'{"food_capacity": true}', "food_capacity"),
        (b'{"food_capacity": "50"}', "food_capacity"),
        (b"50", ""),
        (b"[]", ""),
        (b"not json", ""),
    ],
)
def test_states_errors_name_the_field(payload: bytes, field: str) -> None:
    assert field_of(decode_states, payload) == field


# --- availability ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "online"),
    [
        (b"online", True),
        (b"offline", False),
        (b"ONLINE", True),
        (b" Offline\n", False),
    ],
)
def test_availability(payload: bytes, online: bool) -> None:
    assert decode_availability(payload) is online


@pytest.mark.parametrize(
    "payload", [b"", b"on line", b"true", b'"online"', b"1", b"\xc3\x28", b"onlinex"]
)
def test_availability_errors(payload: bytes) -> None:
    assert field_of(decode_availability, payload) == ""


# --- rfc3339_ms ------------------------------------------------------------------------------


def reference(t_ms: int) -> str:
    t = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=t_ms)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.mark.parametrize(
    ("t_ms", "text"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (1, "1970-01-01T00:00:00.001Z"),
        (999, "1970-01-01T00:00:00.999Z"),
        (1000, "1970-01-01T00:00:01.000Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
        (951_782_400_000, "2000-02-29T00:00:00.000Z"),  # leap day of a century leap year
        (1_709_251_199_999, "2024-02-29T23:59:59.999Z"),
        (1_709_251_200_000, "2024-03-01T00:00:00.000Z"),
        (1_795_823_698_123, "2026-11-27T23:54:58.123Z"),
        (4_107_542_400_000, "2100-03-01T00:00:00.000Z"),  # 2100 is not a leap year
    ],
)
def test_rfc3339_ms_known_values(t_ms: int, text: str) -> None:
    assert rfc3339_ms(t_ms) == text
    assert rfc3339_ms(t_ms) == reference(t_ms)
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert parsed == datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=t_ms)


@given(st.integers(min_value=-62_135_596_800_000, max_value=253_402_300_799_999))
def test_rfc3339_ms_matches_datetime(t_ms: int) -> None:
    assert rfc3339_ms(t_ms) == reference(t_ms)
    assert len(rfc3339_ms(t_ms)) == 24


def test_rfc3339_ms_range() -> None:
    assert rfc3339_ms(-62_135_596_800_000) == "0001-01-01T00:00:00.000Z"
    assert rfc3339_ms(253_402_300_799_999) == "9999-12-31T23:59:59.999Z"
    with pytest.raises(ValueError, match="outside"):
        rfc3339_ms(253_402_300_800_000)
    with pytest.raises(ValueError, match="outside"):
        rfc3339_ms(-62_135_596_800_001)


# --- message_expiry_s ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expires_at_ms", "now_ms", "seconds"),
    [
        (10_000, 0, 10),
        (10_001, 0, 11),
        (10_999, 0, 11),
        (11_000, 1, 11),
        (1, 0, 1),
        (1000, 0, 1),
        (1001, 0, 2),
        (5, 5, 1),  # callers check expiry first; never 0, which means "no expiry"
        (0, 10_000, 1),
        (2**45, 0, 2**32 - 1),  # the property is four bytes
    ],
)
def test_message_expiry_rounds_up(expires_at_ms: int, now_ms: int, seconds: int) -> None:
    assert message_expiry_s(expires_at_ms, now_ms) == seconds


@given(st.integers(min_value=1, max_value=10**9), st.integers(min_value=0, max_value=10**13))
def test_message_expiry_never_early(left_ms: int, now_ms: int) -> None:
    seconds = message_expiry_s(now_ms + left_ms, now_ms)
    assert seconds * 1000 >= left_ms
    assert (seconds - 1) * 1000 < left_ms


# --- click_for_bowls -------------------------------------------------------------------------


def test_default_click_bowls() -> None:
    assert dict(DEFAULT_CLICK_BOWLS) == {
        ClickType.SINGLE: LEFT,
        ClickType.DOUBLE: RIGHT,
        ClickType.LONG: BOTH,
    }
    with pytest.raises(TypeError):
        DEFAULT_CLICK_BOWLS[ClickType.SINGLE] = RIGHT  # type: ignore[index]


def test_click_for_bowls_with_defaults() -> None:
    assert click_for_bowls(LEFT, DEFAULT_CLICK_BOWLS) is ClickType.SINGLE
    assert click_for_bowls(RIGHT, DEFAULT_CLICK_BOWLS) is ClickType.DOUBLE
    assert click_for_bowls(BOTH, DEFAULT_CLICK_BOWLS) is ClickType.LONG
    assert click_for_bowls((Bowl.RIGHT, Bowl.LEFT), DEFAULT_CLICK_BOWLS) is ClickType.LONG


def test_click_for_bowls_follows_the_mapping() -> None:
    swapped = {ClickType.SINGLE: RIGHT, ClickType.DOUBLE: LEFT, ClickType.LONG: BOTH}
    assert click_for_bowls(LEFT, swapped) is ClickType.DOUBLE
    assert click_for_bowls(RIGHT, swapped) is ClickType.SINGLE
    reordered = {ClickType.SINGLE: (Bowl.RIGHT, Bowl.LEFT)}
    assert click_for_bowls(BOTH, reordered) is ClickType.SINGLE
    # two gestures for the same bowls: the first click type wins
    twice = {ClickType.LONG: LEFT, ClickType.DOUBLE: LEFT}
    assert click_for_bowls(LEFT, twice) is ClickType.DOUBLE


def test_click_for_bowls_falls_back_to_defaults() -> None:
    only_both = {ClickType.SINGLE: BOTH}
    assert click_for_bowls(LEFT, only_both) is ClickType.SINGLE
    assert click_for_bowls(RIGHT, only_both) is ClickType.DOUBLE
    assert click_for_bowls(BOTH, only_both) is ClickType.SINGLE
    assert click_for_bowls(RIGHT, {}) is ClickType.DOUBLE
    with pytest.raises(ValueError, match="bowl"):
        click_for_bowls((), DEFAULT_CLICK_BOWLS)


# --- encode_action ---------------------------------------------------------------------------


def request(**changes: Any) -> FeedRequested:
    fields: dict[str, Any] = {
        "request_id": "01933b7e-8f3a-7c4e-9d2b-5f6a7b8c9d0e",
        "bowls": BOTH,
        "portion_ms": 1800,
        "expires_at_ms": 1_795_823_758_123,
        "origin": Origin.CLI,
    }
    fields.update(changes)
    return FeedRequested(**fields)


def test_encode_action_round_trip() -> None:
    req = request()
    payload = encode_action(req, event=ClickType.LONG, reported_time_ms=1_795_823_698_123)
    assert payload == payload.strip()
    assert b" " not in payload  # compact
    assert json.loads(payload) == {
        "event": "LONG",
        "reportedTime": "2026-11-27T23:54:58.123Z",
        "id": req.request_id,
        "bowls": ["left", "right"],
        "portion_ms": 1800,
        "expires_at_ms": 1_795_823_758_123,
    }


def test_encode_action_event_follows_argument_and_is_ascii() -> None:
    req = request(request_id="id-é", bowls=LEFT, click_type=ClickType.SINGLE)
    event = click_for_bowls(req.bowls, DEFAULT_CLICK_BOWLS)
    payload = encode_action(req, event=event, reported_time_ms=0)
    payload.decode("ascii")  # MicroPython-friendly: no raw non-ASCII bytes
    data = json.loads(payload)
    assert data["event"] == "SINGLE"
    assert data["id"] == "id-é"
    assert data["bowls"] == ["left"]
    assert data["reportedTime"] == "1970-01-01T00:00:00.000Z"
    assert all(isinstance(data[k], int) for k in ("portion_ms", "expires_at_ms"))


def test_encoded_action_is_not_a_dispensed_report_but_shares_the_id() -> None:
    req = request()
    sent = json.loads(encode_action(req, event=ClickType.LONG, reported_time_ms=5))
    ack = {"id": sent["id"], "status": "served", "bowls": sent["bowls"], "ran_ms": 1790}
    report = decode_dispensed(j(ack))
    assert report.request_id == req.request_id
    assert report.bowls == req.bowls


# --- nothing but PayloadError ----------------------------------------------------------------

DECODERS: list[Callable[[bytes], object]] = [
    decode_button,
    decode_dispensed,
    decode_states,
    decode_availability,
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["left", "right", "served", "refused", "single", "hold", "online"]),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(
            st.sampled_from(
                ["id", "status", "reason", "bowls", "ran_ms", "food_capacity", "action", "x"]
            )
            | st.text(max_size=8),
            children,
            max_size=6,
        )
    ),
    max_leaves=30,
)


def outcome(decoder: Callable[[bytes], object], payload: bytes) -> object:
    try:
        return decoder(payload)
    except PayloadError as e:
        assert isinstance(e.field, str)
        assert isinstance(e.reason, str)
        assert e.reason
        return e


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=512))
def test_arbitrary_bytes_give_a_value_or_payload_error(payload: bytes) -> None:
    for decoder in DECODERS:
        outcome(decoder, payload)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_arbitrary_json_gives_a_value_or_payload_error(value: Any) -> None:
    payload = json.dumps(value).encode()
    for decoder in DECODERS:
        result = outcome(decoder, payload)
        if decoder is decode_states and isinstance(result, StatesReport):
            level = result.food_capacity
            assert level is None or (type(level) is int and 0 <= level <= 100)
        if decoder is decode_dispensed and isinstance(result, DispensedReport):
            assert isinstance(value, dict)
            assert result.request_id == value["id"]
            assert 0 < len(result.request_id) <= 128
            assert result.ran_ms is None or type(result.ran_ms) is int
        if decoder is decode_button and not isinstance(result, PayloadError):
            assert result is None or isinstance(result, ClickType)


@settings(max_examples=200)
@given(
    st.fixed_dictionaries(
        {
            "id": st.text(min_size=1, max_size=40).filter(str.isprintable),
            "status": st.sampled_from(["served", "refused"]),
        },
        optional={
            "reason": st.none() | st.text(max_size=50).filter(str.isprintable),
            "bowls": st.sampled_from([["left"], ["right"], ["left", "right"], ["right", "left"]]),
            "ran_ms": st.integers(min_value=0, max_value=MAX_RAN_MS),
        },
    )
)
def test_valid_dispensed_reports_always_decode(data: dict[str, Any]) -> None:
    report = decode_dispensed(j(data))
    assert report.request_id == data["id"]
    assert report.status == data["status"]
    assert report.reason == data.get("reason")
    assert report.ran_ms == data.get("ran_ms")
    if "bowls" in data:
        assert report.bowls is not None
        assert sorted(report.bowls) == sorted(data["bowls"])


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize(
    "payload",
    [
        b"[" * 100_000,  # over the limit
        b"[" * 16_000,  # under the limit but deeper than the stack
        b'{"a":' * 3000 + b"1" + b"}" * 3000,
        b"1" * 10_000,  # an integer too long for int()
        b"\xed\xa0\x80",  # a UTF-8-encoded surrogate is not UTF-8
        b'"\\ud800"',
        b"\x00",
    ],
)
def test_hostile_payloads_give_payload_error(
    decoder: Callable[[bytes], object], payload: bytes
) -> None:
    with pytest.raises(PayloadError):
        decoder(payload)
