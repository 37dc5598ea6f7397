"""Looking into a daemon run in the test's own loop (``gateway.devstack.daemon.running``)."""

from __future__ import annotations

from gateway.daemon import Daemon
from gateway.events import Event, EventType
from gateway.journal import EventFilter


def journaled(daemon: Daemon, *types: EventType) -> list[Event]:
    """Durable events of ``types``, in seq order."""
    assert daemon.journal is not None
    return list(daemon.journal.reader.query(EventFilter(types=tuple(t.value for t in types))))
