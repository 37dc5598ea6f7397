"""The hash chain: the documented bytes each journal row's SHA-256 covers.

Each row's ``hash`` is SHA-256 over these nine fields, as UTF-8 text, joined by a single line
feed (``\\n``), with no trailing newline::

    prev_hash        64 lowercase hex digits: the previous row's hash (the genesis hash for seq 1)
    seq              decimal
    event_id         the UUIDv7 text
    type             e.g. FeedRequested
    occurred_at_ms   decimal
    clock_synced     1 or 0
    origin           e.g. button
    recovered        1 or 0
    payload          the row's payload column exactly as stored (compact JSON, no newline)

so anyone can recompute a row with coreutils::

    printf '%s\\n%s\\n%s\\n%s\\n%s\\n%s\\n%s\\n%s\\n%s' "$prev" "$seq" "$id" "$type" \\
        "$ms" "$synced" "$origin" "$recovered" "$payload" | sha256sum

The genesis hash of a fresh journal is 64 zeros; a journal started after a damaged one was set
aside begins from that journal's last known hash, so the two histories stay linked.

Pure functions only: the writer computes, ``verify`` rechecks, both through :func:`layout`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

GENESIS_HASH = "0" * 64


@dataclass(frozen=True, slots=True)
class ChainRow:
    """The stored columns of one journal row, as the chain sees them."""

    seq: int
    event_id: str
    type: str
    occurred_at_ms: int
    clock_synced: bool
    origin: str
    recovered: bool
    payload: str
    prev_hash: str
    hash: str


def layout(  # noqa: PLR0917 - positional: verify calls it once per row
    prev_hash: str,
    seq: int,
    event_id: str,
    type_: str,
    occurred_at_ms: int,
    clock_synced: int,
    origin: str,
    recovered: int,
    payload: str,
) -> bytes:
    """The bytes a row's hash covers, from its stored columns (flags as the stored 0 or 1).

    The one place the layout is written: the writer, ``verify`` and the tools all call it.
    Positional and without defaults because ``verify`` calls it once per row of a million.
    """
    return "\n".join(
        (
            prev_hash,
            str(seq),
            event_id,
            type_,
            str(occurred_at_ms),
            str(clock_synced),
            origin,
            str(recovered),
            payload,
        )
    ).encode("utf-8")


def stored_hash(  # noqa: PLR0917 - the same fields as layout, in its order
    prev_hash: str,
    seq: int,
    event_id: str,
    type_: str,
    occurred_at_ms: int,
    clock_synced: int,
    origin: str,
    recovered: int,
    payload: str,
) -> str:
    """The hash of a row given its stored columns (see :func:`layout`)."""
    return hashlib.sha256(
        layout(
            prev_hash,
            seq,
            event_id,
            type_,
            occurred_at_ms,
            clock_synced,
            origin,
            recovered,
            payload,
        )
    ).hexdigest()


def chain_bytes(
    prev_hash: str,
    *,
    seq: int,
    event_id: str,
    type_: str,
    occurred_at_ms: int,
    clock_synced: bool,
    origin: str,
    recovered: bool,
    payload: str,
) -> bytes:
    """:func:`layout` with named fields and boolean flags."""
    return layout(
        prev_hash,
        seq,
        event_id,
        type_,
        occurred_at_ms,
        1 if clock_synced else 0,
        origin,
        1 if recovered else 0,
        payload,
    )


def chain_hash(
    prev_hash: str,
    *,
    seq: int,
    event_id: str,
    type_: str,
    occurred_at_ms: int,
    clock_synced: bool,
    origin: str,
    recovered: bool,
    payload: str,
) -> str:
    """:func:`stored_hash` with named fields and boolean flags."""
    return hashlib.sha256(
        chain_bytes(
            prev_hash,
            seq=seq,
            event_id=event_id,
            type_=type_,
            occurred_at_ms=occurred_at_ms,
            clock_synced=clock_synced,
            origin=origin,
            recovered=recovered,
            payload=payload,
        )
    ).hexdigest()


def row_hash(row: ChainRow) -> str:
    """The hash ``row`` should carry, recomputed from its own fields."""
    return chain_hash(
        row.prev_hash,
        seq=row.seq,
        event_id=row.event_id,
        type_=row.type,
        occurred_at_ms=row.occurred_at_ms,
        clock_synced=row.clock_synced,
        origin=row.origin,
        recovered=row.recovered,
        payload=row.payload,
    )


def check_row(row: ChainRow, *, expected_seq: int, expected_prev_hash: str) -> str | None:
    """Why ``row`` breaks the chain, or None if it is sound.

    The order of checks names the most useful cause first: a missing row shows as a seq gap, a
    relinked row as a broken link, an edited row as a hash that no longer matches its fields.
    """
    if row.seq != expected_seq:
        return f"expected seq {expected_seq}, found {row.seq} (rows missing or out of order)"
    if row.prev_hash != expected_prev_hash:
        return (
            f"broken link: prev_hash {row.prev_hash[:12]}… does not match the previous row's "
            f"hash {expected_prev_hash[:12]}…"
        )
    actual = row_hash(row)
    if actual != row.hash:
        return f"hash mismatch: row says {row.hash[:12]}…, its fields hash to {actual[:12]}…"
    return None
