"""EventBridge entries, sizes, batches and replies: the pure part, without any server."""

from __future__ import annotations

import dataclasses
import itertools
import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.eventbridge_entries import (
    MAX_BATCH_BYTES,
    MAX_ENTRIES,
    DeadLetterStep,
    Disposition,
    Entry,
    EntrySpec,
    SendStep,
    build_entry,
    classify,
    entry_size,
    interpret,
    iter_plan,
    plan,
    resume_seq,
)
from gateway.events import (
    Bowl,
    ClickType,
    Event,
    EventType,
    FeederOnline,
    FeedRejected,
    FeedRequested,
    FoodLevelChanged,
    GatewayStarted,
    Origin,
    Payload,
    RefusedBy,
)

SPEC = EntrySpec(bus="feedmyfurbabies", source="com.feedmyfurbabies", gateway_id="gw-1")
T0 = 1_800_000_000_123


def event(
    seq: int, payload: Payload, *, held: bool = False, origin: Origin = Origin.GATEWAY
) -> Event:
    return Event(
        seq=seq,
        event_id=f"0190a000-0000-7000-8000-{seq:012d}",
        occurred_at_ms=T0 + seq,
        clock_synced=True,
        origin=origin,
        payload=payload,
        prev_hash="p" * 64,
        hash=f"{seq:064x}",
        held=held,
    )


def press(seq: int, click: ClickType = ClickType.SINGLE) -> Event:
    request = FeedRequested(
        request_id=f"req-{seq}",
        bowls=(Bowl.LEFT,),
        portion_ms=5000,
        expires_at_ms=T0 + 300_000,
        origin=Origin.BUTTON,
        button="kitchen",
        click_type=click,
    )
    return event(seq, request, origin=Origin.BUTTON)


def cli_feed(seq: int) -> Event:
    request = FeedRequested(
        request_id=f"req-{seq}",
        bowls=(Bowl.RIGHT,),
        portion_ms=5000,
        expires_at_ms=T0 + 300_000,
        origin=Origin.CLI,
    )
    return event(seq, request, origin=Origin.CLI)


def started(seq: int, version_len: int = 5) -> Event:
    return event(seq, GatewayStarted(version="v" * version_len, clock_synced=True))


def base_started_size() -> int:
    return build_entry(started(1, 0), SPEC).size


# --- entries -------------------------------------------------------------------------------


def test_entry_carries_the_contract_fields() -> None:
    e = press(7, ClickType.DOUBLE)
    entry = build_entry(e, SPEC)
    req = entry.request
    assert req["EventBusName"] == "feedmyfurbabies"
    assert req["Source"] == "com.feedmyfurbabies"
    assert req["DetailType"] == "Feed Requested"
    time = req["Time"]
    assert isinstance(time, datetime)
    assert time.tzinfo is not None
    assert time.utcoffset() == timedelta(0)
    assert time == datetime(2027, 1, 15, 8, 0, 0, 130_000, tzinfo=UTC)
    assert int(time.timestamp() * 1000) == e.occurred_at_ms
    text = req["Detail"]
    assert ", " not in text
    assert ": " not in text  # compact
    detail = json.loads(text)
    assert detail["event-id"] == e.event_id
    assert detail["gateway-id"] == "gw-1"
    assert detail["seq"] == 7
    assert detail["chain-hash"] == e.hash
    assert detail["click-type"] == "DOUBLE"
    assert detail["request_id"] == "req-7"
    assert "Resources" not in req


def test_click_type_only_on_button_requests() -> None:
    cli = json.loads(build_entry(cli_feed(1), SPEC).request["Detail"])
    assert "click-type" not in cli
    rejected = FeedRejected.of(press(2).payload, "cap", RefusedBy.GATEWAY)  # type: ignore[arg-type]
    det = json.loads(build_entry(event(2, rejected), SPEC).request["Detail"])
    assert det["click-type"] == "SINGLE"
    level = json.loads(build_entry(event(3, FoodLevelChanged(40, 50)), SPEC).request["Detail"])
    assert "click-type" not in level


def test_detail_type_is_the_type_spaced() -> None:
    for t, expected in [
        (EventType.FEEDER_ONLINE, "Feeder Online"),
        (EventType.EVENT_DEAD_LETTERED, "Event Dead Lettered"),
        (EventType.GATEWAY_STARTED, "Gateway Started"),
    ]:
        assert t.detail_type == expected
    assert build_entry(event(1, FeederOnline()), SPEC).request["DetailType"] == "Feeder Online"


