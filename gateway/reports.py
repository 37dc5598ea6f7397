"""What the feeder reports, as values: :mod:`gateway.wire` decodes its messages into these, and
the pure state fold (:mod:`gateway.state`) reads them without knowing the wire format."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from gateway.events import Bowl


class DispenseStatus(StrEnum):
    SERVED = "served"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class DispensedReport:
    """The feeder's acknowledgement of a request, from ``cat-feeder/dispensed``."""

    request_id: str
    status: DispenseStatus
    reason: str | None = None
    bowls: tuple[Bowl, ...] | None = None
    ran_ms: int | None = None


@dataclass(frozen=True, slots=True)
class StatesReport:
    """What the gateway reads from ``cat-feeder/states``; other keys are ignored."""

    food_capacity: int | None = None
