"""Journal events → EventBridge PutEvents entries, batches, and what a reply means. Pure.

No boto3 here: the sink (``gateway.sinks.eventbridge``) does the I/O; this module decides.

Entries (docs/architecture.md, "Cloud"): ``EventBusName`` the configured bus, ``Source`` the
configured source, ``DetailType`` the event type in spaced words, ``Time`` when it happened (a
timezone-aware datetime), ``Detail`` the cloud detail as compact JSON.

Size is counted the way AWS documents it for PutEvents ("Calculating PutEvents event entry
size"): ``Time`` is 14 bytes when present; ``Source``, ``DetailType`` and ``Detail`` are the
byte lengths of their UTF-8 forms; each of ``Resources`` likewise (the gateway sends none).
``EventBusName`` does not count. A call takes at most 10 entries whose sizes add up to no more
than 256 KiB.

Planning: the sink reads events after its cursor in seq order and :func:`plan` turns them into
steps, each of which finishes a contiguous run of seqs, so the cursor can move step by step:

- :class:`SendStep` — up to 10 entries within the size limit, together with the filtered-out
  events around them (passed over: the cursor moves past them once the step is done). A step
  may carry no entries at all: a run of filtered-out events only moves the cursor.
- :class:`DeadLetterStep` — an entry that alone exceeds the size limit can never be sent: it
  is dead-lettered (the event stays in the ledger) and the cursor moves past it. A batch never
  reaches past one, so a failed call before it cannot leave it dead-lettered twice.

A held event (in memory only, the disk refusing writes) ends the plan: only durable events are
sent, because the cloud copy carries the chain hash.

Replies (:func:`interpret`): PutEvents answers per entry, in request order. The cursor moves
over the *accepted prefix* only — the entries before the first failed one — so order holds and
the failed entry and everything after it are sent again (entries after it that did get in are
sent twice; ``event-id`` and ``seq`` let a receiver drop the copies). What the first failure
means is :func:`classify`'s decision, documented there.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Final

from gateway.cloud_event import ReplayMark, stored_detail
from gateway.events import ClickType, Event, EventType, parse_enum
from gateway.stored_event import StoredEvent, stored_of

MAX_ENTRIES: Final = 10
MAX_BATCH_BYTES: Final = 262_144  # 256 KiB, for the sum of the entry sizes in one call
TIME_BYTES: Final = 14


# --- entries -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EntrySpec:
    """What every entry of one sink shares."""

    bus: str
    source: str
    gateway_id: str
    # None: every type; otherwise only these are sent and the rest are passed over.
    event_types: frozenset[EventType] | None = None
    replay: ReplayMark | None = None

    def wants(self, event: Event | StoredEvent) -> bool:
        # A stored type is the EventType's value, and a StrEnum member equals its value.
        return self.event_types is None or event.type in self.event_types


@dataclass(frozen=True, slots=True)
class Entry:
    """One journal event as a PutEvents request entry, with its documented size and the
    click type its detail carries (an echo may come back for it)."""

    stored: StoredEvent
    request: Mapping[str, Any]
    size: int
    click: ClickType | None = None

    @property
    def seq(self) -> int:
        return self.stored.seq

    @property
    def oversized(self) -> bool:
        return self.size > MAX_BATCH_BYTES


def event_time(occurred_at_ms: int) -> datetime:
    """The event's time as a timezone-aware UTC datetime (what boto3 takes for ``Time``)."""
    return datetime.fromtimestamp(occurred_at_ms / 1000, tz=UTC)


def utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def entry_size(request: Mapping[str, Any]) -> int:
    """An entry's size as AWS counts it for PutEvents (see the module docstring)."""
    size = TIME_BYTES if request.get("Time") is not None else 0
    for key in ("Source", "DetailType", "Detail"):
        value = request.get(key)
        if value is not None:
            size += utf8_len(str(value))
    for resource in request.get("Resources") or ():
        if resource is not None:
            size += utf8_len(str(resource))
    return size


# The detail-type of each event type, worked out once (the sink builds thousands of entries).
# By the type's stored name (an EventType member, being a StrEnum, finds its entry too).
_DETAIL_TYPES: Final[dict[str, tuple[str, int]]] = {
    t.value: (t.detail_type, utf8_len(t.detail_type)) for t in EventType
}


def _detail_type(event_type: str) -> tuple[str, int]:
    """The detail-type of a stored type name and its size; an unknown name is refused by
    name, as decoding the event would refuse it."""
    found = _DETAIL_TYPES.get(event_type)
    return found if found is not None else _DETAIL_TYPES[parse_enum(EventType, "type", event_type)]


