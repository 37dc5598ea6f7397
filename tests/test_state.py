"""The working state folded from the journal, and what feeder reports mean for the ledger."""

from __future__ import annotations

import pytest

from gateway.events import (
    Bowl,
    ClickType,
    Event,
    FeedDispensed,
    FeederOffline,
    FeederOnline,
    FeedRejected,
    FeedRequested,
    FeedUnconfirmed,
    FoodLevelChanged,
    GatewayStarted,
    Origin,
    RefusedBy,
)
from gateway.reports import DispensedReport, DispenseStatus
from gateway.state import (
    GatewayState,
    RequestStatus,
    acknowledgement_event,
    availability_event,
    food_level_event,
)

NOW = 1_800_000_000_000
WINDOW = 86_400_000
LEFT = (Bowl.LEFT,)
RIGHT = (Bowl.RIGHT,)
BOTH = (Bowl.LEFT, Bowl.RIGHT)


def request(request_id: str = "r1", bowls: tuple[Bowl, ...] = BOTH) -> FeedRequested:
    return FeedRequested(
        request_id=request_id,
        bowls=bowls,
        portion_ms=7_000,
        expires_at_ms=NOW + 300_000,
        origin=Origin.BUTTON,
        button="kitchen",
        click_type=ClickType.LONG,
    )


def state_with(*requests: FeedRequested, at_ms: int = NOW) -> GatewayState:
    state = GatewayState(WINDOW)
    for r in requests:
        state.apply(r, at_ms=at_ms)
    return state


def status(state: GatewayState, request_id: str) -> RequestStatus:
    return state.requests[request_id].status


# --- folding requests ------------------------------------------------------------------------


def test_a_request_records_a_feed_per_bowl_and_awaits_its_ack() -> None:
    state = GatewayState(WINDOW)
    state.apply(request("a", LEFT), at_ms=NOW)
    state.apply(request("b", BOTH), at_ms=NOW + 5)
    assert list(state.feeds[Bowl.LEFT]) == [NOW, NOW + 5]
    assert list(state.feeds[Bowl.RIGHT]) == [NOW + 5]
    assert status(state, "a") is RequestStatus.REQUESTED
    assert state.requests["b"].at_ms == NOW + 5
    assert state.requests["b"].request == request("b", BOTH)


def test_a_gateway_rejection_adds_no_feed_and_no_request() -> None:
    state = GatewayState(WINDOW)
    state.apply(FeedRejected.of(request("x"), "too-soon", RefusedBy.GATEWAY), at_ms=NOW)
    state.apply(FeedRejected.of(request("y"), "expired", RefusedBy.GATEWAY), at_ms=NOW)
    assert all(not times for times in state.feeds.values())
    assert not state.requests


def test_a_duplicate_rejection_leaves_the_original_request_alone() -> None:
    state = state_with(request("r1"))
    state.apply(FeedRejected.of(request("r1"), "duplicate", RefusedBy.GATEWAY), at_ms=NOW + 1)
    assert status(state, "r1") is RequestStatus.REQUESTED
    assert [r.request.request_id for r in state.awaiting_ack()] == ["r1"]
    assert list(state.feeds[Bowl.LEFT]) == [NOW]


def test_a_gateway_expiry_of_a_known_request_marks_it_expired() -> None:
    # The feeder sink journals this for a request that waited too long: it must never be sent,
    # so it leaves the set of requests awaiting an acknowledgement.
    state = state_with(request("r1"), request("r2"))
    state.apply(FeedRejected.of(request("r1"), "expired", RefusedBy.GATEWAY), at_ms=NOW + 1)
    assert status(state, "r1") is RequestStatus.EXPIRED
    assert [r.request.request_id for r in state.awaiting_ack()] == ["r2"]


def test_a_feeder_refusal_is_refused_whatever_its_reason() -> None:
    state = state_with(request("r1"))
    state.apply(FeedRejected.of(request("r1"), "expired", RefusedBy.FEEDER), at_ms=NOW + 1)
    assert status(state, "r1") is RequestStatus.REFUSED


def test_statuses_follow_dispensed_unconfirmed_and_refused() -> None:
    state = state_with(request("d"), request("u"), request("f"))
    state.apply(FeedDispensed(request_id="d", bowls=BOTH, ran_ms=7_000), at_ms=NOW + 1)
    state.apply(FeedUnconfirmed(request_id="u", bowls=BOTH, waited_ms=60_000), at_ms=NOW + 2)
    state.apply(FeedRejected.of(request("f"), "jammed", RefusedBy.FEEDER), at_ms=NOW + 3)
    assert status(state, "d") is RequestStatus.DISPENSED
    assert status(state, "u") is RequestStatus.UNCONFIRMED
    assert status(state, "f") is RequestStatus.REFUSED
    assert state.awaiting_ack() == []


