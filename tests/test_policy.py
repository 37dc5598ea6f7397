"""The safety policy: duplicate, expired, too-soon and cap, checked in that order, on whole
requests, with feeds recorded far in the future (a clock that went back) left out."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.clock import FixedClock
from gateway.events import Bowl, ClickType, FeedRejected, FeedRequested, Origin, RefusedBy
from gateway.policy import CLOCK_SKEW_MS, Limits, decide, next_allowed_ms, rejection_reason
from gateway.state import GatewayState

LEFT = (Bowl.LEFT,)
RIGHT = (Bowl.RIGHT,)
BOTH = (Bowl.LEFT, Bowl.RIGHT)
MINUTE = 60_000
HOUR = 60 * MINUTE
LIMITS = Limits(cap_per_bowl=3, cap_period_ms=24 * HOUR, min_gap_ms=10 * MINUTE)
WINDOW = 48 * HOUR

_ids = itertools.count()


def request(
    bowls: tuple[Bowl, ...] = LEFT,
    *,
    request_id: str | None = None,
    expires_at_ms: int | None = None,
    now_ms: int,
) -> FeedRequested:
    return FeedRequested(
        request_id=request_id or f"req-{next(_ids)}",
        bowls=bowls,
        portion_ms=5_000,
        expires_at_ms=now_ms + 5 * MINUTE if expires_at_ms is None else expires_at_ms,
        origin=Origin.BUTTON,
        button="hall",
        click_type=ClickType.SINGLE,
    )


def fed(state: GatewayState, bowls: tuple[Bowl, ...], *times: int) -> None:
    """Record accepted feeds of ``bowls`` at ``times`` (as the intake applies them)."""
    for t in times:
        state.apply(request(bowls, now_ms=t), at_ms=t)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def state() -> GatewayState:
    return GatewayState(WINDOW)


def reason(
    state: GatewayState, req: FeedRequested, now: int, limits: Limits = LIMITS
) -> str | None:
    r = rejection_reason(req, state, limits, now)
    return None if r is None else r.value


# --- accept ----------------------------------------------------------------------------------


def test_first_request_is_accepted_as_is(state: GatewayState, clock: FixedClock) -> None:
    now = clock.now_ms()
    req = request(BOTH, now_ms=now)
    assert decide(req, state, LIMITS, now) is req
    assert rejection_reason(req, state, LIMITS, now) is None


def test_rejection_carries_the_whole_request(state: GatewayState, clock: FixedClock) -> None:
    now = clock.now_ms()
    req = request(BOTH, now_ms=now, expires_at_ms=now)
    outcome = decide(req, state, LIMITS, now)
    assert outcome == FeedRejected(
        request_id=req.request_id,
        bowls=BOTH,
        portion_ms=5_000,
        expires_at_ms=now,
        origin=Origin.BUTTON,
        button="hall",
        click_type=ClickType.SINGLE,
        reason="expired",
        refused_by=RefusedBy.GATEWAY,
    )


# --- duplicate -------------------------------------------------------------------------------


def test_an_accepted_request_id_is_a_duplicate(state: GatewayState, clock: FixedClock) -> None:
    first = request(LEFT, request_id="cloud-1", now_ms=clock.now_ms())
    state.apply(first, at_ms=clock.now_ms())
    clock.advance(10 * HOUR)  # long past the gap, well inside the window
    again = request(RIGHT, request_id="cloud-1", now_ms=clock.now_ms())
    assert reason(state, again, clock.now_ms()) == "duplicate"
    assert reason(state, request(RIGHT, now_ms=clock.now_ms()), clock.now_ms()) is None


def test_a_rejected_request_id_is_not_a_duplicate(state: GatewayState, clock: FixedClock) -> None:
    now = clock.now_ms()
    req = request(LEFT, request_id="cloud-2", now_ms=now, expires_at_ms=now)
    outcome = decide(req, state, LIMITS, now)
    state.apply(outcome, at_ms=now)
    retry = request(LEFT, request_id="cloud-2", now_ms=now)
    assert reason(state, retry, now) is None


# --- expired ---------------------------------------------------------------------------------


def test_expired_exactly_at_expiry(state: GatewayState, clock: FixedClock) -> None:
    now = clock.now_ms()
    assert reason(state, request(now_ms=now, expires_at_ms=now), now) == "expired"
    assert reason(state, request(now_ms=now, expires_at_ms=now - 1), now) == "expired"
    assert reason(state, request(now_ms=now, expires_at_ms=now + 1), now) is None


# --- too soon --------------------------------------------------------------------------------


@pytest.mark.parametrize("bowl", list(Bowl))
def test_too_soon_boundary_per_bowl(state: GatewayState, clock: FixedClock, bowl: Bowl) -> None:
    last = clock.now_ms()
    fed(state, (bowl,), last)
    gap = LIMITS.min_gap_ms
    assert reason(state, request((bowl,), now_ms=last + 1), last + 1) == "too-soon"
    assert reason(state, request((bowl,), now_ms=last + gap - 1), last + gap - 1) == "too-soon"
    assert reason(state, request((bowl,), now_ms=last + gap), last + gap) is None


@pytest.mark.parametrize("bowl", list(Bowl))
def test_too_soon_looks_at_the_latest_feed(
    state: GatewayState, clock: FixedClock, bowl: Bowl
) -> None:
    now = clock.now_ms()
    fed(state, (bowl,), now - 2 * HOUR, now - MINUTE)
    assert reason(state, request((bowl,), now_ms=now), now) == "too-soon"


def test_the_other_bowl_is_not_too_soon(state: GatewayState, clock: FixedClock) -> None:
    now = clock.now_ms()
    fed(state, LEFT, now - MINUTE)
    assert reason(state, request(RIGHT, now_ms=now), now) is None
    assert reason(state, request(LEFT, now_ms=now), now) == "too-soon"


@pytest.mark.parametrize("recent", [LEFT, RIGHT])
def test_both_bowls_are_refused_whole_when_one_is_too_soon(
    state: GatewayState, clock: FixedClock, recent: tuple[Bowl, ...]
) -> None:
    now = clock.now_ms()
    fed(state, recent, now - MINUTE)
    req = request(BOTH, now_ms=now)
    outcome = decide(req, state, LIMITS, now)
    assert isinstance(outcome, FeedRejected)
    assert outcome.reason == "too-soon"
    assert outcome.bowls == BOTH
    state.apply(outcome, at_ms=now)
    other = Bowl.RIGHT if recent == LEFT else Bowl.LEFT
    assert list(state.feeds[other]) == []  # no half feed recorded


def test_zero_gap_allows_back_to_back(state: GatewayState, clock: FixedClock) -> None:
    limits = Limits(cap_per_bowl=5, cap_period_ms=HOUR, min_gap_ms=0)
    now = clock.now_ms()
    fed(state, LEFT, now)
    assert reason(state, request(LEFT, now_ms=now), now, limits) is None


# --- cap -------------------------------------------------------------------------------------


@pytest.mark.parametrize("bowl", list(Bowl))
def test_cap_counts_feeds_in_the_rolling_period(
    state: GatewayState, clock: FixedClock, bowl: Bowl
) -> None:
    now = clock.now_ms()
    period = LIMITS.cap_period_ms
    fed(state, (bowl,), now - period + 1, now - 10 * HOUR, now - HOUR)
    assert reason(state, request((bowl,), now_ms=now), now) == "cap"
    # One millisecond later the oldest is exactly cap_period ago: out of the period.
    later = now + 1
    assert reason(state, request((bowl,), now_ms=later), later) is None


def test_cap_boundary_exactly_one_period(state: GatewayState, clock: FixedClock) -> None:
    now = clock.now_ms()
    period = LIMITS.cap_period_ms
    fed(state, LEFT, now - period, now - 10 * HOUR, now - HOUR)
    assert reason(state, request(LEFT, now_ms=now), now) is None


def test_cap_below_the_limit_is_accepted(state: GatewayState, clock: FixedClock) -> None:
    now = clock.now_ms()
    fed(state, LEFT, now - 10 * HOUR, now - HOUR)
    assert reason(state, request(LEFT, now_ms=now), now) is None


def test_cap_is_per_bowl_and_whole_request(state: GatewayState, clock: FixedClock) -> None:
    now = clock.now_ms()
    fed(state, LEFT, now - 3 * HOUR, now - 2 * HOUR, now - HOUR)
    assert reason(state, request(RIGHT, now_ms=now), now) is None
    assert reason(state, request(BOTH, now_ms=now), now) == "cap"


def test_a_both_bowls_feed_counts_for_each_bowl(state: GatewayState, clock: FixedClock) -> None:
    now = clock.now_ms()
    fed(state, BOTH, now - 3 * HOUR, now - 2 * HOUR, now - HOUR)
    assert reason(state, request(LEFT, now_ms=now), now) == "cap"
    assert reason(state, request(RIGHT, now_ms=now), now) == "cap"


# --- order of checks -------------------------------------------------------------------------


def test_duplicate_comes_before_expired(state: GatewayState, clock: FixedClock) -> None:
    now = clock.now_ms()
    state.apply(request(LEFT, request_id="dup", now_ms=now), at_ms=now)
    stale = request(LEFT, request_id="dup", now_ms=now, expires_at_ms=now)
    assert reason(state, stale, now) == "duplicate"


def test_expired_comes_before_too_soon_and_cap(state: GatewayState, clock: FixedClock) -> None:
    now = clock.now_ms()
    fed(state, LEFT, now - 3 * HOUR, now - 2 * HOUR, now - MINUTE)
    assert reason(state, request(LEFT, now_ms=now), now) == "too-soon"  # also at the cap
    assert reason(state, request(LEFT, now_ms=now, expires_at_ms=now), now) == "expired"


def test_too_soon_comes_before_cap(state: GatewayState, clock: FixedClock) -> None:
    now = clock.now_ms()
    fed(state, LEFT, now - 3 * HOUR, now - 2 * HOUR, now - MINUTE)
    assert reason(state, request(LEFT, now_ms=now), now) == "too-soon"


def test_too_soon_on_any_bowl_comes_before_cap_on_another(
    state: GatewayState, clock: FixedClock
) -> None:
    # Left is at its cap (checked first in bowl order), right was fed a minute ago: every bowl
    # is checked for the gap before any bowl is checked for the cap.
    now = clock.now_ms()
    fed(state, LEFT, now - 3 * HOUR, now - 2 * HOUR, now - HOUR)
    fed(state, RIGHT, now - MINUTE)
    assert reason(state, request(BOTH, now_ms=now), now) == "too-soon"


# --- clock skew ------------------------------------------------------------------------------


def test_feeds_far_in_the_future_do_not_block_meals(state: GatewayState) -> None:
    # Yesterday's feeds were journaled with a good clock; the Pi then cold-booted a year behind.
    real = 1_800_000_000_000
    fed(state, BOTH, real - 3 * HOUR, real - 2 * HOUR, real - MINUTE)
    booted = real - 365 * 24 * HOUR
    assert reason(state, request(BOTH, now_ms=booted), booted) is None


def test_skew_boundary(state: GatewayState, clock: FixedClock) -> None:
    now = clock.now_ms()
    fed(state, LEFT, now + CLOCK_SKEW_MS + 1)
    assert reason(state, request(LEFT, now_ms=now), now) is None
    fed(state, RIGHT, now + CLOCK_SKEW_MS)
    assert reason(state, request(RIGHT, now_ms=now), now) == "too-soon"


def test_future_feeds_are_left_out_of_the_cap(state: GatewayState, clock: FixedClock) -> None:
    limits = Limits(cap_per_bowl=1, cap_period_ms=24 * HOUR, min_gap_ms=0)
    now = clock.now_ms()
    fed(state, LEFT, *(now + CLOCK_SKEW_MS + k * HOUR for k in range(1, 5)))
    assert reason(state, request(LEFT, now_ms=now), now, limits) is None
    fed(state, LEFT, now - HOUR)
    assert reason(state, request(LEFT, now_ms=now), now, limits) == "cap"


def test_feeds_within_skew_still_count(state: GatewayState, clock: FixedClock) -> None:
    # The clock stepped back a little (NTP correction): a feed 30 s "in the future" is real.
    now = clock.now_ms()
    fed(state, LEFT, now + 30_000)
    assert reason(state, request(LEFT, now_ms=now), now) == "too-soon"
    later = now + 30_000 + LIMITS.min_gap_ms
    assert reason(state, request(LEFT, now_ms=later), later) is None


# --- property: the limits hold for any sequence ----------------------------------------------

step = st.tuples(
    st.integers(0, 4_000),  # time since the previous request
    st.sampled_from([LEFT, RIGHT, BOTH]),
    st.integers(-500, 5_000),  # expiry relative to now
    st.booleans(),  # reuse an earlier request id
    st.integers(0, 1_000),  # which earlier id
)


@given(
    cap=st.integers(1, 4),
    period=st.integers(1, 10_000),
    gap=st.integers(0, 5_000),
    steps=st.lists(step, max_size=60),
)
def test_limits_hold_for_any_sequence_of_requests(
    cap: int, period: int, gap: int, steps: list[tuple[int, tuple[Bowl, ...], int, bool, int]]
) -> None:
    limits = Limits(cap_per_bowl=cap, cap_period_ms=period, min_gap_ms=gap)
    state = GatewayState(window_ms=max(period, gap) + 1)
    clock = FixedClock(1_000_000)
    accepted: dict[Bowl, list[int]] = {b: [] for b in Bowl}
    accepted_ids: dict[str, int] = {}
    used: list[str] = []
    for n, (delta, bowls, expiry, reuse, which) in enumerate(steps):
        clock.advance(delta)
        now = clock.now_ms()
        rid = used[which % len(used)] if reuse and used else f"r{n}"
        used.append(rid)
        req = request(bowls, request_id=rid, now_ms=now, expires_at_ms=now + expiry)
        before = {b: list(t) for b, t in state.feeds.items()}
        outcome = decide(req, state, limits, now)
        state.apply(outcome, at_ms=now)
        if outcome is req:
            assert now < req.expires_at_ms
            if rid in accepted_ids:  # only once the first is forgotten
                assert now - accepted_ids[rid] > state.window_ms
            accepted_ids[rid] = now
            for b in bowls:
                accepted[b].append(now)
        else:
            assert isinstance(outcome, FeedRejected)
            assert outcome.refused_by is RefusedBy.GATEWAY
            assert {b: list(t) for b, t in state.feeds.items()} == before

    for times in accepted.values():
        for a, b in itertools.pairwise(times):
            assert b - a >= gap
        for t in times:
            in_window = [u for u in times if t - period < u <= t]
            assert len(in_window) <= cap


# --- when the next feed is allowed -----------------------------------------------------------


def test_next_allowed_after_too_soon_is_the_end_of_the_gap(
    state: GatewayState, clock: FixedClock
) -> None:
    now = clock.now_ms()
    fed(state, LEFT, now - 3 * MINUTE)
    allowed = next_allowed_ms(LEFT, state, LIMITS, now)
    assert allowed == now + 7 * MINUTE
    assert reason(state, request(LEFT, now_ms=allowed - 1), allowed - 1) == "too-soon"
    assert reason(state, request(LEFT, now_ms=allowed), allowed) is None


def test_next_allowed_after_cap_is_when_the_oldest_leaves_the_period(
    state: GatewayState, clock: FixedClock
) -> None:
    now = clock.now_ms()
    fed(state, LEFT, now - 20 * HOUR, now - 10 * HOUR, now - HOUR)
    allowed = next_allowed_ms(LEFT, state, LIMITS, now)
    assert allowed == now + 4 * HOUR
    assert reason(state, request(LEFT, now_ms=allowed - 1), allowed - 1) == "cap"
    assert reason(state, request(LEFT, now_ms=allowed), allowed) is None


def test_next_allowed_for_both_bowls_waits_for_the_later_one(
    state: GatewayState, clock: FixedClock
) -> None:
    now = clock.now_ms()
    fed(state, LEFT, now - 9 * MINUTE)
    fed(state, RIGHT, now - 2 * MINUTE)
    assert next_allowed_ms(BOTH, state, LIMITS, now) == now + 8 * MINUTE
    assert next_allowed_ms(RIGHT, state, LIMITS, now + 8 * MINUTE) == now + 8 * MINUTE
    assert next_allowed_ms((), state, LIMITS, now) == now
