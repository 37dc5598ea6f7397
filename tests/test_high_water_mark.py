"""The high-water mark (``<journal>.seq``) stays readable whatever the request ids are.

The mark is what detects a lost tail (docs/reliability.md, fault 4): a mark that cannot be read
turns that check off without a word. Request ids may be up to 128 characters of any printable
text, so 24 remembered feeds do not always fit its 2 KiB: the oldest are dropped, the mark is
never cut. A mark an earlier version did cut still gives its id and seq.
"""

from __future__ import annotations

import shutil

import pytest

from gateway.errors import JournalTailLostError
from gateway.events import Bowl, ClickType, FeedRequested, Origin
from gateway.journal import Journal, new_event_id, open_new_event
from gateway.journal.sidecar import FEEDS_KEPT, MARK_BYTES, mark_path, read_mark
from gateway.wire import MAX_REQUEST_ID_CHARS

LONG_IDS = {
    "ascii": "r" * MAX_REQUEST_ID_CHARS,
    # Four UTF-8 bytes a character, and quotes and backslashes JSON must escape.
    "wide": "🐈" * (MAX_REQUEST_ID_CHARS - 4) + '"\\"\\',
}


def feed(request_id: str, i: int):
    payload = FeedRequested(
        request_id=request_id,
        bowls=(Bowl.LEFT, Bowl.RIGHT),
        portion_ms=5000,
        expires_at_ms=1_800_000_300_000,
        origin=Origin.CLOUD,
        click_type=ClickType.SINGLE,
    )
    return open_new_event(
        payload, origin=Origin.CLOUD, now_ms=1_800_000_000_000 + i, clock_synced=True
    )


async def append_feeds(journal: Journal, stem: str, count: int) -> list[str]:
    ids = [f"{i:03d}{stem}"[:MAX_REQUEST_ID_CHARS] for i in range(count)]
    for i, request_id in enumerate(ids):
        await journal.append(feed(request_id, i))
    return ids


@pytest.mark.parametrize("kind", sorted(LONG_IDS))
async def test_the_mark_holds_the_last_seq_and_the_newest_feeds_that_fit(tmp_path, kind):
    path = tmp_path / "j.db"
    journal = Journal.open(path)
    journal.start()
    ids = await append_feeds(journal, LONG_IDS[kind], FEEDS_KEPT + 6)
    await journal.aclose()

    assert len(mark_path(path).read_bytes()) == MARK_BYTES
    mark = read_mark(path)
    assert mark is not None, "the mark is unreadable"
    assert mark.seq == len(ids)
    kept = [request_id for _, _, request_id, _ in mark.feeds]
    assert kept, "no feed fitted"
    assert kept == ids[-len(kept) :], "not the newest feeds, in order"
    assert all(bowls == ["left", "right"] for *_, bowls in mark.feeds)


async def test_gateway_made_ids_keep_all_the_feeds_the_mark_promises(tmp_path):
    """Two-bowl feeds with the gateway's own ids (36 characters) at seven-digit seqs: the old
    mark was cut, and so unreadable, from seq 100,000 on."""
    path = tmp_path / "j.db"
    journal = Journal.open(path, base_seq=1_000_000)
    journal.start()
    ids = [new_event_id() for _ in range(FEEDS_KEPT + 3)]
    for i, request_id in enumerate(ids):
        await journal.append(feed(request_id, i))
    await journal.aclose()

    mark = read_mark(path)
    assert mark is not None, "the mark is unreadable"
    assert mark.seq == 1_000_000 + len(ids)
    assert [request_id for _, _, request_id, _ in mark.feeds] == ids[-FEEDS_KEPT:]


@pytest.mark.parametrize("kind", sorted(LONG_IDS))
async def test_a_lost_wal_is_detected_after_feeds_with_the_longest_ids(tmp_path, kind):
    """Fault 4 with the longest ids: the main file without its WAL is below the mark."""
    path = tmp_path / "j.db"
    journal = Journal.open(path)
    journal.start()
    await append_feeds(journal, LONG_IDS[kind], 2)
    await journal.aclose()  # a clean stop: these reach the main file
    journal = Journal.open(path)
    journal.start()
    ids = await append_feeds(journal, LONG_IDS[kind], FEEDS_KEPT + 6)
    lost = tmp_path / "lost"
    lost.mkdir()
    # What a deleted -wal and a crash leave: the main file and the mark, as they stand.
    shutil.copyfile(path, lost / "j.db")
    shutil.copyfile(mark_path(path), mark_path(lost / "j.db"))
    await journal.aclose()

    with pytest.raises(JournalTailLostError) as raised:
        Journal.open(lost / "j.db")
    assert f"seq {2 + len(ids)} was already answered" in str(raised.value)


def test_a_mark_cut_by_an_earlier_version_still_gives_its_seq(tmp_path):
    path = tmp_path / "j.db"
    feeds = ", ".join(f'[{i}, 1800000000000, "{"🐈" * 100}", ["left"]]' for i in range(24))
    text = f"0193c0de-journal 4242 [{feeds}]\n".encode()
    assert len(text) > MARK_BYTES
    mark_path(path).write_bytes(text[:MARK_BYTES])  # cut mid-character, as they were

    mark = read_mark(path)
    assert mark is not None
    assert (mark.journal_id, mark.seq, mark.feeds) == ("0193c0de-journal", 4242, ())


@pytest.mark.parametrize("content", [b"", b"\0" * MARK_BYTES, b"not a mark", b" 12 []\n"])
def test_a_mark_without_an_id_and_seq_is_no_mark(tmp_path, content):
    path = tmp_path / "j.db"
    mark_path(path).write_bytes(content)
    assert read_mark(path) is None
