"""The cloud detail (gateway.cloud_event): the payload as the journal stores it joined to the
envelope, the same text whether the event was read back from the journal or built in memory,
and equal to encoding the contract's dict. Pure: rows are built as the reader selects them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_events import EXAMPLES, ids, payloads, text

from gateway.cloud_event import (
    ReplayMark,
    click_of,
    click_type_of,
    cloud_detail,
    detail_json,
    stored_click_type,
    stored_detail,
)
from gateway.errors import PayloadError
from gateway.eventbridge_entries import EntrySpec, build_entry
from gateway.events import (
    PAYLOAD_KEYS,
    Bowl,
    ClickType,
    Event,
    FeedRejected,
    FeedRequested,
    Origin,
    Payload,
    canonical_json,
    parse_bowls,
    require,
)
from gateway.journal import Journal, JournalReader, open_new_event
from gateway.journal.rows import to_event
from gateway.stored_event import StoredEvent, decode, stored_of

HASH = "ab" * 32


def event_of(
    payload: Payload,
    *,
    seq: int = 7,
    event_id: str = "0190a1b2-0000-7000-8000-000000000007",
    origin: Origin = Origin.BUTTON,
    recovered: bool = False,
    clock_synced: bool = True,
) -> Event:
    return Event(
        seq, event_id, 1_800_000_000_123, clock_synced, origin, payload, recovered, "", HASH
    )


def row_of(event: Event, payload_text: str | None = None) -> tuple[Any, ...]:
    """The row the reader selects for ``event`` (gateway.journal.rows.COLUMNS)."""
    stored = canonical_json(event.payload.to_dict()) if payload_text is None else payload_text
    return (
        event.seq,
        event.event_id,
        event.type.value,
        event.occurred_at_ms,
        int(event.clock_synced),
        event.origin.value,
        int(event.recovered),
        stored,
        event.prev_hash,
        event.hash,
    )


def contract_detail(
    event: Event, gateway_id: str, replay: ReplayMark | None = None
) -> dict[str, Any]:
    """The detail as the contract (docs/architecture.md, "Cloud") describes it, built as a
    dict: the payload, the event's origin unless the payload has its own, the envelope."""
    detail: dict[str, Any] = json.loads(canonical_json(event.payload.to_dict()))
    detail.setdefault("origin", event.origin.value)
    detail.update(
        {
            "type": event.type.value,
            "event-id": event.event_id,
            "gateway-id": gateway_id,
            "seq": event.seq,
            "chain-hash": event.hash,
            "occurred-at-ms": event.occurred_at_ms,
            "clock-synced": event.clock_synced,
        }
    )
    if event.recovered:
        detail["recovered"] = True
    payload = event.payload
    if (
        isinstance(payload, FeedRequested | FeedRejected)
        and payload.origin is Origin.BUTTON
        and payload.click_type is not None
    ):
        detail["click-type"] = payload.click_type.value
    if replay is not None:
        detail["replay"] = {
            "name": replay.name,
            "original-seq": event.seq,
            "original-time-ms": event.occurred_at_ms,
        }
    return detail


@given(
    payload=payloads,
    event_id=ids,
    gateway_id=text,
    origin=st.sampled_from(Origin),
    recovered=st.booleans(),
    clock_synced=st.booleans(),
    replay=st.none() | text.map(ReplayMark),
)
def test_the_detail_is_the_contract_dict_written_as_one_compact_line(
    *,
    payload: Payload,
    event_id: str,
    gateway_id: str,
    origin: Origin,
    recovered: bool,
    clock_synced: bool,
    replay: ReplayMark | None,
) -> None:
    event = event_of(
        payload, event_id=event_id, origin=origin, recovered=recovered, clock_synced=clock_synced
    )
    line = detail_json(event, gateway_id, replay)
    assert json.loads(line) == contract_detail(event, gateway_id, replay)
    assert "\n" not in line
    # No key twice (json.loads would keep the last one silently).
    pairs = json.loads(line, object_pairs_hook=lambda kv: kv)
    assert len({k for k, _ in pairs}) == len(pairs)
    assert cloud_detail(event, gateway_id, replay) == json.loads(line)


