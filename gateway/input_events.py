"""Payloads about the inputs themselves, rather than what they asked for (docs/reliability.md,
"Network, floods and time").

- ``InputsSuppressed``: a flood summarised — inputs counted rather than journaled one by one
  over ``window_ms`` (``gateway.flood``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Self

from gateway.errors import PayloadError
from gateway.event_kinds import EventType
from gateway.payload_fields import non_negative_int, require

MAX_SUPPRESSED_KEYS: Final = 64


@dataclass(frozen=True, slots=True)
class InputsSuppressed:
    """``counts`` maps what was suppressed to how many: ``button:<name>:<reason>`` for presses
    the policy would only have refused again, ``feeder:<topic>`` for feeder reports coalesced
    into the one change journaled. (Older journals never hold it; readers that predate it see
    an unknown type, as for any new event.)
    """

    TYPE: ClassVar[EventType] = EventType.INPUTS_SUPPRESSED
    counts: Mapping[str, int]
    window_ms: int

    def to_dict(self) -> dict[str, Any]:
        return {"counts": dict(sorted(self.counts.items())), "window_ms": self.window_ms}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        raw: dict[str, Any] = require(data, "counts", dict)
        if len(raw) > MAX_SUPPRESSED_KEYS:
            raise PayloadError("counts", f"more than {MAX_SUPPRESSED_KEYS} keys")
        counts = {str(k): non_negative_int(raw, k) for k in raw}
        return cls(counts, non_negative_int(data, "window_ms"))
