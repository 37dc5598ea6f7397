"""Turn a physical button's edges into clicks: SINGLE, DOUBLE or LONG.

The classifier is pure: no I/O, no threads, no clock. The driver (the daemon) tells it when the
button went down (:meth:`ClickClassifier.press`), went up (:meth:`ClickClassifier.release`) and
when a timer it armed has fired (:meth:`ClickClassifier.tick`), always with an integer
millisecond *monotonic* timestamp. :meth:`ClickClassifier.next_deadline` says when the driver
must call ``tick`` next (``None``: no timer needed). Every call returns at most one click.

Filtering, before any edge reaches the state machine
----------------------------------------------------
* Time never goes backwards: a ``t_ms`` earlier than the latest one seen is treated as equal to
  it (a driver that reads the clock before taking a lock may deliver calls slightly out of order).
* An overdue deadline is always handled first, whatever the call. A driver that is late (or
  never ticks at all) therefore gets exactly the clicks an eager driver would, only later.
* Duplicate edges (a press while already pressed, a release while released) are ignored. The
  button is assumed to start released.
* Bounce: an edge less than ``bounce_ms`` after the last *accepted* edge is ignored. (Measured
  from the last accepted edge, not the last seen one, so that a burst of contact chatter cannot
  keep extending itself.) A gap of exactly ``bounce_ms`` is accepted; ``bounce_ms=0`` disables.

Whether an edge is accepted depends only on the edges and their times, never on the phase below.

The state machine
-----------------
::

    phase        button  deadline (what tick() does then)     edges
    -----------  ------  -----------------------------------  -----------------------------------
    IDLE         up      none                                 press -> FIRST_DOWN
    FIRST_DOWN   down    press + hold_ms: emit LONG -> HELD   release -> FIRST_UP
    FIRST_UP     up      release + double_click_ms:           press -> SECOND_DOWN
                           emit SINGLE -> IDLE
    SECOND_DOWN  down    press + hold_ms: emit DOUBLE -> HELD release: emit DOUBLE -> SETTLING
    HELD         down    none (the click is already out)      release -> IDLE (emits nothing)
    SETTLING     either  up: last release + double_click_ms   press: absorbed (no deadline while
                           -> IDLE, emits nothing               down); release: absorbed, the
                                                                deadline restarts from it

Boundaries. A deadline is reached when ``t >= deadline``, for ``tick`` and edges alike, so the
answer never depends on whether the driver ticked first:

* the double-click window is half-open: a second press at ``release + double_click_ms - 1`` makes
  DOUBLE; one at exactly ``release + double_click_ms`` finds SINGLE already due (that call
  returns SINGLE) and starts a new gesture;
* a press released at ``press + hold_ms - 1`` is short; at exactly ``press + hold_ms`` it is LONG
  (returned by that release, if no tick came first).

Decisions the brief left open:

* A second press held for ``hold_ms`` is still just DOUBLE, never LONG: it is emitted at
  ``second press + hold_ms`` (as LONG would be), so a stuck button does not hold the click back
  forever, and the release that follows emits nothing.
* After a DOUBLE released normally, the machine SETTLES: further clicks are absorbed until the
  button has been up for ``double_click_ms``. A triple click is one DOUBLE, not DOUBLE then
  SINGLE: for a feeder, an extra portion is the expensive mistake.
* After a LONG (or a held DOUBLE) the release returns straight to IDLE: the user has already
  paused for ``hold_ms``, so a following tap is a new, deliberate gesture.

Every phase gets back to IDLE once the button is up and ``double_click_ms`` have passed, and each
gesture emits exactly one click, which is emitted on a transition *out of* FIRST_DOWN, FIRST_UP or
SECOND_DOWN; so clicks never outnumber accepted presses.

A lost edge (say a very short real release swallowed as bounce) is not fatal: the classifier
believes the button is still down, may emit LONG, and the next accepted release resynchronises it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, auto

from gateway.errors import ConfigError
from gateway.events import ClickType

__all__ = ["ClickClassifier", "ClickTimings"]


@dataclass(frozen=True, slots=True)
class ClickTimings:
    """How clicks are told apart; all in integer milliseconds."""

    # A second press starting less than this long after the first release makes DOUBLE.
    double_click_ms: int = 400
    # Held this long => LONG, emitted at the hold time (while still held), not on release.
    hold_ms: int = 1500
    # Edges closer than this to the previous accepted edge are bounce and ignored.
    bounce_ms: int = 30

    def __post_init__(self) -> None:
        _check_ms("double_click_ms", self.double_click_ms, minimum=1)
        _check_ms("hold_ms", self.hold_ms, minimum=1)
        _check_ms("bounce_ms", self.bounce_ms, minimum=0)


def _check_ms(name: str, value: object, *, minimum: int) -> None:
    # bool is an int subclass, but ``True`` is not a duration (it would read as 1 ms).
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name}: expected an integer number of milliseconds, got {value!r}")
    if value < minimum:
        bound = "positive" if minimum == 1 else f"at least {minimum}"
        raise ConfigError(f"{name}: must be {bound}, got {value}")


class _Phase(Enum):
    IDLE = auto()
    FIRST_DOWN = auto()
    FIRST_UP = auto()
    SECOND_DOWN = auto()
    HELD = auto()
    SETTLING = auto()


class ClickClassifier:
    """The state machine described in the module docstring; one instance per button."""

    __slots__ = ("_deadline", "_last_edge_ms", "_now_ms", "_phase", "_pressed", "_timings")

    def __init__(self, timings: ClickTimings) -> None:
        self._timings = timings
        self._phase = _Phase.IDLE
        # The debounced button level; kept apart from the phase because SETTLING is either.
        self._pressed = False
        # When the current phase times out; None while nothing is timed.
        self._deadline: int | None = None
        # The latest time seen by any call (times never go backwards past it).
        self._now_ms: int | None = None
        # The time of the last accepted edge, for the bounce filter.
        self._last_edge_ms: int | None = None

    @property
    def timings(self) -> ClickTimings:
        return self._timings

    def press(self, t_ms: int) -> ClickType | None:
        """The button went down at ``t_ms``."""
        t = self._advance(t_ms)
        click = self._expire(t)
        if self._accept(t, pressed=True):
            self._on_press(t)  # a press never emits: clicks come from releases and deadlines
        return click

    def release(self, t_ms: int) -> ClickType | None:
        """The button went up at ``t_ms``."""
        t = self._advance(t_ms)
        click = self._expire(t)
        if self._accept(t, pressed=False):
            edge_click = self._on_release(t)
            # Only SECOND_DOWN emits on release, and no expiry ever leads into SECOND_DOWN, so
            # one call can never produce two clicks.
            assert click is None or edge_click is None
            click = click or edge_click
        return click

    def tick(self, t_ms: int) -> ClickType | None:
        """Time has reached ``t_ms``: emit whatever click is due by then."""
        return self._expire(self._advance(t_ms))

    def next_deadline(self) -> int | None:
        """When the driver must call :meth:`tick` next, or ``None`` if no timer is needed."""
        return self._deadline

    # --- internals ---------------------------------------------------------------------------

    def _advance(self, t_ms: int) -> int:
        # A time earlier than one already seen is taken as "now": deadlines must not un-expire
        # and the bounce filter must not see a negative gap.
        if self._now_ms is not None and t_ms < self._now_ms:
            return self._now_ms
        self._now_ms = t_ms
        return t_ms

    def _accept(self, t: int, *, pressed: bool) -> bool:
        """Debounce: True if this edge is real, and record it as the button's new level."""
        if pressed == self._pressed:
            return False  # duplicate: the button is already there
        if self._last_edge_ms is not None and t - self._last_edge_ms < self._timings.bounce_ms:
            return False  # contact chatter right after a real edge
        self._pressed = pressed
        self._last_edge_ms = t
        return True

    def _expire(self, t: int) -> ClickType | None:
        """Handle the current deadline if ``t`` has reached it.

        No expiry arms a new deadline, so one check per call is enough however late it comes.
        """
        if self._deadline is None or t < self._deadline:
            return None
        self._deadline = None
        match self._phase:
            case _Phase.FIRST_DOWN:
                self._phase = _Phase.HELD
                return ClickType.LONG
            case _Phase.SECOND_DOWN:
                # Decision: a held second press is still DOUBLE, emitted at the hold time.
                self._phase = _Phase.HELD
                return ClickType.DOUBLE
            case _Phase.FIRST_UP:
                self._phase = _Phase.IDLE
                return ClickType.SINGLE
            case _:
                # SETTLING ends quietly: the DOUBLE was emitted on the release before it.
                self._phase = _Phase.IDLE
                return None

    def _on_press(self, t: int) -> None:
        hold = self._timings.hold_ms
        match self._phase:
            case _Phase.IDLE:
                self._phase = _Phase.FIRST_DOWN
                self._deadline = t + hold
            case _Phase.FIRST_UP:
                # Not expired (checked first), so this press is inside the double-click window.
                self._phase = _Phase.SECOND_DOWN
                self._deadline = t + hold
            case _Phase.SETTLING:
                # Absorbed; the settle timer restarts on its release, none runs while it is down.
                self._deadline = None
            case _:
                pass  # FIRST_DOWN, SECOND_DOWN, HELD: the button is down, so _accept refused it

    def _on_release(self, t: int) -> ClickType | None:
        window = self._timings.double_click_ms
        match self._phase:
            case _Phase.FIRST_DOWN:
                # Not expired, so shorter than hold_ms: wait to see whether a second press comes.
                self._phase = _Phase.FIRST_UP
                self._deadline = t + window
            case _Phase.SECOND_DOWN:
                self._phase = _Phase.SETTLING
                self._deadline = t + window
                return ClickType.DOUBLE
            case _Phase.HELD:
                self._phase = _Phase.IDLE
                self._deadline = None
            case _Phase.SETTLING:
                self._deadline = t + window
            case _:
                pass  # IDLE, FIRST_UP: the button is up, so _accept refused it
        return None