@given(payload=payloads, gateway_id=text)
def test_an_event_read_back_sends_the_same_text_as_the_one_built_in_memory(
    payload: Payload, gateway_id: str
) -> None:
    built = event_of(payload)
    read = to_event(row_of(built))
    assert read == built
    assert read.stored_payload == canonical_json(payload.to_dict())
    assert built.stored_payload == ""
    assert detail_json(read, gateway_id) == detail_json(built, gateway_id)


@pytest.mark.parametrize("payload", EXAMPLES, ids=lambda p: p.TYPE.value)
def test_the_payload_keys_come_first_as_stored(payload: Payload) -> None:
    event = to_event(row_of(event_of(payload)))
    line = detail_json(event, "pi")
    stored = canonical_json(payload.to_dict())
    if stored == "{}":
        assert line.startswith('{"origin":')
    else:
        assert line.startswith(stored[:-1] + ",")


@pytest.mark.parametrize("payload", EXAMPLES, ids=lambda p: p.TYPE.value)
def test_a_payload_writes_only_its_own_fields(payload: Payload) -> None:
    assert set(payload.to_dict()) <= PAYLOAD_KEYS[type(payload)]


def test_a_stored_payload_with_a_key_the_type_does_not_know_is_not_sent_as_stored() -> None:
    """A row from a newer version, or edited by hand: the detail says what the typed payload
    says, never more (and never a key twice)."""
    event = event_of(EXAMPLES[0])
    data = EXAMPLES[0].to_dict()
    data["seq"] = 999_999  # would collide with nothing, but the envelope is ours to write
    data["extra"] = "x"
    read = to_event(row_of(event, canonical_json(data)))
    assert read.stored_payload == ""
    detail = json.loads(detail_json(read, "pi"))
    assert "extra" not in detail
    assert detail["seq"] == event.seq


def test_a_payload_that_is_not_an_object_is_not_kept_as_stored() -> None:
    # FeederOnline reads nothing from its object, so a list gets through its from_dict.
    event = event_of(EXAMPLES[5])
    read = to_event(row_of(event, "[]"))
    assert read.stored_payload == ""
    assert json.loads(detail_json(read, "pi"))["type"] == "FeederOnline"


@given(
    payload=payloads,
    gateway_id=text,
    recovered=st.booleans(),
    replay=st.none() | text.map(ReplayMark),
)
def test_an_event_sent_as_stored_reads_as_its_decoded_event(
    payload: Payload, gateway_id: str, recovered: bool, replay: ReplayMark | None
) -> None:
    """The EventBridge sink sends rows as stored, without decoding them: the same entry,
    byte for byte, as the decoded event gives."""
    event = event_of(payload, recovered=recovered)
    stored = StoredEvent._make(row_of(event))
    assert stored == stored_of(event)
    assert decode(stored) == event
    assert stored_detail(stored, gateway_id, replay) == (
        detail_json(event, gateway_id, replay),
        click_type_of(event),
    )
    spec = EntrySpec(bus="b", source="s", gateway_id=gateway_id, replay=replay)
    assert build_entry(stored, spec) == build_entry(event, spec)


@given(payloads)
def test_the_stored_click_rule_is_the_typed_one(payload: Payload) -> None:
    data = json.loads(canonical_json(payload.to_dict()))
    assert stored_click_type(payload.TYPE.value, data) == click_of(payload)


def test_a_stored_payload_with_an_unknown_key_is_sent_decoded() -> None:
    event = event_of(EXAMPLES[4])
    data = EXAMPLES[4].to_dict() | {"seq": 1, "extra": True}
    stored = StoredEvent._make(row_of(event, canonical_json(data)))
    detail, _ = stored_detail(stored, "pi")
    assert detail == detail_json(event, "pi")
    assert "extra" not in json.loads(detail)