def build_entry(event: Event | StoredEvent, spec: EntrySpec) -> Entry:
    """The entry for an event; a sink passes it as stored (see
    :func:`gateway.cloud_event.stored_detail`), and any other caller may pass it decoded."""
    stored = event if isinstance(event, StoredEvent) else stored_of(event)
    detail_type, detail_type_bytes = _detail_type(stored.type)
    detail, click = stored_detail(stored, spec.gateway_id, spec.replay)
    request: dict[str, Any] = {
        "EventBusName": spec.bus,
        "Source": spec.source,
        "DetailType": detail_type,
        "Time": event_time(stored.occurred_at_ms),
        "Detail": detail,
    }
    # entry_size(request), without measuring the constant parts again.
    size = TIME_BYTES + utf8_len(spec.source) + detail_type_bytes + utf8_len(detail)
    return Entry(stored, request, size, click)


# --- batches -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendStep:
    """Send ``entries`` (possibly none); once all are accepted the cursor moves to
    ``through_seq``, past any filtered-out events in the run."""

    first_seq: int
    through_seq: int
    entries: tuple[Entry, ...]

    @property
    def size(self) -> int:
        return sum(e.size for e in self.entries)


@dataclass(frozen=True, slots=True)
class DeadLetterStep:
    """Give up on ``entry`` (it can never be sent); the cursor moves to its seq."""

    entry: Entry
    error: str

    @property
    def first_seq(self) -> int:
        return self.entry.seq

    @property
    def through_seq(self) -> int:
        return self.entry.seq


Step = SendStep | DeadLetterStep


def oversized_error(entry: Entry) -> str:
    return (
        f"entry is {entry.size} bytes, over the PutEvents limit of {MAX_BATCH_BYTES} bytes "
        "(counted as AWS documents it): it can never be sent"
    )


def iter_plan(
    events: Iterable[Event] | Iterable[StoredEvent],
    spec: EntrySpec,
    *,
    max_entries: int = MAX_ENTRIES,
) -> Iterator[Step]:
    """Turn events read after the cursor (in seq order) into steps (see the module docstring),
    yielding each step as soon as it is complete, so a sink can send one while it plans the
    next (``events`` may be a lazy reader).

    The steps cover the events up to the first held one, contiguously and in order.
    ``max_entries`` (1..10) narrows batches: the sink sends one entry at a time to find which
    entry a whole call was refused for.
    """
    if not 1 <= max_entries <= MAX_ENTRIES:
        raise ValueError(f"max_entries must be 1..{MAX_ENTRIES}, got {max_entries}")
    first: int | None = None
    through = 0
    entries: list[Entry] = []
    total = 0
    for event in events:
        if event.held:
            break
        if not spec.wants(event):
            if first is None:
                first = event.seq
            through = event.seq
            continue
        entry = build_entry(event, spec)
        if entry.oversized or (entries and total + entry.size > MAX_BATCH_BYTES):
            # The filtered-out events just before this entry belong to the step they follow.
            if first is not None:
                yield SendStep(first, through, tuple(entries))
            first, entries, total = None, [], 0
        if entry.oversized:
            yield DeadLetterStep(entry, oversized_error(entry))
            continue
        if first is None:
            first = event.seq
        entries.append(entry)
        total += entry.size
        through = event.seq
        if len(entries) >= max_entries:
            yield SendStep(first, through, tuple(entries))
            first, entries, total = None, [], 0
    if first is not None:
        yield SendStep(first, through, tuple(entries))


def plan(
    events: Iterable[Event] | Iterable[StoredEvent],
    spec: EntrySpec,
    *,
    max_entries: int = MAX_ENTRIES,
) -> list[Step]:
    """All the steps for ``events`` at once (see :func:`iter_plan`)."""
    return list(iter_plan(events, spec, max_entries=max_entries))


# --- replies -------------------------------------------------------------------------------


class Disposition(Enum):
    """What to do about a failure: the decision table is in :func:`classify`."""

    TRANSIENT = "transient"  # try again soon, with back-off; the cursor stays
    CONFIG = "config"  # a setup problem a person must fix: keep trying slowly, say so
    PERMANENT = "permanent"  # this entry can never go in: dead-letter it and move on


# Documented as retryable for PutEvents entries, plus the usual transient/throttling codes.
TRANSIENT_CODES: Final = frozenset(
    {
        "InternalFailure",
        "InternalException",
        "InternalError",
        "InternalServerError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "LimitExceededException",
        "SlowDown",
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
    }
)

