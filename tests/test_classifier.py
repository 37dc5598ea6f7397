"""The click classifier: gestures at their boundaries, bounce, late driving, and properties."""

from __future__ import annotations

import dataclasses
from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.classifier import ClickClassifier, ClickTimings
from gateway.errors import ConfigError
from gateway.events import ClickType

SINGLE, DOUBLE, LONG = ClickType.SINGLE, ClickType.DOUBLE, ClickType.LONG

Op = Literal["press", "release", "tick"]
Step = tuple[Op, int, ClickType | None]

# The defaults, spelled out so that the boundaries below read as numbers.
DC, HOLD, BOUNCE = 400, 1500, 30
TIMINGS = ClickTimings(double_click_ms=DC, hold_ms=HOLD, bounce_ms=BOUNCE)


def call(clf: ClickClassifier, op: Op, t: int) -> ClickType | None:
    method = {"press": clf.press, "release": clf.release, "tick": clf.tick}[op]
    return method(t)


def run(steps: list[Step], timings: ClickTimings = TIMINGS) -> ClickClassifier:
    """Drive a fresh classifier; every step states what that one call must return."""
    clf = ClickClassifier(timings)
    for i, (op, t, expected) in enumerate(steps):
        got = call(clf, op, t)
        assert got == expected, f"step {i}: {op}({t}) returned {got}, expected {expected}"
    return clf


def assert_idle(clf: ClickClassifier, t: int) -> None:
    """Idle means: nothing timed, and a fresh gesture from ``t`` starts from scratch.

    The probe is a hold (LONG) because that works for any timings; a short click would be
    impossible when ``bounce_ms >= hold_ms``. A press in any other phase would not arm
    ``t + hold_ms`` (FIRST_UP arms a DOUBLE, SETTLING arms nothing) or would be a duplicate.
    """
    hold, bounce = clf.timings.hold_ms, clf.timings.bounce_ms
    assert clf.next_deadline() is None
    assert clf.press(t) is None
    assert clf.next_deadline() == t + hold
    assert clf.tick(t + hold - 1) is None
    assert clf.tick(t + hold) == LONG
    assert clf.release(t + hold + bounce) is None
    assert clf.next_deadline() is None


# --- gestures at their boundaries -----------------------------------------------------------

GESTURES: dict[str, list[Step]] = {
    "single: tick one ms early is nothing, at the deadline is SINGLE": [
        ("press", 0, None),
        ("release", 100, None),
        ("tick", 100 + DC - 1, None),
        ("tick", 100 + DC, SINGLE),
        ("tick", 10_000, None),
    ],
    "double: second press one ms inside the window": [
        ("press", 0, None),
        ("release", 100, None),
        ("press", 100 + DC - 1, None),
        ("release", 100 + DC + 50, DOUBLE),
    ],
    "second press exactly at double_click_ms: SINGLE, then a new gesture": [
        ("press", 0, None),
        ("release", 100, None),
        ("press", 100 + DC, SINGLE),
        ("release", 100 + DC + 50, None),
        ("tick", 100 + DC + 50 + DC, SINGLE),
    ],
    "second press one ms past double_click_ms: SINGLE, then a new gesture": [
        ("press", 0, None),
        ("release", 100, None),
        ("press", 100 + DC + 1, SINGLE),
        ("release", 100 + DC + 51, None),
        ("tick", 100 + DC + 51 + DC, SINGLE),
    ],
    "long: tick one ms early is nothing, exactly at hold_ms is LONG; release is silent": [
        ("press", 0, None),
        ("tick", HOLD - 1, None),
        ("tick", HOLD, LONG),
        ("release", HOLD + 500, None),
        ("tick", 10_000, None),
    ],
    "release one ms before hold_ms is a short press": [
        ("press", 0, None),
        ("release", HOLD - 1, None),
        ("tick", HOLD - 1 + DC, SINGLE),
    ],
    "release exactly at hold_ms with no tick returns LONG itself": [
        ("press", 0, None),
        ("release", HOLD, LONG),
        ("tick", 10_000, None),
    ],
    "a tap right after a LONG is a new gesture": [
        ("press", 0, None),
        ("tick", HOLD, LONG),
        ("release", 2000, None),
        ("press", 2050, None),
        ("release", 2100, None),
        ("tick", 2100 + DC, SINGLE),
    ],
    "held second press is DOUBLE at its hold time, never LONG; release is silent": [
        ("press", 0, None),
        ("release", 100, None),
        ("press", 200, None),
        ("tick", 200 + HOLD - 1, None),
        ("tick", 200 + HOLD, DOUBLE),
        ("release", 5000, None),
        ("tick", 20_000, None),
    ],
    "triple click is one DOUBLE: the third click is absorbed while settling": [
        ("press", 0, None),
        ("release", 100, None),
        ("press", 200, None),
        ("release", 300, DOUBLE),
        ("press", 400, None),
        ("release", 500, None),
        ("tick", 500 + DC - 1, None),
        ("tick", 500 + DC, None),
        ("tick", 20_000, None),
    ],
    "a press held while settling emits nothing, not even LONG": [
        ("press", 0, None),
        ("release", 100, None),
        ("press", 200, None),
        ("release", 300, DOUBLE),
        ("press", 400, None),
        ("tick", 400 + HOLD, None),
        ("release", 9000, None),
        ("tick", 9000 + DC, None),
    ],
    "a press exactly double_click_ms after the DOUBLE's release starts a new gesture": [
        ("press", 0, None),
        ("release", 100, None),
        ("press", 200, None),
        ("release", 300, DOUBLE),
        ("press", 300 + DC, None),
        ("release", 300 + DC + 100, None),
        ("tick", 300 + DC + 100 + DC, SINGLE),
    ],
}


