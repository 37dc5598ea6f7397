"""What the demo follows: the journal's newest rows, the feed requests not yet settled, and
what reached the SQS target. Pure: events in, rows and verdicts out."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from gateway.demo.view import EventRow, summarize
from gateway.devstack.aws import first_arrivals
from gateway.events import Event, EventType

JOURNAL_ROWS = 200
SETTLING = frozenset(
    {EventType.FEED_DISPENSED, EventType.FEED_UNCONFIRMED, EventType.FEED_REJECTED}
)


@dataclass
class Tracker:
    """The newest journal rows and the requests not settled (no outcome journaled yet)."""

    seen: int = 0
    rows: deque[EventRow] = field(default_factory=lambda: deque(maxlen=JOURNAL_ROWS))
    events: deque[Event] = field(default_factory=lambda: deque(maxlen=JOURNAL_ROWS))
    unsettled: set[str] = field(default_factory=set)

    def add(self, event: Event) -> EventRow:
        payload = event.payload.to_dict()
        row = EventRow(event.seq, event.type.value, summarize(payload))
        self.rows.append(row)
        self.events.append(event)
        self.seen = event.seq
        request_id = payload.get("request_id")
        if event.type is EventType.FEED_REQUESTED and request_id:
            self.unsettled.add(str(request_id))
        elif event.type in SETTLING:
            self.unsettled.discard(str(request_id))
        return row

    def journaled_click(self, after_seq: int, click: str) -> Event | None:
        """The first FeedRequested/FeedRejected for ``click`` after ``after_seq``, if any."""
        for event in self.events:
            if (
                event.seq > after_seq
                and event.type in {EventType.FEED_REQUESTED, EventType.FEED_REJECTED}
                and event.payload.to_dict().get("click_type") == click
            ):
                return event
        return None


def delivery_report(seqs: Sequence[int], first: int, last: int) -> tuple[list[int], bool, bool]:
    """Distinct seqs in first-arrival order; whether they arrived in order; whether every seq
    in ``first..last`` is there."""
    distinct = first_arrivals(seqs)
    seen = set(distinct)
    in_order = all(a < b for a, b in itertools.pairwise(distinct))
    complete = all(s in seen for s in range(first, last + 1))
    return distinct, in_order, complete