# The entry itself is wrong and sending it again cannot help.
PERMANENT_CODES: Final = frozenset(
    {
        "InvalidArgument",
        "MalformedDetail",
        "ValidationException",
        "RedactionFailure",
        "SerializationException",
        "RequestEntityTooLarge",
    }
)

# Permissions, credentials, the bus or the account: a person fixes the setup, after which the
# same entry goes in. Dead-lettering would throw away everything sent during the mistake.
CONFIG_CODES: Final = frozenset(
    {
        "AccessDeniedException",
        "AccessDenied",
        "NotAuthorizedForSourceException",
        "NotAuthorizedForDetailTypeException",
        "InvalidAccountIdException",
        "ResourceNotFoundException",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "MissingAuthenticationToken",
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
        "OptInRequired",
    }
)


def classify(code: str | None) -> Disposition:
    """Retryable or not, for an entry's ErrorCode or a whole call's error code.

    - TRANSIENT: what the PutEvents reference lists as retryable (``InternalFailure``,
      ``ThrottlingException``) and the other transient/throttling codes AWS uses.
    - PERMANENT: the entry is invalid (``InvalidArgument``, ``MalformedDetail``,
      ``ValidationException``, ``RedactionFailure``, …): dead-letter it.
    - CONFIG: access and credentials (``AccessDeniedException``,
      ``NotAuthorizedForSource/DetailTypeException``, ``InvalidAccountIdException``, a missing
      bus, expired or unknown keys). The reference calls these non-retryable, but they are
      the setup's fault, not the entry's: the sink stays put, retries slowly and says why,
      so nothing is dead-lettered while a policy is being fixed.
    - Anything unknown is TRANSIENT: an entry is only given up on for a reason known to be
      its own; an unknown code shows in the status while the backlog waits in the journal.
    """
    if code is None:
        return Disposition.TRANSIENT
    if code in PERMANENT_CODES:
        return Disposition.PERMANENT
    if code in CONFIG_CODES:
        return Disposition.CONFIG
    return Disposition.TRANSIENT


@dataclass(frozen=True, slots=True)
class EntryFailure:
    index: int
    code: str | None
    message: str

    @property
    def disposition(self) -> Disposition:
        return classify(self.code)

    def describe(self) -> str:
        code = self.code or "no error code"
        return f"{code}: {self.message}" if self.message else code


@dataclass(frozen=True, slots=True)
class Reply:
    """A PutEvents response, read in request order."""

    sent: int
    accepted: int  # the accepted prefix: entries before the first failed one
    first_failure: EntryFailure | None
    failed: int  # every failed entry, including those after the first
    # Every entry that got in, the prefix and any after the first failure (those are sent
    # again, so they arrive twice).
    accepted_indices: tuple[int, ...] = ()

    @property
    def complete(self) -> bool:
        return self.first_failure is None


def interpret(response: Mapping[str, Any], sent: int) -> Reply:
    """Read a PutEvents response for ``sent`` entries.

    An entry succeeded if it has an ``EventId`` and no ``ErrorCode``. A response with fewer
    entries than were sent is not trusted past its end: the missing ones count as failed
    (transient), so they are sent again.
    """
    results = response.get("Entries") or []
    first: EntryFailure | None = None
    failed = 0
    ok: list[int] = []
    for index in range(sent):
        result = results[index] if index < len(results) else None
        if not isinstance(result, Mapping):
            failure = EntryFailure(index, None, "missing from the response")
        elif result.get("ErrorCode") or not result.get("EventId"):
            code = result.get("ErrorCode")
            failure = EntryFailure(
                index, None if code is None else str(code), str(result.get("ErrorMessage") or "")
            )
        else:
            ok.append(index)
            continue
        failed += 1
        if first is None:
            first = failure
    accepted = sent if first is None else first.index
    return Reply(
        sent=sent,
        accepted=accepted,
        first_failure=first,
        failed=failed,
        accepted_indices=tuple(ok),
    )


def resume_seq(step: SendStep, reply: Reply) -> int | None:
    """Where the cursor may move after ``reply`` to ``step``: past the accepted prefix (and
    the filtered-out events before the first failed entry), or None if nothing moves."""
    if reply.first_failure is None:
        return step.through_seq
    failed_seq = step.entries[reply.accepted].seq
    # seq is gapless: everything below the failed entry in this step is finished.
    return failed_seq - 1 if failed_seq - 1 >= step.first_seq else None
