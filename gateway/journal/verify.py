"""Verification: every row's seq, link and hash, rechecked through the chain's one layout."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable

from gateway.journal.chain import check_row, layout
from gateway.journal.rows import COLUMNS, to_chain


def verify_chain(
    conn: sqlite3.Connection,
    genesis_hash: str | None,
    progress: Callable[[int], None] | None = None,
    every: int = 100_000,
    *,
    base_seq: int = 0,
) -> tuple[int, str | None]:
    """Check every row in seq order. Returns (rows checked, first problem or None).

    ``progress(rows_checked)`` is called every ``every`` rows. The loop hashes the stored
    columns through :func:`layout` with no per-row objects (this loop is the whole cost of
    verifying a million rows); a row that fails is then explained by ``check_row``.
    """
    if genesis_hash is None:  # unknown (meta unreadable): trust the first row's seq and link
        try:
            first = conn.execute(
                "SELECT seq, prev_hash FROM events ORDER BY seq LIMIT 1"
            ).fetchone()
        except sqlite3.Error as e:
            return 0, f"the first row is unreadable ({e})"
        if first is None:
            return 0, None
        base_seq, genesis_hash = int(first[0]) - 1, str(first[1])
    expected_prev = genesis_hash
    expected_seq = base_seq + 1
    sha256 = hashlib.sha256
    try:
        for row in conn.execute(f"SELECT {COLUMNS} FROM events ORDER BY seq"):  # noqa: S608
            seq, event_id, type_, at_ms, synced, origin, recovered, payload, prev, stored = row
            try:
                data = layout(prev, seq, event_id, type_, at_ms, synced, origin, recovered, payload)
            except (TypeError, UnicodeError) as e:  # a NULL or a lone surrogate where text was
                where = f"seq {expected_seq}" + ("" if seq == expected_seq else f" (reads {seq!r})")
                return expected_seq - base_seq - 1, f"{where}: malformed row ({e})"
            if seq != expected_seq or prev != expected_prev or sha256(data).hexdigest() != stored:
                problem = check_row(
                    to_chain(row), expected_seq=expected_seq, expected_prev_hash=expected_prev
                )
                checked = expected_seq - base_seq - 1
                return checked, f"seq {seq}: {problem or 'fields not in stored form'}"
            expected_seq = seq + 1
            expected_prev = stored
            if progress is not None and seq % every == 0:
                progress(seq - base_seq)
    except sqlite3.Error as e:  # a damaged page, text that is not UTF-8: name where it stops
        return expected_seq - base_seq - 1, f"seq {expected_seq}: unreadable ({e})"
    return expected_seq - base_seq - 1, None