@pytest.mark.parametrize("steps", list(GESTURES.values()), ids=list(GESTURES))
def test_gesture(steps: list[Step]) -> None:
    clf = run(steps)
    # Whatever the gesture, it ends released and back at idle once its timers are spent.
    clf.tick(100_000)
    assert_idle(clf, 200_000)


def test_next_deadline_follows_the_phases() -> None:
    clf = ClickClassifier(TIMINGS)
    assert clf.next_deadline() is None
    clf.press(1000)
    assert clf.next_deadline() == 1000 + HOLD
    clf.release(1100)
    assert clf.next_deadline() == 1100 + DC
    clf.press(1200)
    assert clf.next_deadline() == 1200 + HOLD
    assert clf.release(1300) == DOUBLE
    assert clf.next_deadline() == 1300 + DC  # settling
    clf.press(1400)
    assert clf.next_deadline() is None  # settling while held: nothing timed until release
    clf.release(1500)
    assert clf.next_deadline() == 1500 + DC
    assert clf.tick(1500 + DC) is None
    assert clf.next_deadline() is None


def test_long_then_held_has_no_deadline() -> None:
    clf = ClickClassifier(TIMINGS)
    clf.press(0)
    assert clf.tick(HOLD) == LONG
    assert clf.next_deadline() is None


# --- bounce and duplicates ------------------------------------------------------------------


def test_chatter_after_press_is_ignored() -> None:
    run(
        [
            ("press", 0, None),
            ("release", 5, None),  # bounce
            ("press", 10, None),  # duplicate (the release was never accepted)
            ("release", BOUNCE - 1, None),  # still bounce
            ("release", 100, None),  # real release
            ("tick", 100 + DC, SINGLE),
        ]
    )


def test_release_exactly_bounce_ms_after_press_is_accepted() -> None:
    clf = run([("press", 0, None), ("release", BOUNCE, None)])
    assert clf.next_deadline() == BOUNCE + DC


def test_bounce_is_measured_from_the_last_accepted_edge() -> None:
    # Ignored edges do not extend the bounce window: 25 ms of chatter, then a release at 30 is
    # 30 ms after the accepted press and counts.
    clf = run(
        [
            ("press", 0, None),
            ("release", 20, None),
            ("press", 25, None),
            ("release", BOUNCE, None),
        ]
    )
    assert clf.next_deadline() == BOUNCE + DC


def test_chatter_after_release_is_not_a_double_click() -> None:
    run(
        [
            ("press", 0, None),
            ("release", 100, None),
            ("press", 100 + BOUNCE - 1, None),  # bounce, not a second press
            ("release", 100 + BOUNCE + 5, None),  # duplicate
            ("tick", 100 + DC, SINGLE),
        ]
    )


