"""What one ``fmfb doctor`` check found: pass, fail (with the fix) or skip (and why)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any


class Outcome(StrEnum):
    PASS = "pass"  # noqa: S105 - an outcome, not a password
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True, slots=True)
class Finding:
    check: str
    outcome: Outcome
    detail: str
    fix: str = ""

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def ok(check: str, detail: str) -> Finding:
    return Finding(check, Outcome.PASS, detail)


def bad(check: str, detail: str, fix: str) -> Finding:
    return Finding(check, Outcome.FAIL, detail, fix)


def skip(check: str, detail: str) -> Finding:
    return Finding(check, Outcome.SKIP, detail)
