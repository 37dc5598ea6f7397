"""Back-off: full jitter between first/2 and a ceiling that doubles per failure up to the
maximum, and back to the first step after a success."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.backoff import Backoff


def test_delays_follow_the_doubling_ceiling_exactly() -> None:
    # A twin generator with the same seed draws the same numbers: each delay must be exactly
    # uniform(first/2, ceiling) with the ceiling of that attempt.
    backoff = Backoff(0.5, 8.0, rng=random.Random(1234))
    twin = random.Random(1234)
    ceilings = [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0]
    for attempt, ceiling in enumerate(ceilings):
        assert backoff.attempts == attempt
        delay = backoff.next_delay()
        assert delay == twin.uniform(0.25, ceiling)
        assert 0.25 <= delay <= ceiling


def test_ceiling_reaches_the_maximum_and_stays_there() -> None:
    backoff = Backoff(0.1, 5.0, rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(200)]
    assert all(0.05 <= d <= 5.0 for d in delays)
    # Ceilings run 0.1, 0.2, ... 3.2, then 5.0: once at the maximum, some delays exceed the
    # last ceiling below it.
    assert max(delays[10:]) > 3.2
    assert backoff.attempts == 62  # bounded: no float overflow after a week offline


def test_reset_returns_to_the_first_step() -> None:
    backoff = Backoff(1.0, 60.0, rng=random.Random(99))
    twin = random.Random(99)
    for attempt in range(10):
        twin.uniform(0.5, min(60.0, 2.0**attempt))
        backoff.next_delay()
    backoff.reset()
    assert backoff.attempts == 0
    assert backoff.next_delay() == twin.uniform(0.5, 1.0)
    assert backoff.next_delay() == twin.uniform(0.5, 2.0)


def test_first_equal_to_max_is_allowed() -> None:
    backoff = Backoff(2.0, 2.0, rng=random.Random(0))
    assert all(1.0 <= backoff.next_delay() <= 2.0 for _ in range(50))


def test_default_generator_is_used_when_none_given() -> None:
    backoff = Backoff(0.2, 30.0)
    assert 0.1 <= backoff.next_delay() <= 0.2


@pytest.mark.parametrize(
    ("first", "maximum"),
    [
        (0.0, 1.0),
        (-1.0, 1.0),
        (2.0, 1.0),
        (float("nan"), 1.0),
        (1.0, float("nan")),
        (1.0, float("inf")),
    ],
)
def test_bad_bounds_are_refused(first: float, maximum: float) -> None:
    with pytest.raises(ValueError, match="first_s"):
        Backoff(first, maximum)


@given(
    first=st.floats(min_value=1e-3, max_value=100),
    factor=st.floats(min_value=1, max_value=1000),
    seed=st.integers(0, 2**32),
    failures=st.integers(1, 80),
    reset_at=st.integers(0, 80),
)
def test_every_delay_is_within_bounds(
    first: float, factor: float, seed: int, failures: int, reset_at: int
) -> None:
    maximum = first * factor
    backoff = Backoff(first, maximum, rng=random.Random(seed))
    attempt = 0
    for i in range(failures):
        if i == reset_at:
            backoff.reset()
            attempt = 0
        ceiling = min(maximum, first * 2**attempt)
        delay = backoff.next_delay()
        assert first / 2 <= delay <= ceiling
        attempt += 1
