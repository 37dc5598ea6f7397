"""What every sink is, and what it reports.

A sink owns a cursor in the journal: the highest seq it has finished with (delivered, or
deliberately passed over). It reads ``seq > cursor`` in order, finishes each event, and only
then moves the cursor. So delivery is at least once and in order, and a sink that cannot
deliver simply stays where it is: offline is the normal case, not an error path.

A sink must provide:

- ``name``: its cursor's name in the journal (stable across versions);
- ``run()``: deliver forever (cancelled at shutdown; must survive its link going down);
- ``status()``: a :class:`SinkStatus` for the status line and ``fmfb journal pending``.
"""

from __future__ import annotations

from typing import Protocol

from gateway.status import SinkStatus

__all__ = ["Sink", "SinkStatus"]


class Sink(Protocol):
    name: str

    async def run(self) -> None: ...

    def status(self) -> SinkStatus: ...
