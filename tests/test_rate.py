"""The publish pacer (gateway/rate.py): pure, driven by a fake clock."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.rate import Pacer


def send_times(pacer: Pacer, calls: list[float]) -> list[float]:
    """When each send would go out, for reserve() calls made at ``calls`` (sorted) by a caller
    that waits exactly as told before its next call."""
    out: list[float] = []
    now = 0.0
    for at in calls:
        now = max(now, at)
        now += pacer.reserve(now)
        out.append(now)
    return out


def test_one_send_per_interval_when_called_back_to_back():
    pacer = Pacer(20.0)
    times = send_times(pacer, [0.0] * 5)
    assert times == pytest.approx([0.0, 0.05, 0.10, 0.15, 0.20])


def test_the_first_send_goes_at_once_and_an_idle_spell_earns_no_extra():
    pacer = Pacer(10.0)
    assert pacer.reserve(100.0) == 0.0
    assert pacer.reserve(100.0) == pytest.approx(0.1)
    # An hour idle: one goes at once, the next waits a full interval again.
    assert pacer.reserve(3700.0) == 0.0
    assert pacer.reserve(3700.0) == pytest.approx(0.1)


def test_burst_lets_that_many_go_at_once_then_paces():
    pacer = Pacer(100.0, burst=3)
    waits = [pacer.reserve(0.0) for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.0, 0.0, 0.01, 0.02])


def test_a_caller_slower_than_the_rate_never_waits():
    pacer = Pacer(50.0)
    assert all(pacer.reserve(i * 0.1) == 0.0 for i in range(100))


def test_a_booked_slot_that_goes_unused_only_slows_the_pacer():
    pacer = Pacer(10.0)
    pacer.reserve(0.0)
    pacer.reserve(0.0)  # booked for 0.1, then the caller was cancelled and never sent
    assert pacer.reserve(0.0) == pytest.approx(0.2)


def test_delay_peeks_without_booking():
    pacer = Pacer(10.0)
    assert pacer.delay(0.0) == 0.0
    pacer.reserve(0.0)
    assert pacer.delay(0.0) == pytest.approx(0.1)
    assert pacer.delay(0.05) == pytest.approx(0.05)
    assert pacer.delay(0.0) == pytest.approx(0.1)  # unchanged: nothing was booked
    assert pacer.booked == 1


def test_unlimited_never_waits_and_counts():
    pacer = Pacer.unlimited()
    assert [pacer.reserve(0.0) for _ in range(1000)] == [0.0] * 1000
    assert pacer.booked == 1000
    assert pacer.delay(0.0) == 0.0
    assert "unlimited" in repr(pacer)


@pytest.mark.parametrize("rate", [0.0, -1.0, math.inf, math.nan])
def test_bad_rates_are_refused(rate):
    with pytest.raises(ValueError, match="rate"):
        Pacer(rate)


def test_bad_burst_is_refused():
    with pytest.raises(ValueError, match="burst"):
        Pacer(10.0, burst=0)


@given(
    rate=st.floats(min_value=0.5, max_value=200.0),
    burst=st.integers(min_value=1, max_value=10),
    gaps=st.lists(st.floats(min_value=0.0, max_value=0.5), min_size=1, max_size=300),
    window=st.floats(min_value=0.01, max_value=5.0),
)
def test_no_window_ever_holds_more_than_burst_plus_rate_times_its_length(rate, burst, gaps, window):
    calls: list[float] = []
    t = 0.0
    for gap in gaps:
        t += gap
        calls.append(t)
    times = send_times(Pacer(rate, burst=burst), calls)
    assert times == sorted(times)
    assert all(sent >= asked for sent, asked in zip(times, calls, strict=True))
    limit = burst + window * rate
    eps = 1e-9
    for i, start in enumerate(times):
        inside = sum(1 for s in times[i:] if s < start + window - eps)
        assert inside <= limit + eps, (start, inside, limit)


@given(
    rate=st.floats(min_value=1.0, max_value=200.0),
    n=st.integers(min_value=2, max_value=500),
)
def test_a_backlog_drains_at_exactly_the_rate(rate, n):
    times = send_times(Pacer(rate), [0.0] * n)
    assert times[-1] == pytest.approx((n - 1) / rate)