def test_a_final_answer_is_not_overwritten() -> None:
    state = state_with(request("r1"))
    state.apply(FeedDispensed(request_id="r1", bowls=BOTH, ran_ms=1), at_ms=NOW + 1)
    state.apply(FeedUnconfirmed(request_id="r1", bowls=BOTH, waited_ms=60_000), at_ms=NOW + 2)
    state.apply(FeedRejected.of(request("r1"), "jammed", RefusedBy.FEEDER), at_ms=NOW + 3)
    assert status(state, "r1") is RequestStatus.DISPENSED


def test_answers_for_unknown_ids_are_ignored() -> None:
    state = state_with(request("r1"))
    state.apply(FeedDispensed(request_id="other", bowls=BOTH, ran_ms=1), at_ms=NOW + 1)
    assert set(state.requests) == {"r1"}


def test_awaiting_ack_is_oldest_first_and_only_unanswered() -> None:
    state = GatewayState(WINDOW)
    for i, rid in enumerate(["a", "b", "c", "d", "e"]):
        state.apply(request(rid, LEFT), at_ms=NOW + i)
    state.apply(FeedDispensed(request_id="b", bowls=LEFT, ran_ms=1), at_ms=NOW + 10)
    state.apply(FeedUnconfirmed(request_id="d", bowls=LEFT, waited_ms=1), at_ms=NOW + 11)
    waiting = state.awaiting_ack()
    assert [r.request.request_id for r in waiting] == ["a", "c", "e"]
    assert [r.at_ms for r in waiting] == [NOW, NOW + 2, NOW + 4]
    assert all(r.status is RequestStatus.REQUESTED for r in waiting)
    assert waiting[0].request == request("a", LEFT)


def test_apply_event_uses_the_event_time() -> None:
    state = GatewayState(WINDOW)
    event = Event(
        seq=1,
        event_id="r1",
        occurred_at_ms=NOW - 5,
        clock_synced=True,
        origin=Origin.BUTTON,
        payload=request("r1", RIGHT),
    )
    state.apply_event(event)
    assert list(state.feeds[Bowl.RIGHT]) == [NOW - 5]
    assert state.requests["r1"].at_ms == NOW - 5


def test_lifecycle_events_change_nothing() -> None:
    state = state_with(request("r1"))
    before = (dict(state.requests), {b: list(t) for b, t in state.feeds.items()})
    state.apply(GatewayStarted(version="1", clock_synced=True), at_ms=NOW + WINDOW * 5)
    assert (dict(state.requests), {b: list(t) for b, t in state.feeds.items()}) == before


# --- pruning ---------------------------------------------------------------------------------


def test_requests_and_feeds_older_than_the_window_are_forgotten() -> None:
    state = GatewayState(window_ms=1_000)
    state.apply(request("a", LEFT), at_ms=0)
    state.apply(request("b", LEFT), at_ms=500)
    state.apply(request("c", BOTH), at_ms=1_500)  # horizon 500: "a" goes, "b" stays
    assert list(state.requests) == ["b", "c"]
    assert list(state.feeds[Bowl.LEFT]) == [500, 1_500]
    assert list(state.feeds[Bowl.RIGHT]) == [1_500]
    # A forgotten request's late acknowledgement is not news.
    assert acknowledgement_event(state, DispensedReport("a", DispenseStatus.SERVED)) is None


def test_requests_are_bounded_by_max_requests_oldest_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(GatewayState, "MAX_REQUESTS", 3)
    state = GatewayState(WINDOW)
    for rid in ["a", "b", "c", "d", "e"]:
        state.apply(request(rid, LEFT), at_ms=NOW)
    assert list(state.requests) == ["c", "d", "e"]
    assert len(state.feeds[Bowl.LEFT]) == 5  # feeds are bounded by the window, not the count


# --- feeder reports --------------------------------------------------------------------------