def test_bounce_zero_accepts_edges_one_ms_apart() -> None:
    timings = ClickTimings(double_click_ms=DC, hold_ms=HOLD, bounce_ms=0)
    run(
        [
            ("press", 0, None),
            ("release", 1, None),
            ("press", 2, None),
            ("release", 3, DOUBLE),
        ],
        timings,
    )


def test_duplicate_press_does_not_restart_the_hold() -> None:
    clf = run([("press", 0, None), ("press", 1000, None)])
    assert clf.next_deadline() == HOLD
    assert clf.tick(HOLD) == LONG


def test_release_while_released_is_ignored() -> None:
    clf = run([("release", 0, None), ("release", 100, None)])
    assert_idle(clf, 1000)


# --- time going backwards -------------------------------------------------------------------


def test_backwards_edge_is_taken_as_now() -> None:
    timings = ClickTimings(double_click_ms=DC, hold_ms=HOLD, bounce_ms=0)
    clf = run([("press", 1000, None), ("release", 900, None)], timings)
    assert clf.next_deadline() == 1000 + DC  # the release counted at 1000, not 900


def test_backwards_edge_within_bounce_of_last_is_bounce() -> None:
    clf = run([("press", 1000, None), ("release", 0, None)])
    assert clf.next_deadline() == 1000 + HOLD  # the release was ignored: still held


def test_backwards_tick_does_not_undo_or_fire() -> None:
    clf = run(
        [
            ("press", 0, None),
            ("release", 100, None),
            ("tick", 300, None),
            ("tick", 50, None),
            ("tick", 100 + DC, SINGLE),
            ("tick", 0, None),
        ]
    )
    assert clf.next_deadline() is None


# --- late driving: no ticks at all, only later edges ---------------------------------------


def test_late_single_is_returned_by_the_next_press() -> None:
    clf = run(
        [
            ("press", 0, None),
            ("release", 100, None),
            ("press", 60_000, SINGLE),
            ("release", 60_100, None),
            ("press", 60_200, None),
            ("release", 60_300, DOUBLE),
        ]
    )
    assert clf.next_deadline() == 60_300 + DC


def test_late_long_is_returned_by_the_release() -> None:
    clf = run([("press", 0, None), ("release", 60_000, LONG)])
    assert_idle(clf, 70_000)


def test_late_held_double_is_returned_by_the_release() -> None:
    clf = run(
        [
            ("press", 0, None),
            ("release", 100, None),
            ("press", 200, None),
            ("release", 60_000, DOUBLE),
        ]
    )
    assert_idle(clf, 70_000)


def test_late_single_returned_by_an_ignored_duplicate_release() -> None:
    # Overdue deadlines come first even when the edge itself is thrown away.
    clf = run([("press", 0, None), ("release", 100, None), ("release", 60_000, SINGLE)])
    assert_idle(clf, 70_000)


def test_late_single_returned_by_a_bounced_press() -> None:
    timings = ClickTimings(double_click_ms=DC, hold_ms=HOLD, bounce_ms=1000)
    clf = run([("press", 0, None), ("release", 1000, None), ("press", 1000 + DC, SINGLE)], timings)
    # The press was bounce (< 1000 ms after the release) so nothing new started.
    assert clf.next_deadline() is None


# --- configuration --------------------------------------------------------------------------


def test_default_timings() -> None:
    t = ClickTimings()
    assert (t.double_click_ms, t.hold_ms, t.bounce_ms) == (400, 1500, 30)


def test_timings_are_frozen() -> None:
    t = ClickTimings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.hold_ms = 1  # type: ignore[misc]


def test_zero_bounce_is_allowed() -> None:
    assert ClickTimings(bounce_ms=0).bounce_ms == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("double_click_ms", 0),
        ("double_click_ms", -1),
        ("hold_ms", 0),
        ("hold_ms", -1500),
        ("bounce_ms", -1),
        ("hold_ms", 1.5),
        ("bounce_ms", True),
        ("double_click_ms", "400"),
        ("hold_ms", None),
    ],
)
def test_bad_timings_raise_config_error_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        ClickTimings(**{field: value})  # type: ignore[arg-type]


def test_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="hold_ms"):
        ClickTimings(hold_ms=0)


# --- properties over random edge sequences --------------------------------------------------