def test_a_stored_payload_that_is_not_an_object_is_sent_decoded() -> None:
    event = event_of(EXAMPLES[5])  # FeederOnline reads nothing from its object
    stored = StoredEvent._make(row_of(event, "[]"))
    assert stored_detail(stored, "pi")[0] == detail_json(event, "pi")


def test_a_stored_type_this_version_does_not_know_is_refused_by_name() -> None:
    row = list(row_of(event_of(EXAMPLES[5])))
    row[2] = "FeederExploded"
    stored = StoredEvent._make(row)
    with pytest.raises(PayloadError) as info:
        build_entry(stored, EntrySpec(bus="b", source="s", gateway_id="pi"))
    assert info.value.field == "type"


def test_a_stored_request_with_a_bad_click_type_is_refused_by_name() -> None:
    data = EXAMPLES[0].to_dict() | {"click_type": "TRIPLE"}
    stored = StoredEvent._make(row_of(event_of(EXAMPLES[0]), canonical_json(data)))
    with pytest.raises(PayloadError) as info:
        stored_detail(stored, "pi")
    assert info.value.field == "click_type"


def test_click_type_is_sent_only_for_button_requests() -> None:
    button = EXAMPLES[0]
    assert click_type_of(event_of(button)) is ClickType.LONG
    assert json.loads(detail_json(event_of(button), "pi"))["click-type"] == "LONG"
    cloud = EXAMPLES[1]
    assert "click-type" not in json.loads(detail_json(event_of(cloud), "pi"))


async def test_events_appended_and_read_back_carry_the_stored_text(tmp_path: Path) -> None:
    """The appender's events (served from memory to a sink that is caught up) and the
    reader's (a backlog) carry the text the journal stored, so both send the same detail."""
    path = tmp_path / "journal.db"
    journal = Journal.open(path)
    journal.start()
    try:
        appended = [
            await journal.append(
                open_new_event(
                    p, origin=Origin.GATEWAY, now_ms=1_800_000_000_000, clock_synced=True
                )
            )
            for p in EXAMPLES
        ]
        recent = journal.read_visible(0, len(EXAMPLES))
        live = journal.read_stored(0, 100)
        assert [s.seq for s in journal.read_stored(2, 100, upto=4)] == [3, 4]
        assert journal.read_stored(journal.durable_seq, 100) == []
    finally:
        await journal.aclose()
    with JournalReader.open(path) as reader:
        backlog = list(reader.query())
        stored = reader.read_stored_after(0, 100)
    assert [decode(s) for s in stored] == backlog
    assert live == stored
    assert [s.payload for s in stored] == [e.stored_payload for e in backlog]
    assert [e.stored_payload for e in appended] == [e.stored_payload for e in backlog]
    assert [e.stored_payload for e in recent] == [e.stored_payload for e in backlog]
    for a, b in zip(appended, backlog, strict=True):
        assert a.stored_payload == canonical_json(a.payload.to_dict())
        assert detail_json(a, "pi") == detail_json(b, "pi")


# --- the validators' fast paths say the same as the full checks -------------------------------


@pytest.mark.parametrize(
    "value",
    [[["left"]], [{"a": 1}], ["left", ["right"]], [None]],
    ids=["nested-list", "object", "mixed", "null"],
)
def test_bowls_holding_unhashable_or_odd_things_are_refused_by_name(value: Any) -> None:
    with pytest.raises(PayloadError) as info:
        parse_bowls(value)
    assert info.value.field == "bowls"


def test_bowls_given_as_members_read_as_their_values() -> None:
    assert parse_bowls([Bowl.RIGHT, Bowl.LEFT]) == (Bowl.LEFT, Bowl.RIGHT)
    assert parse_bowls(["right", "left"]) == (Bowl.LEFT, Bowl.RIGHT)


def test_require_accepts_a_subclass_of_the_kind() -> None:
    assert require({"k": Origin.BUTTON}, "k", str) is Origin.BUTTON


def test_require_still_refuses_a_missing_key_whose_value_would_be_the_sentinel() -> None:
    with pytest.raises(PayloadError, match="missing"):
        require({}, "k", object)