def test_food_level_is_journaled_only_on_change() -> None:
    state = GatewayState(WINDOW)
    first = food_level_event(state, 80)
    assert first == FoodLevelChanged(level=80, previous=None)
    state.apply(first, at_ms=NOW)
    assert food_level_event(state, 80) is None
    change = food_level_event(state, 35)
    assert change == FoodLevelChanged(level=35, previous=80)
    state.apply(change, at_ms=NOW + 1)
    assert state.food_level == 35
    assert food_level_event(state, 35) is None
    assert food_level_event(state, 0) == FoodLevelChanged(level=0, previous=35)


def test_availability_is_journaled_only_on_change() -> None:
    state = GatewayState(WINDOW)
    assert availability_event(state, True) == FeederOnline()
    assert availability_event(state, False) == FeederOffline()  # unknown → either is news
    state.apply(FeederOnline(), at_ms=NOW)
    assert state.feeder_online is True
    assert availability_event(state, True) is None
    assert availability_event(state, False) == FeederOffline()
    state.apply(FeederOffline(), at_ms=NOW + 1)
    assert state.feeder_online is False
    assert availability_event(state, False) is None
    assert availability_event(state, True) == FeederOnline()


# --- acknowledgements ------------------------------------------------------------------------


def test_served_ack_uses_the_reported_bowls_and_run_time() -> None:
    state = state_with(request("r1", BOTH))
    report = DispensedReport("r1", DispenseStatus.SERVED, bowls=LEFT, ran_ms=6_500)
    assert acknowledgement_event(state, report) == FeedDispensed(
        request_id="r1", bowls=LEFT, ran_ms=6_500
    )


def test_served_ack_falls_back_to_the_request() -> None:
    state = state_with(request("r1", RIGHT))
    report = DispensedReport("r1", DispenseStatus.SERVED)
    assert acknowledgement_event(state, report) == FeedDispensed(
        request_id="r1", bowls=RIGHT, ran_ms=7_000
    )


def test_served_ack_with_zero_run_time_keeps_zero() -> None:
    state = state_with(request("r1"))
    report = DispensedReport("r1", DispenseStatus.SERVED, ran_ms=0)
    event = acknowledgement_event(state, report)
    assert isinstance(event, FeedDispensed)
    assert event.ran_ms == 0


def test_refused_ack_is_a_feeder_rejection_with_its_reason() -> None:
    state = state_with(request("r1"))
    report = DispensedReport("r1", DispenseStatus.REFUSED, reason="bowl jammed")
    assert acknowledgement_event(state, report) == FeedRejected.of(
        request("r1"), "bowl jammed", RefusedBy.FEEDER
    )


def test_refused_ack_without_a_reason_says_refused() -> None:
    state = state_with(request("r1"))
    event = acknowledgement_event(state, DispensedReport("r1", DispenseStatus.REFUSED))
    assert isinstance(event, FeedRejected)
    assert event.reason == "refused"
    assert event.refused_by is RefusedBy.FEEDER
    assert event.button == "kitchen"
    assert event.click_type is ClickType.LONG


def test_ack_for_an_unknown_id_is_not_news() -> None:
    state = state_with(request("r1"))
    assert acknowledgement_event(state, DispensedReport("zz", DispenseStatus.SERVED)) is None
    assert acknowledgement_event(state, DispensedReport("zz", DispenseStatus.REFUSED)) is None


@pytest.mark.parametrize("second", list(DispenseStatus))
@pytest.mark.parametrize("first", list(DispenseStatus))
def test_a_repeated_ack_is_not_news(first: DispenseStatus, second: DispenseStatus) -> None:
    # QoS 1 redelivers: once an answer is journaled, any later answer for the id is ignored.
    state = state_with(request("r1"))
    event = acknowledgement_event(state, DispensedReport("r1", first))
    assert event is not None
    state.apply(event, at_ms=NOW + 1)
    assert acknowledgement_event(state, DispensedReport("r1", second)) is None


@pytest.mark.parametrize("answer", list(DispenseStatus))
def test_a_late_ack_after_unconfirmed_is_still_recorded(answer: DispenseStatus) -> None:
    state = state_with(request("r1"))
    state.apply(FeedUnconfirmed(request_id="r1", bowls=BOTH, waited_ms=60_000), at_ms=NOW + 1)
    assert status(state, "r1") is RequestStatus.UNCONFIRMED
    event = acknowledgement_event(state, DispensedReport("r1", answer, ran_ms=5))
    assert event is not None
    state.apply(event, at_ms=NOW + 90_000)
    expected = RequestStatus.DISPENSED if answer is DispenseStatus.SERVED else RequestStatus.REFUSED
    assert status(state, "r1") is expected
    assert acknowledgement_event(state, DispensedReport("r1", answer)) is None