def test_size_is_counted_as_aws_documents_it() -> None:
    # Time 14 bytes if present; Source, DetailType, Detail and each Resource as UTF-8 bytes.
    req = {
        "EventBusName": "not counted at all",
        "Source": "src",
        "DetailType": "Déjà vu",  # 9 bytes in UTF-8, 7 characters
        "Detail": '{"a":"ü"}',  # 10 bytes
        "Time": datetime.now(UTC),
        "Resources": ["arn:x", "ü"],
    }
    assert entry_size(req) == 14 + 3 + 9 + 10 + 5 + 2
    del req["Time"]
    del req["Resources"]
    assert entry_size(req) == 3 + 9 + 10


def test_entry_size_matches_its_request() -> None:
    entry = build_entry(press(3), SPEC)
    r = entry.request
    expected = 14 + sum(len(r[k].encode()) for k in ("Source", "DetailType", "Detail"))
    assert entry.size == expected


def test_non_ascii_detail_is_counted_in_bytes() -> None:
    e = event(1, GatewayStarted(version="ü" * 1000, clock_synced=True))
    entry = build_entry(e, SPEC)
    assert "ü" * 1000 in entry.request["Detail"]  # UTF-8, not \u escapes
    assert entry.size == base_started_size() + 2000


def test_oversized_boundary() -> None:
    base = base_started_size()
    at_limit = build_entry(started(1, MAX_BATCH_BYTES - base), SPEC)
    over = build_entry(started(1, MAX_BATCH_BYTES - base + 1), SPEC)
    assert at_limit.size == MAX_BATCH_BYTES
    assert not at_limit.oversized
    assert over.oversized
    steps = plan([at_limit.stored], SPEC)
    assert isinstance(steps[0], SendStep)
    steps = plan([over.stored], SPEC)
    assert isinstance(steps[0], DeadLetterStep)
    assert "262145 bytes" in steps[0].error


# --- planning ------------------------------------------------------------------------------


def test_ten_entries_per_call() -> None:
    steps = plan([press(i) for i in range(1, 24)], SPEC)
    assert [len(s.entries) for s in steps if isinstance(s, SendStep)] == [10, 10, 3]
    assert [(s.first_seq, s.through_seq) for s in steps] == [(1, 10), (11, 20), (21, 23)]


def test_size_closes_a_batch_before_ten() -> None:
    big = MAX_BATCH_BYTES // 3
    events = [started(i, big) for i in range(1, 6)]
    steps = plan(events, SPEC)
    assert [len(s.entries) for s in steps if isinstance(s, SendStep)] == [2, 2, 1]
    assert all(isinstance(s, SendStep) and s.size <= MAX_BATCH_BYTES for s in steps)


def test_oversized_is_its_own_step_and_does_not_block() -> None:
    huge = MAX_BATCH_BYTES + 10
    events = [press(1), press(2), started(3, huge), press(4)]
    steps = plan(events, SPEC)
    assert isinstance(steps[0], SendStep)
    assert [e.seq for e in steps[0].entries] == [1, 2]
    assert isinstance(steps[1], DeadLetterStep)
    assert steps[1].entry.seq == 3
    assert isinstance(steps[2], SendStep)
    assert [e.seq for e in steps[2].entries] == [4]


def test_filtered_events_are_passed_over_inside_steps() -> None:
    spec = EntrySpec(
        bus="b", source="s", gateway_id="g", event_types=frozenset({EventType.FEED_REQUESTED})
    )
    events = [
        event(1, FeederOnline()),
        press(2),
        event(3, FoodLevelChanged(10, None)),
        press(4),
        event(5, FeederOnline()),
    ]
    steps = plan(events, spec)
    assert len(steps) == 1
    step = steps[0]
    assert isinstance(step, SendStep)
    assert [e.seq for e in step.entries] == [2, 4]
    assert (step.first_seq, step.through_seq) == (1, 5)


def test_only_filtered_events_make_an_empty_step() -> None:
    spec = EntrySpec(
        bus="b", source="s", gateway_id="g", event_types=frozenset({EventType.FEED_DISPENSED})
    )
    steps = plan([press(1), press(2)], spec)
    assert steps == [SendStep(1, 2, ())]


