"""The JSONL sink's file handling: rotation by size, and a full disk that leaves no half line.

The delivery contract (order, cursor, restart, filter) is in test_sink_contract.py; this file
covers what only a file sink does. The full disk is a real one: a 64 KiB tmpfs.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.sinks.jsonl import append_lines, rotate


def lines_of(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def test_rotation_shifts_files_up_and_drops_the_oldest(tmp_path):
    path = tmp_path / "events.jsonl"
    for generation in range(4):
        path.write_text(f"{generation}\n")
        rotate(path, keep=2)
    assert not path.exists()
    assert (tmp_path / "events.jsonl.1").read_text() == "3\n"
    assert (tmp_path / "events.jsonl.2").read_text() == "2\n"
    assert not (tmp_path / "events.jsonl.3").exists()


def test_keep_zero_rotates_into_nothing(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text("old\n")
    rotate(path, keep=0)
    assert list(tmp_path.iterdir()) == []


def test_a_full_file_is_rotated_before_the_next_batch_never_mid_batch(tmp_path):
    path = tmp_path / "events.jsonl"
    batch = [json.dumps({"seq": i, "pad": "x" * 40}) for i in range(10)]
    append_lines(path, batch, max_bytes=100, keep=3)
    # Over the limit now, but the batch stayed whole in one file.
    assert lines_of(path) == batch
    append_lines(path, ['{"seq":10}'], max_bytes=100, keep=3)
    assert lines_of(tmp_path / "events.jsonl.1") == batch
    assert lines_of(path) == ['{"seq":10}']
    assert oct(path.stat().st_mode & 0o777) == "0o640"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs: a disk that really fills."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"cannot mount a tmpfs in CI: {done.stderr.decode().strip()}")
        pytest.skip(f"no tmpfs here (needs root): {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        with contextlib.suppress(Exception):
            subprocess.run(["umount", str(mount)], check=False)


def test_a_disk_that_fills_mid_batch_leaves_no_half_line(small_disk):
    path = small_disk / "events.jsonl"
    first = [json.dumps({"seq": i, "pad": "y" * 100}) for i in range(100)]
    append_lines(path, first, max_bytes=10**9, keep=1)
    big = [json.dumps({"seq": 100 + i, "pad": "z" * 1000}) for i in range(100)]  # ~100 KB
    with pytest.raises(OSError) as failure:
        append_lines(path, big, max_bytes=10**9, keep=1)
    assert failure.value.errno == errno.ENOSPC
    # The file holds exactly what was written before, every line whole.
    assert lines_of(path) == first
    # Once there is room again the same batch goes whole.
    append_lines(path, big[:10], max_bytes=10**9, keep=1)
    assert lines_of(path) == first + big[:10]