timings_st = st.builds(
    ClickTimings,
    double_click_ms=st.integers(1, 600),
    hold_ms=st.integers(1, 2000),
    bounce_ms=st.integers(0, 60),
)
# Gaps: backwards jumps, bounce-sized gaps, and gaps long enough to cross every timer.
gap_st = st.one_of(st.integers(-200, -1), st.integers(0, 70), st.integers(0, 3000))
op_st: st.SearchStrategy[Op] = st.sampled_from(["press", "release", "tick"])
script_st = st.lists(st.tuples(op_st, gap_st), max_size=60)
monotonic_script_st = st.lists(
    st.tuples(st.sampled_from(["press", "release"]), st.integers(0, 3000)), max_size=60
)


class EdgeModel:
    """An independent model of which edges are accepted (duplicates, bounce, clamped time)."""

    def __init__(self, bounce_ms: int) -> None:
        self.bounce_ms = bounce_ms
        self.pressed = False
        self.now: int | None = None
        self.last_edge: int | None = None
        self.accepted_presses = 0

    def feed(self, op: Op, t: int) -> None:
        t = t if self.now is None else max(t, self.now)
        self.now = t
        if op == "tick" or (op == "press") == self.pressed:
            return
        if self.last_edge is not None and t - self.last_edge < self.bounce_ms:
            return
        self.pressed = op == "press"
        self.last_edge = t
        if self.pressed:
            self.accepted_presses += 1


@settings(max_examples=400, deadline=None, database=None)
@given(timings=timings_st, script=script_st, start=st.integers(-(10**6), 10**6))
def test_random_edges_are_safe_and_return_to_idle(
    timings: ClickTimings, script: list[tuple[Op, int]], start: int
) -> None:
    clf = ClickClassifier(timings)
    model = EdgeModel(timings.bounce_ms)
    clicks: list[ClickType] = []
    t = start
    for op, gap in script:
        t += gap
        got = call(clf, op, t)
        model.feed(op, t)
        # One call, at most one click: the result is a single ClickType or None.
        assert got is None or isinstance(got, ClickType)
        if got is not None:
            clicks.append(got)
        # A deadline is never already due once a call has returned (none is left stale).
        deadline = clf.next_deadline()
        assert model.now is not None
        assert deadline is None or deadline > model.now
        assert len(clicks) <= model.accepted_presses

    # Let go of the button (after any bounce) and wait out every timer.
    now = model.now if model.now is not None else start
    if model.pressed:
        now += timings.bounce_ms
        got = clf.release(now)
        model.feed("release", now)
        assert not model.pressed
        if got is not None:
            clicks.append(got)
    now += timings.hold_ms + timings.double_click_ms + timings.bounce_ms
    got = clf.tick(now)
    if got is not None:
        clicks.append(got)

    assert clf.next_deadline() is None
    assert len(clicks) <= model.accepted_presses
    # Every gesture ends in exactly one click: if anything was pressed, something came out.
    assert (len(clicks) >= 1) == (model.accepted_presses >= 1)
    assert_idle(clf, now + timings.bounce_ms)


@settings(max_examples=300, deadline=None, database=None)
@given(timings=timings_st, script=monotonic_script_st)
def test_ticking_or_not_gives_the_same_clicks(
    timings: ClickTimings, script: list[tuple[Literal["press", "release"], int]]
) -> None:
    """A driver that ticks at every deadline and one that never ticks see the same clicks."""
    eager = ClickClassifier(timings)
    lazy = ClickClassifier(timings)
    eager_clicks: list[ClickType] = []
    lazy_clicks: list[ClickType] = []
    t = 0
    for op, gap in script:
        t += gap
        deadline = eager.next_deadline()
        if deadline is not None and deadline <= t:
            got = eager.tick(deadline)
            assert eager.next_deadline() is None  # no expiry arms another timer
            if got is not None:
                eager_clicks.append(got)
        for clf, out in ((eager, eager_clicks), (lazy, lazy_clicks)):
            got = call(clf, op, t)
            if got is not None:
                out.append(got)
    end = t + timings.hold_ms + timings.double_click_ms + 1
    for clf, out in ((eager, eager_clicks), (lazy, lazy_clicks)):
        got = clf.tick(end)
        if got is not None:
            out.append(got)
    assert eager_clicks == lazy_clicks
