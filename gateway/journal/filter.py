"""Which events: the one filter model that ``journal list``, ``tail``, ``stats``, ``export``,
``chart`` and ``replay`` share, and that :meth:`JournalReader.query` turns into SQL.

Every bound is inclusive except ``until_ms``. Time bounds use each event's recorded time, which
may be wrong for events journaled while the clock was not synchronised: seq is the order.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from gateway.errors import FilterError
from gateway.events import Event


@dataclass(frozen=True, slots=True)
class EventFilter:
    types: tuple[str, ...] = ()
    origins: tuple[str, ...] = ()
    from_seq: int | None = None
    to_seq: int | None = None
    since_ms: int | None = None
    until_ms: int | None = None

    def checked(self) -> EventFilter:
        """This filter, if a person's bounds make sense; else FilterError saying why. (An
        empty range made by :meth:`between` is fine: it simply selects nothing.)"""
        if self.from_seq is not None and self.from_seq < 1:
            raise FilterError("--from-seq starts at 1")
        if self.from_seq is not None and self.to_seq is not None and self.to_seq < self.from_seq:
            raise FilterError("--to-seq is before --from-seq")
        return self

    def matches(self, e: Event) -> bool:
        return (
            (not self.types or e.type.value in self.types)
            and (not self.origins or e.origin.value in self.origins)
            and (self.from_seq is None or e.seq >= self.from_seq)
            and (self.to_seq is None or e.seq <= self.to_seq)
            and (self.since_ms is None or e.occurred_at_ms >= self.since_ms)
            and (self.until_ms is None or e.occurred_at_ms < self.until_ms)
        )

    def between(self, after: int, upto: int) -> EventFilter:
        """The same filter, narrowed to seq in (after, upto]."""
        low = after + 1 if self.from_seq is None else max(self.from_seq, after + 1)
        high = upto if self.to_seq is None else min(self.to_seq, upto)
        return dataclasses.replace(self, from_seq=low, to_seq=high)

    def start_after(self, cursor: int | None) -> int:
        """The seq a resumable run reads after: the cursor, or just before ``from_seq``."""
        floor = 0 if self.from_seq is None else self.from_seq - 1
        return max(floor, cursor or 0)

    def end(self, last_seq: int) -> int:
        """The last seq a run may reach, fixed when it starts."""
        return last_seq if self.to_seq is None else min(self.to_seq, last_seq)

    def where(self) -> tuple[str, list[Any]]:
        """The SQL WHERE clause (with its leading space, or empty) and its arguments."""
        where: list[str] = []
        args: list[Any] = []
        for column, values in (("type", self.types), ("origin", self.origins)):
            if values:
                where.append(f"{column} IN ({','.join('?' * len(values))})")
                args.extend(values)
        for clause, value in (
            ("occurred_at_ms >= ?", self.since_ms),
            ("occurred_at_ms < ?", self.until_ms),
            ("seq >= ?", self.from_seq),
            ("seq <= ?", self.to_seq),
        ):
            if value is not None:
                where.append(clause)
                args.append(value)
        return (" WHERE " + " AND ".join(where) if where else ""), args
