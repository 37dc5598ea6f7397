"""Every script under scripts/ (and .ci/run) passes shellcheck with no findings."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = [*sorted(p for p in (ROOT / "scripts").iterdir() if p.is_file()), ROOT / ".ci" / "run"]

pytestmark = pytest.mark.skipif(
    shutil.which("shellcheck") is None,
    reason="shellcheck is not installed (scripts/install-deps installs it)",
)


def test_the_scripts_are_found() -> None:
    names = {p.name for p in SCRIPTS}
    assert {"install-deps", "install-pi", "run", "test"} <= names


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shellcheck_is_clean(script: Path) -> None:
    assert script.read_text(encoding="utf-8").startswith("#!/usr/bin/env bash\n")
    result = subprocess.run(
        # -x follows `source`d files; --severity=style reports everything shellcheck knows.
        ["shellcheck", "-x", "--severity=style", "--shell=bash", str(script)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
