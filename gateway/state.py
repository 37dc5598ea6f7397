"""The gateway's working state, folded from the journal: a pure projection.

Decisions (the safety policy, "journal only on change", what a feeder acknowledgement means)
read this state, and every event the gateway appends is applied to it the moment it is queued,
so the next decision sees it. At start-up the daemon rebuilds it from the journal's recent
window, so caps, dedupe and pending acknowledgements survive a restart.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, replace
from enum import StrEnum

from gateway.events import (
    Bowl,
    Event,
    FeedDispensed,
    FeederOffline,
    FeederOnline,
    FeedRejected,
    FeedRequested,
    FeedUnconfirmed,
    FoodLevelChanged,
    Payload,
    RefusedBy,
    RejectReason,
)
from gateway.reports import DispensedReport, DispenseStatus


class RequestStatus(StrEnum):
    REQUESTED = "requested"  # accepted by the gateway, not yet acknowledged by the feeder
    DISPENSED = "dispensed"
    REFUSED = "refused"  # by the feeder
    UNCONFIRMED = "unconfirmed"  # the feeder did not acknowledge in time
    EXPIRED = "expired"  # expired in the journal before it could be sent


@dataclass(frozen=True, slots=True)
class RequestRecord:
    request: FeedRequested
    at_ms: int
    status: RequestStatus = RequestStatus.REQUESTED


class GatewayState:
    """Recent feeds per bowl, known request ids, the feeder's last reports.

    ``window_ms`` bounds memory: requests older than it are forgotten (the cap period and
    dedupe window both fit inside it).
    """

    MAX_REQUESTS = 10_000

    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self.feeds: dict[Bowl, deque[int]] = {b: deque() for b in Bowl}
        self.requests: OrderedDict[str, RequestRecord] = OrderedDict()
        self.food_level: int | None = None
        self.feeder_online: bool | None = None

    # --- folding ---------------------------------------------------------------------------

    def apply(self, payload: Payload, *, at_ms: int) -> None:
        """Fold one event in. Called in seq order, each event once."""
        match payload:
            case FeedRequested():
                for bowl in payload.bowls:
                    self.feeds[bowl].append(at_ms)
                self.requests[payload.request_id] = RequestRecord(payload, at_ms)
                self._prune(at_ms)
            case FeedDispensed():
                self._set_status(payload.request_id, RequestStatus.DISPENSED)
            case FeedUnconfirmed():
                self._set_status(payload.request_id, RequestStatus.UNCONFIRMED)
            case FeedRejected(refused_by=RefusedBy.FEEDER):
                self._set_status(payload.request_id, RequestStatus.REFUSED)
            case FeedRejected(reason=RejectReason.EXPIRED):
                self._set_status(payload.request_id, RequestStatus.EXPIRED)
            case FoodLevelChanged():
                self.food_level = payload.level
            case FeederOnline():
                self.feeder_online = True
            case FeederOffline():
                self.feeder_online = False
            case _:
                pass

    def apply_event(self, event: Event) -> None:
        self.apply(event.payload, at_ms=event.occurred_at_ms)

    def _set_status(self, request_id: str, status: RequestStatus) -> None:
        record = self.requests.get(request_id)
        # A late acknowledgement after "unconfirmed" still records what really happened.
        if record is not None and record.status in (
            RequestStatus.REQUESTED,
            RequestStatus.UNCONFIRMED,
        ):
            self.requests[request_id] = replace(record, status=status)

    def _prune(self, now_ms: int) -> None:
        horizon = now_ms - self.window_ms
        for times in self.feeds.values():
            while times and times[0] < horizon:
                times.popleft()
        while self.requests and (
            len(self.requests) > self.MAX_REQUESTS
            or next(iter(self.requests.values())).at_ms < horizon
        ):
            self.requests.popitem(last=False)

    # --- reading ---------------------------------------------------------------------------

    def awaiting_ack(self) -> list[RequestRecord]:
        """Accepted requests the feeder has not answered, oldest first."""
        return [r for r in self.requests.values() if r.status is RequestStatus.REQUESTED]


# --- feeder reports: what the journal should say, if anything ------------------------------


def food_level_event(state: GatewayState, level: int) -> FoodLevelChanged | None:
    """A FoodLevelChanged only when the level differs from the last one journaled."""
    if state.food_level == level:
        return None
    return FoodLevelChanged(level=level, previous=state.food_level)


def availability_event(state: GatewayState, online: bool) -> FeederOnline | FeederOffline | None:
    if state.feeder_online is online:
        return None
    return FeederOnline() if online else FeederOffline()


def acknowledgement_event(
    state: GatewayState, report: DispensedReport
) -> FeedDispensed | FeedRejected | None:
    """What a feeder's acknowledgement means for the ledger.

    None for an id this gateway does not know (another gateway's, or long forgotten) and for a
    repeat of an answer already journaled (QoS 1 redelivers): neither is news.
    """
    record = state.requests.get(report.request_id)
    if record is None or record.status not in (
        RequestStatus.REQUESTED,
        RequestStatus.UNCONFIRMED,
    ):
        return None
    request = record.request
    if report.status is DispenseStatus.SERVED:
        return FeedDispensed(
            request_id=request.request_id,
            bowls=report.bowls or request.bowls,
            ran_ms=report.ran_ms if report.ran_ms is not None else request.portion_ms,
        )
    return FeedRejected.of(request, report.reason or "refused", RefusedBy.FEEDER)