def test_plan_stops_at_the_first_held_event() -> None:
    events = [press(1), press(2), event(3, FeederOnline(), held=True), press(4)]
    steps = plan(events, SPEC)
    assert len(steps) == 1
    assert steps[0].through_seq == 2
    assert plan([event(1, FeederOnline(), held=True)], SPEC) == []


def test_max_entries_narrows_batches() -> None:
    steps = plan([press(i) for i in range(1, 4)], SPEC, max_entries=1)
    assert [len(s.entries) for s in steps if isinstance(s, SendStep)] == [1, 1, 1]
    with pytest.raises(ValueError, match="max_entries"):
        plan([press(1)], SPEC, max_entries=11)


# --- the batch invariants, for any mix ------------------------------------------------------

KINDS = st.sampled_from(["press", "cli", "level", "online", "big", "huge"])


def make(seq: int, kind: str, size: int) -> Event:
    if kind == "press":
        return press(seq)
    if kind == "cli":
        return cli_feed(seq)
    if kind == "level":
        return event(seq, FoodLevelChanged(seq % 100, None))
    if kind == "online":
        return event(seq, FeederOnline())
    if kind == "big":
        return started(seq, size)
    return started(seq, MAX_BATCH_BYTES + size)


@st.composite
def journals(draw: st.DrawFn) -> tuple[list[Event], EntrySpec, int]:
    start = draw(st.integers(0, 1000))
    kinds = draw(st.lists(st.tuples(KINDS, st.integers(0, 120_000)), min_size=0, max_size=60))
    held_from = draw(st.one_of(st.none(), st.integers(0, 60)))
    events = [
        dataclasses.replace(
            make(start + i + 1, kind, size), held=held_from is not None and i >= held_from
        )
        for i, (kind, size) in enumerate(kinds)
    ]
    types = draw(st.one_of(st.none(), st.frozensets(st.sampled_from(list(EventType)), max_size=4)))
    spec = EntrySpec(bus="b", source="s", gateway_id="g", event_types=types)
    max_entries = draw(st.integers(1, MAX_ENTRIES))
    return events, spec, max_entries


@given(journals())
def test_plan_invariants(case: tuple[list[Event], EntrySpec, int]) -> None:
    events, spec, max_entries = case
    steps = plan(events, spec, max_entries=max_entries)
    durable = []
    for e in events:
        if e.held:
            break
        durable.append(e)
    # The steps cover the durable events contiguously, in order, each exactly once.
    covered = [seq for s in steps for seq in range(s.first_seq, s.through_seq + 1)]
    assert covered == [e.seq for e in durable]
    sent: list[int] = []
    dead: list[int] = []
    for s in steps:
        if isinstance(s, SendStep):
            assert len(s.entries) <= max_entries
            assert s.size <= MAX_BATCH_BYTES
            seqs = [x.seq for x in s.entries]
            assert seqs == sorted(seqs)
            assert all(s.first_seq <= q <= s.through_seq for q in seqs)
            sent.extend(seqs)
        else:
            assert s.entry.oversized
            dead.append(s.entry.seq)
    wanted = [e for e in durable if spec.wants(e)]
    oversized = [e.seq for e in wanted if build_entry(e, spec).oversized]
    assert dead == oversized
    # Every wanted entry that fits is in exactly one batch, in seq order.
    assert sent == [e.seq for e in wanted if e.seq not in set(oversized)]


@given(st.lists(st.integers(0, MAX_BATCH_BYTES + 5_000), max_size=80))
def test_plan_batches_are_full_and_greedy(sizes: list[int]) -> None:
    base = base_started_size()
    events = [started(i + 1, max(0, s - base)) for i, s in enumerate(sizes)]
    entries = [build_entry(e, SPEC) for e in events]
    steps = list(iter_plan(events, SPEC))
    batches = [list(s.entries) for s in steps if isinstance(s, SendStep)]
    flat = [e.seq for b in batches for e in b]
    assert flat == [e.seq for e in entries if not e.oversized]  # order kept, each exactly once
    for step, nxt in itertools.pairwise(steps):
        if not isinstance(step, SendStep):
            continue
        batch = list(step.entries)
        assert 1 <= len(batch) <= MAX_ENTRIES
        assert sum(e.size for e in batch) <= MAX_BATCH_BYTES
        if isinstance(nxt, SendStep):
            # Greedy: a batch closed only because the next entry would not have fitted.
            assert len(batch) == MAX_ENTRIES or sum(e.size for e in batch) + nxt.entries[0].size > (
                MAX_BATCH_BYTES
            )


