"""The demo's script language (``--script``, or steps read from stdin): pure, no I/O.

``press SINGLE|DOUBLE|LONG [gpio|mqtt]; cut; restore; wait drained [SECONDS]; wait SECONDS;
status; quit`` — steps separated by ';' or new lines, '#' starts a comment.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.demo import DemoError
from gateway.events import ClickType

DRAINED_TIMEOUT_S = 60.0
MAX_WAIT_S = 3600.0
VIAS = frozenset({"gpio", "mqtt"})
USAGE = (
    "steps are press SINGLE|DOUBLE|LONG [gpio|mqtt], cut, restore, "
    "wait drained [SECONDS], wait SECONDS, status, quit"
)


@dataclass(frozen=True, slots=True)
class Step:
    verb: str  # press, cut, restore, drained, wait, status, quit
    click: ClickType | None = None
    via: str = "gpio"
    seconds: float = 0.0
    text: str = ""


def parse_script(text: str) -> list[Step]:
    """The steps of ``text``; a DemoError names the first step that is not one."""
    steps: list[Step] = []
    for raw in text.replace("\n", ";").split(";"):
        words = raw.split("#", 1)[0].split()
        if words:
            steps.append(_step(words))
    return steps


def _step(words: list[str]) -> Step:
    verb, args, shown = words[0].lower(), [w.lower() for w in words[1:]], " ".join(words)
    if verb == "press" and 1 <= len(args) <= 2:
        try:
            click = ClickType(args[0].upper())
        except ValueError:
            raise DemoError(f"{shown!r}: press SINGLE, DOUBLE or LONG") from None
        via = args[1] if len(args) == 2 else "gpio"
        if via not in VIAS:
            raise DemoError(f"{shown!r}: press through gpio or mqtt")
        return Step("press", click=click, via=via, text=shown)
    if verb in {"cut", "restore", "status", "quit"} and not args:
        return Step(verb, text=shown)
    if verb == "wait" and args and args[0] == "drained" and len(args) <= 2:
        seconds = _seconds(args[1], shown) if len(args) == 2 else DRAINED_TIMEOUT_S
        return Step("drained", seconds=seconds, text=shown)
    if verb == "wait" and len(args) == 1:
        return Step("wait", seconds=_seconds(args[0], shown), text=shown)
    raise DemoError(f"{shown!r}: {USAGE}")


def _seconds(word: str, shown: str) -> float:
    try:
        value = float(word.removesuffix("s"))
    except ValueError:
        raise DemoError(f"{shown!r}: {word!r} is not a number of seconds") from None
    if not 0 <= value <= MAX_WAIT_S:
        raise DemoError(f"{shown!r}: seconds between 0 and {MAX_WAIT_S:.0f}")
    return value
