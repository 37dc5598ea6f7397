"""The echo ledger (gateway.echo), pure: one credit per send, absorbed one to one within the
window, and bounded when no echo ever comes back."""

from __future__ import annotations

from gateway.echo import EchoLedger
from gateway.events import ClickType

WINDOW_MS = 600_000
START_MS = 1_800_000_000_000


def test_two_sends_in_one_second_absorb_two_echoes_and_no_third() -> None:
    ledger = EchoLedger(WINDOW_MS)
    ledger.forwarded(ClickType.SINGLE, START_MS + 100, START_MS + 200)
    ledger.forwarded(ClickType.SINGLE, START_MS + 900, START_MS + 950)
    second = START_MS // 1000
    assert ledger.take(ClickType.SINGLE, second, START_MS + 2_000)
    assert ledger.take(ClickType.SINGLE, second, START_MS + 2_000)
    assert not ledger.take(ClickType.SINGLE, second, START_MS + 2_000)
    assert ledger.absorbed == 2


def test_a_credit_expires_after_the_window() -> None:
    ledger = EchoLedger(WINDOW_MS)
    ledger.forwarded(ClickType.DOUBLE, START_MS, START_MS)
    assert not ledger.take(ClickType.DOUBLE, START_MS // 1000, START_MS + WINDOW_MS + 1)


def test_a_ledger_that_never_sees_an_echo_stays_bounded() -> None:
    """A bus with no rule or Lambda behind it: a press a minute for 30 days leaves only the
    credits of about the last two windows, not 43,200."""
    ledger = EchoLedger(WINDOW_MS)
    minute = 60_000
    for i in range(30 * 24 * 60):
        at = START_MS + i * minute
        ledger.forwarded(ClickType.SINGLE, at, at)
    assert len(ledger) <= 2 * WINDOW_MS // minute + 1


def test_the_periodic_prune_keeps_credits_younger_than_the_window() -> None:
    ledger = EchoLedger(WINDOW_MS)
    ledger.forwarded(ClickType.SINGLE, START_MS, START_MS)  # the first send prunes (nothing)
    young = START_MS + WINDOW_MS - 1_000
    ledger.forwarded(ClickType.LONG, young, young)
    old_second = START_MS // 1000
    # A whole window after the first prune: this send prunes again, with `young` 1 s old.
    later = START_MS + WINDOW_MS + 1
    ledger.forwarded(ClickType.DOUBLE, later, later)
    assert not ledger.take(ClickType.SINGLE, old_second, later)  # expired and dropped
    assert ledger.take(ClickType.LONG, young // 1000, later + 5_000)