# --- replies -------------------------------------------------------------------------------


def ok(n: int) -> list[dict[str, str]]:
    return [{"EventId": f"id-{i}"} for i in range(n)]


def test_reply_all_accepted() -> None:
    reply = interpret({"FailedEntryCount": 0, "Entries": ok(3)}, 3)
    assert reply.complete
    assert reply.accepted == 3
    assert reply.accepted_indices == (0, 1, 2)


def test_reply_accepted_prefix_stops_at_first_failure() -> None:
    entries = ok(5)
    entries[2] = {"ErrorCode": "ThrottlingException", "ErrorMessage": "slow down"}
    entries[4] = {"ErrorCode": "InternalFailure", "ErrorMessage": "oops"}
    reply = interpret({"FailedEntryCount": 2, "Entries": entries}, 5)
    assert reply.accepted == 2
    assert reply.failed == 2
    assert reply.accepted_indices == (0, 1, 3)
    assert reply.first_failure is not None
    assert reply.first_failure.index == 2
    assert reply.first_failure.code == "ThrottlingException"
    assert reply.first_failure.disposition is Disposition.TRANSIENT
    assert reply.first_failure.describe() == "ThrottlingException: slow down"


def test_reply_missing_entries_are_failures() -> None:
    reply = interpret({"Entries": ok(2)}, 4)
    assert reply.accepted == 2
    assert reply.failed == 2
    assert reply.first_failure is not None
    assert reply.first_failure.disposition is Disposition.TRANSIENT
    reply = interpret({}, 1)
    assert reply.accepted == 0
    # An entry with neither an id nor a code is not taken as accepted either.
    assert interpret({"Entries": [{}]}, 1).accepted == 0


def test_resume_after_partial_failure() -> None:
    spec = EntrySpec(
        bus="b", source="s", gateway_id="g", event_types=frozenset({EventType.FEED_REQUESTED})
    )
    events = [press(1), event(2, FeederOnline()), press(3), press(4)]
    (step,) = plan(events, spec)
    assert isinstance(step, SendStep)
    entries = ok(3)
    entries[1] = {"ErrorCode": "InternalFailure", "ErrorMessage": "x"}
    reply = interpret({"Entries": entries}, 3)
    # seq 1 accepted, seq 2 filtered out, seq 3 failed: the cursor may move to 2.
    assert resume_seq(step, reply) == 2
    entries = ok(3)
    entries[0] = {"ErrorCode": "InternalFailure"}
    assert resume_seq(step, interpret({"Entries": entries}, 3)) is None
    assert resume_seq(step, interpret({"Entries": ok(3)}, 3)) == 4


@pytest.mark.parametrize(
    ("code", "disposition"),
    [
        ("ThrottlingException", Disposition.TRANSIENT),
        ("InternalFailure", Disposition.TRANSIENT),
        ("InternalException", Disposition.TRANSIENT),
        ("ServiceUnavailable", Disposition.TRANSIENT),
        ("SomethingNew", Disposition.TRANSIENT),
        (None, Disposition.TRANSIENT),
        ("InvalidArgument", Disposition.PERMANENT),
        ("MalformedDetail", Disposition.PERMANENT),
        ("ValidationException", Disposition.PERMANENT),
        ("RedactionFailure", Disposition.PERMANENT),
        ("AccessDeniedException", Disposition.CONFIG),
        ("NotAuthorizedForSourceException", Disposition.CONFIG),
        ("NotAuthorizedForDetailTypeException", Disposition.CONFIG),
        ("InvalidAccountIdException", Disposition.CONFIG),
        ("ResourceNotFoundException", Disposition.CONFIG),
        ("ExpiredTokenException", Disposition.CONFIG),
        ("UnrecognizedClientException", Disposition.CONFIG),
    ],
)
def test_classify(code: str | None, disposition: Disposition) -> None:
    assert classify(code) is disposition


def test_entry_is_frozen_value() -> None:
    entry = build_entry(press(1), SPEC)
    assert isinstance(entry, Entry)
    assert entry.seq == 1
