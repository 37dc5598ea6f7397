"""The safety policy: whether a feed request is accepted. Pure: no I/O, no clock reads.

A request is checked in this order, and the first failing check names the rejection:

1. ``duplicate`` — its request id was already accepted (a cloud command retried, an MQTT
   redelivery of a command).
2. ``expired`` — it is past its expiry (it waited too long, e.g. while the broker was down).
3. ``too-soon`` — one of its bowls was fed less than ``min_gap_s`` ago.
4. ``cap`` — one of its bowls already had ``cap_per_bowl`` feeds in the rolling
   ``cap_period_s``.

A request for both bowls is accepted or rejected whole: half a LONG press surprises people more
than none.

Times are the wall clock (the only clock that survives a restart). A feed recorded in the
future by more than ``CLOCK_SKEW_MS`` means the clock went back (a Pi without a real-time
clock, cold-booted without network): such a feed cannot be placed in time, so it is left out of
the gap and the cap rather than blocking meals until the clock is fixed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gateway.events import Bowl, FeedRejected, FeedRequested, RefusedBy, RejectReason
from gateway.state import GatewayState

CLOCK_SKEW_MS = 60_000


@dataclass(frozen=True, slots=True)
class Limits:
    cap_per_bowl: int
    cap_period_ms: int
    min_gap_ms: int


def decide(
    request: FeedRequested, state: GatewayState, limits: Limits, now_ms: int
) -> FeedRequested | FeedRejected:
    """``request`` itself if accepted, else the FeedRejected that says why."""
    reason = rejection_reason(request, state, limits, now_ms)
    if reason is None:
        return request
    return FeedRejected.of(request, reason.value, RefusedBy.GATEWAY)


def rejection_reason(
    request: FeedRequested, state: GatewayState, limits: Limits, now_ms: int
) -> RejectReason | None:
    if request.request_id in state.requests:
        return RejectReason.DUPLICATE
    if now_ms >= request.expires_at_ms:
        return RejectReason.EXPIRED
    for bowl in request.bowls:
        times = [t for t in state.feeds[bowl] if t <= now_ms + CLOCK_SKEW_MS]
        if times and now_ms - max(times) < limits.min_gap_ms:
            return RejectReason.TOO_SOON
    for bowl in request.bowls:
        in_period = [
            t
            for t in state.feeds[bowl]
            if now_ms - limits.cap_period_ms < t <= now_ms + CLOCK_SKEW_MS
        ]
        if len(in_period) >= limits.cap_per_bowl:
            return RejectReason.CAP
    return None


def next_allowed_ms(bowls: Iterable[Bowl], state: GatewayState, limits: Limits, now_ms: int) -> int:
    """The earliest wall-clock time at which the gap and the cap both allow a feed of
    ``bowls`` (``now_ms`` if they allow it now): what a person refused as ``too-soon`` or
    ``cap`` wants to know. Feeds the clock cannot place (see the module docstring) are left
    out, as in :func:`rejection_reason`."""
    earliest = now_ms
    for bowl in bowls:
        times = sorted(t for t in state.feeds[bowl] if t <= now_ms + CLOCK_SKEW_MS)
        if times:
            earliest = max(earliest, times[-1] + limits.min_gap_ms)
        in_period = [t for t in times if now_ms - limits.cap_period_ms < t]
        over = len(in_period) - limits.cap_per_bowl
        if over >= 0:
            # The feed that must leave the rolling period for one more to fit.
            earliest = max(earliest, in_period[over] + limits.cap_period_ms)
    return earliest
