"""The event model: payloads round-trip through the stored JSON text, validation names the
field, and the stored text is one canonical string."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import PayloadError
from gateway.events import (
    PAYLOAD_TYPES,
    AlertCleared,
    AlertKind,
    AlertRaised,
    Bowl,
    ClickType,
    EventDeadLettered,
    EventType,
    FeedDispensed,
    FeederOffline,
    FeederOnline,
    FeedRejected,
    FeedRequested,
    FeedUnconfirmed,
    FoodLevelChanged,
    GatewayStarted,
    GatewayStopped,
    MealSkipped,
    Origin,
    Payload,
    RefusedBy,
    RejectReason,
    SchedulePaused,
    canonical_json,
    non_negative_int,
    optional,
    parse_bowls,
    payload_from_dict,
    require,
)

# Text the journal can store: any Unicode scalar value (lone surrogates cannot be UTF-8).
text = st.text(st.characters(codec="utf-8"), max_size=30)
ids = st.text(st.characters(codec="utf-8"), min_size=1, max_size=40)
non_negative = st.integers(min_value=0, max_value=2**63)
bowls = st.sampled_from([(Bowl.LEFT,), (Bowl.RIGHT,), (Bowl.LEFT, Bowl.RIGHT)])
request_fields: dict[str, Any] = {
    "request_id": ids,
    "bowls": bowls,
    "portion_ms": non_negative,
    "expires_at_ms": non_negative,
    "origin": st.sampled_from(Origin),
    "button": st.none() | text,
    "click_type": st.none() | st.sampled_from(ClickType),
    "schedule": st.none() | text,
    "meal_at_ms": st.none() | non_negative,
}

payloads: st.SearchStrategy[Payload] = st.one_of(
    st.builds(FeedRequested, **request_fields),
    st.builds(
        FeedRejected,
        **request_fields,
        reason=st.sampled_from([r.value for r in RejectReason]) | text,
        refused_by=st.sampled_from(RefusedBy),
    ),
    st.builds(FeedDispensed, request_id=ids, bowls=bowls, ran_ms=non_negative),
    st.builds(FeedUnconfirmed, request_id=ids, bowls=bowls, waited_ms=non_negative),
    st.builds(
        FoodLevelChanged,
        level=st.integers(-(2**63), 2**63),
        previous=st.none() | st.integers(-(2**63), 2**63),
    ),
    st.just(FeederOnline()),
    st.just(FeederOffline()),
    st.builds(GatewayStarted, version=text, clock_synced=st.booleans(), gateway_id=text),
    st.builds(GatewayStopped, version=text, clock_synced=st.booleans(), reason=text),
    st.builds(MealSkipped, schedule=text, meal_at_ms=non_negative),
    st.builds(SchedulePaused, until_ms=non_negative),
    st.builds(AlertRaised, kind=st.sampled_from(AlertKind), subject=text, message=text),
    st.builds(AlertCleared, kind=st.sampled_from(AlertKind), subject=text),
)


def round_trip(payload: Payload) -> Payload:
    stored = canonical_json(payload.to_dict())
    return payload_from_dict(payload.TYPE.value, json.loads(stored))


# --- round trips -----------------------------------------------------------------------------


@given(payloads)
def test_every_payload_round_trips_through_its_stored_text(payload: Payload) -> None:
    back = round_trip(payload)
    assert type(back) is type(payload)
    assert back == payload
    # The stored text is a fixed point: storing the parsed payload again gives the same bytes.
    assert canonical_json(back.to_dict()) == canonical_json(payload.to_dict())


EXAMPLES: list[Payload] = [
    FeedRequested(
        request_id="0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
        bowls=(Bowl.LEFT, Bowl.RIGHT),
        portion_ms=10_000,
        expires_at_ms=1_800_000_300_000,
        origin=Origin.BUTTON,
        button="kitchen",
        click_type=ClickType.LONG,
    ),
    FeedRejected(
        request_id="r2",
        bowls=(Bowl.RIGHT,),
        portion_ms=5_000,
        expires_at_ms=1,
        origin=Origin.CLOUD,
        reason="too-soon",
        refused_by=RefusedBy.GATEWAY,
    ),
    FeedDispensed(request_id="r3", bowls=(Bowl.LEFT,), ran_ms=9_876),
    FeedUnconfirmed(request_id="r4", bowls=(Bowl.RIGHT,), waited_ms=60_000),
    FoodLevelChanged(level=40, previous=55),
    FeederOnline(),
    FeederOffline(),
    GatewayStarted(version="1.2.3", clock_synced=False, gateway_id="pi"),
    GatewayStopped(version="1.2.3", clock_synced=True, reason="signal"),
    EventDeadLettered(
        sink="eventbridge", dead_seq=12, dead_event_id="e12", error="entry too large"
    ),
    MealSkipped(schedule="breakfast", meal_at_ms=1_800_000_000_000),
    SchedulePaused(until_ms=1_800_086_400_000),
    AlertRaised(kind=AlertKind.FOOD_LOW, message="food at 10% (below 20%)"),
    AlertCleared(kind=AlertKind.SINK_BACKLOG, subject="eventbridge"),
]


def test_a_request_without_a_meal_stores_the_same_text_as_before() -> None:
    # Old journals' rows must hash the same: the meal fields are stored only when set.
    request = EXAMPLES[0]
    assert isinstance(request, FeedRequested)
    assert "schedule" not in request.to_dict()
    assert "meal_at_ms" not in request.to_dict()


def test_a_scheduled_rejection_keeps_its_meal() -> None:
    request = FeedRequested(
        request_id="meal:breakfast:2026-03-29",
        bowls=(Bowl.LEFT,),
        portion_ms=1,
        expires_at_ms=2,
        origin=Origin.SCHEDULE,
        schedule="breakfast",
        meal_at_ms=1_000,
    )
    rejected = FeedRejected.of(request, RejectReason.MISSED.value, RefusedBy.GATEWAY)
    assert round_trip(rejected) == rejected
    assert rejected.to_dict()["meal_at_ms"] == 1_000


def test_an_unknown_alert_kind_is_refused() -> None:
    with pytest.raises(PayloadError, match="kind"):
        payload_from_dict("AlertRaised", {"kind": "cat-is-hungry"})


def test_examples_cover_every_event_type() -> None:
    assert {p.TYPE for p in EXAMPLES} == set(EventType) == set(PAYLOAD_TYPES)


@pytest.mark.parametrize("payload", EXAMPLES, ids=lambda p: p.TYPE.value)
def test_example_round_trips_and_keeps_its_type(payload: Payload) -> None:
    assert round_trip(payload) == payload
    assert PAYLOAD_TYPES[payload.TYPE] is type(payload)


def test_request_data_is_stored_with_the_documented_keys() -> None:
    data = EXAMPLES[0].to_dict()
    assert data == {
        "request_id": "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
        "bowls": ["left", "right"],
        "portion_ms": 10_000,
        "expires_at_ms": 1_800_000_300_000,
        "origin": "button",
        "button": "kitchen",
        "click_type": "LONG",
    }
    rejected = FeedRejected.of(EXAMPLES[0], "cap", RefusedBy.GATEWAY).to_dict()  # type: ignore[arg-type]
    assert rejected == {**data, "reason": "cap", "refused_by": "gateway"}


def test_optional_request_fields_are_left_out_when_absent() -> None:
    data = EXAMPLES[1].to_dict()
    assert "button" not in data
    assert "click_type" not in data


def test_bowls_are_read_in_canonical_order() -> None:
    data = {"request_id": "r", "bowls": ["right", "left"], "ran_ms": 1}
    assert FeedDispensed.from_dict(data).bowls == (Bowl.LEFT, Bowl.RIGHT)


def test_unknown_event_type_names_the_type_field() -> None:
    with pytest.raises(PayloadError) as info:
        payload_from_dict("FeedTeleported", {})
    assert info.value.field == "type"


# --- validation names the field --------------------------------------------------------------


def test_require_missing_names_the_key() -> None:
    with pytest.raises(PayloadError) as info:
        require({"a": 1}, "b", int)
    assert info.value.field == "b"
    assert "missing" in str(info.value)


def test_require_wrong_type_names_the_key_and_the_kinds() -> None:
    with pytest.raises(PayloadError) as info:
        require({"n": "12"}, "n", int)
    assert info.value.field == "n"
    assert "integer" in info.value.reason
    assert "str" in info.value.reason


@pytest.mark.parametrize("value", [True, False])
def test_require_refuses_a_bool_where_an_int_is_asked(value: bool) -> None:
    with pytest.raises(PayloadError) as info:
        require({"ran_ms": value}, "ran_ms", int)
    assert info.value.field == "ran_ms"
    assert "boolean" in info.value.reason


def test_require_accepts_a_bool_where_a_bool_is_asked() -> None:
    assert require({"ok": True}, "ok", bool) is True
    assert require({"n": 3}, "n", (int, str)) == 3


def test_require_refuses_an_int_where_a_bool_is_asked() -> None:
    with pytest.raises(PayloadError) as info:
        GatewayStarted.from_dict({"version": "1", "clock_synced": 1})
    assert info.value.field == "clock_synced"


def test_optional_treats_null_as_absent_but_checks_a_present_value() -> None:
    assert optional({"b": None}, "b", str) is None
    assert optional({}, "b", str) is None
    with pytest.raises(PayloadError) as info:
        optional({"b": 5}, "b", str)
    assert info.value.field == "b"


def test_non_negative_int_names_the_key() -> None:
    assert non_negative_int({"x": 0}, "x") == 0
    with pytest.raises(PayloadError) as info:
        non_negative_int({"x": -1}, "x")
    assert info.value.field == "x"


@pytest.mark.parametrize(
    "value",
    [[], "left", None, 1, ["middle"], ["left", "left"], ["left", 1], [True]],
    ids=["empty", "string", "null", "int", "unknown", "twice", "non-string", "bool"],
)
def test_parse_bowls_errors_name_the_field(value: Any) -> None:
    with pytest.raises(PayloadError) as info:
        parse_bowls(value)
    assert info.value.field == "bowls"
    with pytest.raises(PayloadError) as info:
        parse_bowls(value, key="feeding.clicks")
    assert info.value.field == "feeding.clicks"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (["left"], (Bowl.LEFT,)),
        (["right"], (Bowl.RIGHT,)),
        (["left", "right"], (Bowl.LEFT, Bowl.RIGHT)),
        (("right", "left"), (Bowl.LEFT, Bowl.RIGHT)),
    ],
)
def test_parse_bowls_returns_canonical_order(value: Any, expected: tuple[Bowl, ...]) -> None:
    assert parse_bowls(value) == expected


MISSING = object()
GOOD_REQUEST: dict[str, Any] = {
    "request_id": "r1",
    "bowls": ["left"],
    "portion_ms": 1000,
    "expires_at_ms": 2000,
    "origin": "cli",
}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"request_id": MISSING}, "request_id"),
        ({"request_id": 12}, "request_id"),
        ({"bowls": []}, "bowls"),
        ({"bowls": "left"}, "bowls"),
        ({"portion_ms": -1}, "portion_ms"),
        ({"portion_ms": True}, "portion_ms"),
        ({"portion_ms": 1.5}, "portion_ms"),
        ({"expires_at_ms": "soon"}, "expires_at_ms"),
        ({"origin": "martian"}, "origin"),
        ({"button": 7}, "button"),
        ({"click_type": "TRIPLE"}, "click_type"),
        ({"click_type": "single"}, "click_type"),
    ],
)
def test_request_from_dict_names_the_bad_field(change: dict[str, Any], field: str) -> None:
    data = {k: v for k, v in {**GOOD_REQUEST, **change}.items() if v is not MISSING}
    with pytest.raises(PayloadError) as info:
        FeedRequested.from_dict(data)
    assert info.value.field == field


@pytest.mark.parametrize(
    ("change", "field"),
    [({"reason": MISSING}, "reason"), ({"refused_by": "cat"}, "refused_by")],
)
def test_rejection_from_dict_names_the_bad_field(change: dict[str, Any], field: str) -> None:
    data = {**GOOD_REQUEST, "reason": "cap", "refused_by": "gateway", **change}
    data = {k: v for k, v in data.items() if v is not MISSING}
    with pytest.raises(PayloadError) as info:
        FeedRejected.from_dict(data)
    assert info.value.field == field


@pytest.mark.parametrize(
    ("cls", "data", "field"),
    [
        (FeedDispensed, {"request_id": "r", "bowls": ["left"], "ran_ms": False}, "ran_ms"),
        (FeedDispensed, {"request_id": "r", "bowls": ["left"], "ran_ms": -5}, "ran_ms"),
        (FeedUnconfirmed, {"request_id": "r", "bowls": ["left"]}, "waited_ms"),
        (FoodLevelChanged, {"level": True}, "level"),
        (FoodLevelChanged, {"level": 5, "previous": "4"}, "previous"),
        (GatewayStopped, {"clock_synced": True}, "version"),
    ],
)
def test_other_payloads_name_the_bad_field(cls: Any, data: dict[str, Any], field: str) -> None:
    with pytest.raises(PayloadError) as info:
        cls.from_dict(data)
    assert info.value.field == field


# --- canonical JSON --------------------------------------------------------------------------


def test_canonical_json_is_compact_sorted_and_unescaped_utf8() -> None:
    stored = canonical_json({"b": 1, "a": 'say "hi"\nthen go', "c": ["é", None, True]})
    assert stored == '{"a":"say \\"hi\\"\\nthen go","b":1,"c":["é",null,true]}'
    assert "\n" not in stored
    assert " " not in canonical_json({"z": [1, 2], "y": {"x": 1}})


def test_canonical_json_does_not_depend_on_insertion_order() -> None:
    assert canonical_json({"a": 1, "b": {"d": 1, "c": 2}}) == canonical_json(
        {"b": {"c": 2, "d": 1}, "a": 1}
    )


@given(st.dictionaries(text, text | st.integers() | st.none(), max_size=8))
def test_canonical_json_is_stable_and_single_line(data: dict[str, Any]) -> None:
    stored = canonical_json(data)
    assert "\n" not in stored
    assert "\r" not in stored
    assert canonical_json(dict(reversed(list(data.items())))) == stored
    assert json.loads(stored) == data
    assert canonical_json(json.loads(stored)) == stored
    keys = list(json.loads(stored))
    assert keys == sorted(keys)


# --- EventBridge detail-type -----------------------------------------------------------------


DETAIL_TYPES = {
    EventType.FEED_REQUESTED: "Feed Requested",
    EventType.FEED_REJECTED: "Feed Rejected",
    EventType.FEED_DISPENSED: "Feed Dispensed",
    EventType.FEED_UNCONFIRMED: "Feed Unconfirmed",
    EventType.FOOD_LEVEL_CHANGED: "Food Level Changed",
    EventType.FEEDER_ONLINE: "Feeder Online",
    EventType.FEEDER_OFFLINE: "Feeder Offline",
    EventType.GATEWAY_STARTED: "Gateway Started",
    EventType.GATEWAY_STOPPED: "Gateway Stopped",
    EventType.EVENT_DEAD_LETTERED: "Event Dead Lettered",
    EventType.MEAL_SKIPPED: "Meal Skipped",
    EventType.SCHEDULE_PAUSED: "Schedule Paused",
    EventType.ALERT_RAISED: "Alert Raised",
    EventType.ALERT_CLEARED: "Alert Cleared",
}


@pytest.mark.parametrize("event_type", list(EventType), ids=str)
def test_detail_type_spaces_the_words(event_type: EventType) -> None:
    assert event_type.detail_type == DETAIL_TYPES[event_type]
    assert event_type.detail_type.replace(" ", "") == event_type.value
