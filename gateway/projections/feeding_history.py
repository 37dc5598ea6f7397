"""The feeding history: every feed request and what became of it, and the food level over time.

A SQLite database people can query (``sqlite3 history.db``), built by
``fmfb project feeding-history --out history.db``. Insert-only tables (one row per event, so a
rebuild is a stream of bulk inserts) and views over them for the questions people ask.

View ``feeds`` — one row per feed request the gateway saw, keyed by the seq of the event that
opened it (a request id seen again in a ``duplicate`` rejection is a row of its own), with its
``status``:

- ``requested``   accepted and sent to the feeder, no answer yet;
- ``dispensed``   the feeder ran the motor (``ran_ms``); wins over any other answer;
- ``refused``     refused (``reason``: cap, too-soon, echo, duplicate, or the feeder's own;
                  ``refused_by``: gateway or feeder);
- ``expired``     refused because it was too old to act on (reason ``expired``);
- ``unconfirmed`` the feeder never said (``waited_ms``).

``bowls`` is ``left``, ``right`` or ``left,right``; times are ms since the epoch as recorded
(``clock_synced`` says whether the gateway's clock was synchronised then).

View ``feeds_per_bowl_per_day`` — per UTC day and bowl: requests and how many of each status.

Tables: ``requests`` (FeedRequested, and FeedRejected refused by the gateway on arrival),
``outcomes`` (FeedDispensed, FeedUnconfirmed, and FeedRejected refused by the feeder) and
``food_levels`` (FoodLevelChanged: ``level`` %, ``previous``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from gateway.projections import Insert, Op, Row

NAME: Final = "feeding-history"

SCHEMA: Final = (
    """CREATE TABLE requests (
        seq             INTEGER PRIMARY KEY,  -- the event that opened the request
        request_id      TEXT    NOT NULL,
        requested_at_ms INTEGER NOT NULL,
        clock_synced    INTEGER NOT NULL,
        origin          TEXT    NOT NULL,     -- button, cli, cloud
        button          TEXT,
        click_type      TEXT,
        bowls           TEXT    NOT NULL,     -- left | right | left,right
        portion_ms      INTEGER NOT NULL,
        expires_at_ms   INTEGER NOT NULL,
        reason          TEXT,                 -- set when the gateway refused it on arrival
        refused_by      TEXT
    )""",
    """CREATE TABLE outcomes (
        seq        INTEGER PRIMARY KEY,
        request_id TEXT    NOT NULL,
        kind       TEXT    NOT NULL CHECK (kind IN ('dispensed','refused','expired','unconfirmed')),
        at_ms      INTEGER NOT NULL,
        ran_ms     INTEGER,
        waited_ms  INTEGER,
        reason     TEXT,
        refused_by TEXT
    )""",
    "CREATE INDEX outcomes_by_request ON outcomes (request_id)",
    """CREATE TABLE food_levels (
        seq          INTEGER PRIMARY KEY,
        at_ms        INTEGER NOT NULL,
        clock_synced INTEGER NOT NULL,
        level        INTEGER NOT NULL,
        previous     INTEGER
    )""",
    """CREATE VIEW feeds AS
        SELECT r.seq, r.request_id, r.requested_at_ms, r.clock_synced, r.origin, r.button,
               r.click_type, r.bowls, r.portion_ms, r.expires_at_ms,
               CASE WHEN r.reason IS NULL THEN coalesce(o.kind, 'requested')
                    WHEN r.reason = 'expired' THEN 'expired' ELSE 'refused' END AS status,
               coalesce(r.reason, o.reason) AS reason,
               coalesce(r.refused_by, o.refused_by) AS refused_by,
               CASE WHEN r.reason IS NULL THEN o.seq ELSE r.seq END AS resolved_seq,
               CASE WHEN r.reason IS NULL THEN o.at_ms ELSE r.requested_at_ms END
                   AS resolved_at_ms,
               o.ran_ms, o.waited_ms
        FROM requests AS r
        LEFT JOIN outcomes AS o ON r.reason IS NULL AND o.seq = (
            SELECT x.seq FROM outcomes AS x
            WHERE x.request_id = r.request_id AND x.seq > r.seq
            ORDER BY x.kind = 'dispensed' DESC, x.seq DESC LIMIT 1)""",
    """CREATE VIEW feeds_per_bowl_per_day AS
        SELECT date(f.requested_at_ms / 1000, 'unixepoch') AS day,
               b.bowl AS bowl,
               count(*) AS requests,
               sum(f.status = 'dispensed') AS dispensed,
               sum(f.status = 'refused') AS refused,
               sum(f.status = 'expired') AS expired,
               sum(f.status = 'unconfirmed') AS unconfirmed,
               sum(f.status = 'requested') AS requested
        FROM feeds AS f
        JOIN (SELECT 'left' AS bowl UNION ALL SELECT 'right') AS b
          ON instr(',' || f.bowls || ',', ',' || b.bowl || ',') > 0
        GROUP BY day, bowl
        ORDER BY day, bowl""",
)


def _request(row: Row, reason: str | None, refused_by: str | None) -> Insert:
    d = row.data
    get = d.get
    return Insert(
        "requests",
        (
            row.seq,
            d["request_id"],
            row.occurred_at_ms,
            row.clock_synced,
            get("origin", row.origin),
            get("button"),
            get("click_type"),
            ",".join(d["bowls"]),
            d["portion_ms"],
            d["expires_at_ms"],
            reason,
            refused_by,
        ),
    )


class FeedingHistory:
    """The shipped projection (see the module docstring for its tables and views)."""

    name: Final = NAME
    version: Final = 1
    schema: Final = SCHEMA
    event_types: Final = frozenset(
        {"FeedRequested", "FeedRejected", "FeedDispensed", "FeedUnconfirmed", "FoodLevelChanged"}
    )

    def apply(self, row: Row) -> Iterable[Op]:  # noqa: PLR0911 - one return per type
        d = row.data
        t = row.type
        if t == "FeedRequested":
            return (_request(row, None, None),)
        if t == "FeedDispensed":
            outcome = (row.seq, d["request_id"], "dispensed", row.occurred_at_ms)
            return (Insert("outcomes", (*outcome, d["ran_ms"], None, None, None)),)
        if t == "FoodLevelChanged":
            level = (row.seq, row.occurred_at_ms, row.clock_synced, d["level"])
            return (Insert("food_levels", (*level, d.get("previous"))),)
        if t == "FeedUnconfirmed":
            outcome = (row.seq, d["request_id"], "unconfirmed", row.occurred_at_ms)
            return (Insert("outcomes", (*outcome, None, d["waited_ms"], None, None)),)
        if t == "FeedRejected":
            reason, refused_by = d["reason"], d["refused_by"]
            if refused_by != "feeder":
                # The gateway refused it on arrival: it never was an open request.
                return (_request(row, reason, refused_by),)
            kind = "expired" if reason == "expired" else "refused"
            outcome = (row.seq, d["request_id"], kind, row.occurred_at_ms)
            return (Insert("outcomes", (*outcome, None, None, reason, refused_by)),)
        return ()


PROJECTION: Final = FeedingHistory()
