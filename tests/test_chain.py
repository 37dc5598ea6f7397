"""The hash chain: the documented byte layout, recomputable with hashlib and with coreutils, and
``check_row`` naming the most useful cause first."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import subprocess
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import gateway.journal.chain
from gateway.events import Bowl, ClickType, FeedRejected, Origin, RefusedBy, canonical_json
from gateway.journal.chain import (
    GENESIS_HASH,
    ChainRow,
    chain_bytes,
    chain_hash,
    check_row,
    row_hash,
)

# A payload as the journal stores it, with spaces, quotes, a backslash, a percent sign (printf
# must not read it as a format) and non-ASCII text.
PAYLOAD = canonical_json(
    FeedRejected(
        request_id="0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
        bowls=(Bowl.LEFT, Bowl.RIGHT),
        portion_ms=10_000,
        expires_at_ms=1_800_000_300_000,
        origin=Origin.BUTTON,
        button='Küche "big" button 100% \\ 🐱',
        click_type=ClickType.LONG,
        reason="bol vide — déjà servi",
        refused_by=RefusedBy.FEEDER,
    ).to_dict()
)

FIELDS: dict[str, Any] = {
    "seq": 42,
    "event_id": "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c",
    "type_": "FeedRejected",
    "occurred_at_ms": 1_800_000_000_123,
    "clock_synced": True,
    "origin": "button",
    "recovered": False,
    "payload": PAYLOAD,
}
PREV = hashlib.sha256(b"the previous row").hexdigest()
utf8_text = st.text(st.characters(codec="utf-8"))


def documented_bytes(prev: str, f: dict[str, Any]) -> bytes:
    """The layout written out by hand from the module docstring."""
    return (
        f"{prev}\n{f['seq']}\n{f['event_id']}\n{f['type_']}\n{f['occurred_at_ms']}\n"
        f"{1 if f['clock_synced'] else 0}\n{f['origin']}\n{1 if f['recovered'] else 0}\n"
        f"{f['payload']}"
    ).encode()


def test_genesis_is_64_zeros() -> None:
    assert GENESIS_HASH == "0" * 64


def test_chain_bytes_follow_the_documented_layout() -> None:
    data = chain_bytes(PREV, **FIELDS)
    assert data == documented_bytes(PREV, FIELDS)
    assert not data.endswith(b"\n")
    lines = data.split(b"\n")
    assert len(lines) == 9
    assert lines[5] == b"1"  # clock_synced
    assert lines[7] == b"0"  # recovered
    assert lines[8].decode() == PAYLOAD


def test_chain_hash_is_sha256_of_the_layout() -> None:
    expected = hashlib.sha256(documented_bytes(PREV, FIELDS)).hexdigest()
    assert chain_hash(PREV, **FIELDS) == expected
    assert re.fullmatch(r"[0-9a-f]{64}", expected)


@given(
    prev=st.sampled_from([GENESIS_HASH, PREV]),
    seq=st.integers(1, 2**62),
    event_id=st.text(st.characters(codec="utf-8", exclude_characters="\n"), min_size=1),
    type_=st.sampled_from(["FeedRequested", "FeederOnline"]),
    occurred_at_ms=st.integers(0, 2**62),
    clock_synced=st.booleans(),
    origin=st.sampled_from(["button", "cli", "feeder"]),
    recovered=st.booleans(),
    payload=st.dictionaries(utf8_text, utf8_text).map(canonical_json),
)
def test_chain_hash_matches_hashlib_for_any_row(prev: str, **fields: Any) -> None:
    assert chain_hash(prev, **fields) == hashlib.sha256(documented_bytes(prev, fields)).hexdigest()


def documented_shell_command() -> str:
    """The ``printf ... | sha256sum`` pipeline exactly as gateway.journal.chain's docstring
    shows it."""
    doc = gateway.journal.chain.__doc__
    assert doc is not None
    match = re.search(r"printf .*?\| sha256sum", doc, re.DOTALL)
    assert match is not None, "the chain docstring shows a printf | sha256sum command"
    return match.group(0)


@pytest.mark.parametrize(
    ("prev", "synced", "recovered"), [(PREV, True, False), (GENESIS_HASH, False, True)]
)
def test_chain_hash_matches_the_documented_coreutils_command(
    prev: str, synced: bool, recovered: bool
) -> None:
    fields = {**FIELDS, "clock_synced": synced, "recovered": recovered}
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LC_ALL": "C.UTF-8",
        "prev": prev,
        "seq": str(fields["seq"]),
        "id": fields["event_id"],
        "type": fields["type_"],
        "ms": str(fields["occurred_at_ms"]),
        "synced": "1" if synced else "0",
        "origin": fields["origin"],
        "recovered": "1" if recovered else "0",
        "payload": fields["payload"],
    }
    result = subprocess.run(
        ["bash", "-c", documented_shell_command()],
        env=env,
        capture_output=True,
        check=True,
        timeout=30,
    )
    digest = result.stdout.decode().split()[0]
    assert digest == chain_hash(prev, **fields)


def test_every_field_is_covered_by_the_hash() -> None:
    base = chain_hash(PREV, **FIELDS)
    changes: dict[str, Any] = {
        "seq": 43,
        "event_id": FIELDS["event_id"][:-1] + "d",
        "type_": "FeedRequested",
        "occurred_at_ms": FIELDS["occurred_at_ms"] + 1,
        "clock_synced": False,
        "origin": "cli",
        "recovered": True,
        "payload": PAYLOAD.replace("10000", "10001"),
    }
    for key, value in changes.items():
        assert chain_hash(PREV, **{**FIELDS, key: value}) != base, key
    assert chain_hash(GENESIS_HASH, **FIELDS) != base


def test_field_boundaries_are_unambiguous() -> None:
    # Moving text across a field boundary must change the hash: the separator is part of it.
    a = chain_hash(PREV, **{**FIELDS, "origin": "button", "payload": "{}"})
    b = chain_hash(PREV, **{**FIELDS, "origin": "butto", "payload": "n{}"})
    assert a != b


# --- check_row -------------------------------------------------------------------------------


def sound_row(prev: str = PREV, seq: int = 42) -> ChainRow:
    fields = {**FIELDS, "seq": seq}
    return ChainRow(
        seq=seq,
        event_id=fields["event_id"],
        type=fields["type_"],
        occurred_at_ms=fields["occurred_at_ms"],
        clock_synced=fields["clock_synced"],
        origin=fields["origin"],
        recovered=fields["recovered"],
        payload=fields["payload"],
        prev_hash=prev,
        hash=chain_hash(prev, **fields),
    )


def test_sound_row_passes() -> None:
    row = sound_row()
    assert row_hash(row) == row.hash
    assert check_row(row, expected_seq=42, expected_prev_hash=PREV) is None


def test_a_chain_of_rows_links() -> None:
    prev = GENESIS_HASH
    for seq in range(1, 6):
        row = sound_row(prev, seq)
        assert check_row(row, expected_seq=seq, expected_prev_hash=prev) is None
        prev = row.hash


def test_seq_gap_is_reported_first() -> None:
    # Wrong seq, wrong link and wrong hash all at once: the gap is named.
    row = dataclasses.replace(sound_row(), prev_hash=GENESIS_HASH, payload="{}")
    reason = check_row(row, expected_seq=41, expected_prev_hash=PREV)
    assert reason is not None
    assert "expected seq 41, found 42" in reason


def test_broken_link_is_reported_before_a_hash_mismatch() -> None:
    row = dataclasses.replace(sound_row(), prev_hash=GENESIS_HASH, payload="{}")
    reason = check_row(row, expected_seq=42, expected_prev_hash=PREV)
    assert reason is not None
    assert reason.startswith("broken link")
    assert PREV[:12] in reason


def test_relinked_row_with_a_consistent_hash_is_still_a_broken_link() -> None:
    # Someone recomputed the row's hash over a different predecessor: the fields agree with the
    # hash, but the link to the real previous row is gone.
    row = sound_row(prev=GENESIS_HASH)
    assert row_hash(row) == row.hash
    reason = check_row(row, expected_seq=42, expected_prev_hash=PREV)
    assert reason is not None
    assert reason.startswith("broken link")


@pytest.mark.parametrize(
    "change",
    [
        {"payload": PAYLOAD.replace("10000", "99999")},
        {"event_id": "another-id"},
        {"type": "FeedDispensed"},
        {"occurred_at_ms": 1},
        {"clock_synced": False},
        {"origin": "cloud"},
        {"recovered": True},
        {"hash": GENESIS_HASH},
    ],
    ids=lambda c: next(iter(c)),
)
def test_an_edited_row_is_a_hash_mismatch(change: dict[str, Any]) -> None:
    row = dataclasses.replace(sound_row(), **change)
    reason = check_row(row, expected_seq=42, expected_prev_hash=PREV)
    assert reason is not None
    assert reason.startswith("hash mismatch")
