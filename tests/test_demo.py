"""``fmfb demo``: the pure parts (rendering, the script, the delivery report), and the demo as
a real subprocess (broker, moto, feeder simulator, gateway), scripted and typed."""

from __future__ import annotations

import os
import pty
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.demo import DemoError
from gateway.demo.script import Step, parse_script
from gateway.demo.track import delivery_report
from gateway.demo.view import (
    KEY_HELP,
    EventRow,
    FeederRow,
    Snapshot,
    event_line,
    render,
    status_line,
    summarize,
)
from gateway.events import ClickType, EventType
from gateway.journal import JournalReader
from gateway.status import SinkStatus

REPO = Path(__file__).resolve().parent.parent
FMFB = [sys.executable, "-c", "from gateway.cli import main; main(prog_name='fmfb')"]
DEMO_TIMEOUT_S = 120


# --- rendering -------------------------------------------------------------------------------


def snapshot(**changes: object) -> Snapshot:
    base: dict[str, object] = {
        "journal_seq": 12,
        "events": [
            EventRow(seq, "FeedRequested", f"left click_type=SINGLE n={seq}")
            for seq in range(1, 13)
        ],
        "sinks": [
            SinkStatus("feeder", True, 12, 0),
            SinkStatus("eventbridge", False, 7, 5, "offline: refused"),
        ],
        "feeder": FeederRow(online=True, food_level=84, runs={"left": 3, "right": 1}),
        "internet_up": False,
        "sqs_received": 7,
        "sqs_in_order": True,
        "message": "internet CUT",
    }
    base.update(changes)
    return Snapshot(**base)  # type: ignore[arg-type]


def test_render_shows_every_part_of_the_demo() -> None:
    lines = render(snapshot(), width=120, height=40)
    text = "\n".join(lines)
    assert re.search(r"internet\s+CUT", text)
    assert re.search(r"eventbridge sink\s+OFFLINE\s+cursor\s+7\s+backlog\s+5", text)
    assert re.search(r"feeder sink\s+connected\s+cursor\s+12\s+backlog\s+0", text)
    assert re.search(r"the feeder\s+online\s+food\s+84%", text)
    assert "left bowl ran 3x" in text
    assert "right bowl ran 1x" in text
    assert re.search(r"SQS target\s+7 events received from the bus, in seq order", text)
    assert "journal (seq 12, newest last)" in text
    for help_line in KEY_HELP:
        assert help_line in lines
    assert lines[-1] == "> internet CUT"
    # The journal is newest last, and all of it fits here.
    rows = [line for line in lines if re.match(r"^\s+\d+\s+FeedRequested", line)]
    assert [int(r.split()[0]) for r in rows] == list(range(1, 13))


def test_render_fits_the_terminal_and_keeps_the_newest_events() -> None:
    lines = render(snapshot(), width=40, height=20)
    assert len(lines) <= 20
    assert all(len(line) <= 40 for line in lines)
    rows = [line for line in lines if re.match(r"^\s+\d+\s+FeedRequ", line)]
    assert rows, lines
    seqs = [int(r.split()[0]) for r in rows]
    assert seqs == list(range(13 - len(seqs), 13))  # the newest, in order
    assert any(line.startswith("keys:") for line in lines)


def test_render_up_and_empty_states() -> None:
    snap = snapshot(
        events=[],
        internet_up=True,
        sqs_in_order=False,
        message="",
        feeder=FeederRow(online=None, food_level=None),
    )
    text = "\n".join(render(snap))
    assert re.search(r"internet\s+UP", text)
    assert "(empty)" in text
    assert "OUT OF ORDER" in text
    assert "not heard from" in text
    assert re.search(r"food\s+\?", text)


def test_plain_lines() -> None:
    line = status_line(snapshot())
    assert "internet CUT" in line
    assert "eventbridge OFFLINE cursor 7 backlog 5" in line
    assert "feeder connected cursor 12 backlog 0" in line
    assert "bowls run 4 food 84%" in line
    assert line.endswith("sqs received 7")
    assert event_line(EventRow(3, "FeedRequested", "left")) == (
        "journal: seq    3  FeedRequested      left"
    )


def test_summarize() -> None:
    assert summarize({"bowls": ["left", "right"], "click_type": "LONG", "button": "b"}) == (
        "left+right click_type=LONG button=b"
    )
    assert summarize({"level": 80, "previous": 84}) == "level=80"
    assert summarize({}) == ""


# --- the script ------------------------------------------------------------------------------


def test_parse_script() -> None:
    steps = parse_script(
        "press SINGLE; cut; press double mqtt\npress LONG gpio; restore; "
        "wait drained; wait drained 30; wait 0.5; status  # comment\n; quit"
    )
    assert [s.verb for s in steps] == [
        "press",
        "cut",
        "press",
        "press",
        "restore",
        "drained",
        "drained",
        "wait",
        "status",
        "quit",
    ]
    assert steps[0] == Step("press", click=ClickType.SINGLE, via="gpio", text="press SINGLE")
    assert (steps[2].click, steps[2].via) == (ClickType.DOUBLE, "mqtt")
    assert steps[6].seconds == 30
    assert steps[7].seconds == 0.5


@pytest.mark.parametrize(
    "text",
    ["press TRIPLE", "press SINGLE zigbee", "jump", "wait", "wait soon", "cut now", "wait -1"],
)
def test_parse_script_refuses_unknown_steps(text: str) -> None:
    with pytest.raises(DemoError):
        parse_script(text)


def test_delivery_report() -> None:
    assert delivery_report([1, 2, 3], 1, 3) == ([1, 2, 3], True, True)
    # A redelivered copy does not break the order; a missing seq does break completeness.
    assert delivery_report([1, 2, 2, 4], 1, 4) == ([1, 2, 4], True, False)
    assert delivery_report([2, 1], 1, 2) == ([2, 1], False, True)


# --- the demo itself, as a new user runs it --------------------------------------------------


def run_demo(*args: str, timeout: float = DEMO_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AWS_EC2_METADATA_DISABLED": "true"}
    return subprocess.run(
        [*FMFB, "demo", *args],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _pid_of_mosquitto(out: str) -> int:
    m = re.search(r"^mosquitto: pid (\d+) on 127\.0\.0\.1:(\d+)$", out, re.MULTILINE)
    assert m, out
    assert int(m.group(2)) != 1883
    return int(m.group(1))


def _gone(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return b"mosquitto" not in cmdline


def _eventbridge_backlog(line: str) -> int:
    m = re.search(r"eventbridge (?:connected|OFFLINE) cursor \d+ backlog (\d+)", line)
    assert m, line
    return int(m.group(1))


@pytest.mark.e2e
def test_scripted_demo_cuts_the_internet_and_delivers_everything_in_order(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    script = "press SINGLE; cut; press DOUBLE; press LONG; restore; wait drained; quit"
    result = run_demo("--script", script, "--state-dir", str(state))
    out = result.stdout
    assert result.returncode == 0, f"{out}\n--- stderr ---\n{result.stderr}"
    lines = out.splitlines()

    for click in ("SINGLE", "DOUBLE", "LONG"):
        assert re.search(rf"^pressed {click}: journaled seq \d+ FeedRequested$", out, re.M), out
    assert "internet CUT: the EventBridge sink can no longer reach the AWS emulator" in lines

    # While cut, each press adds to the EventBridge backlog; the link is seen to be down.
    cut_at = lines.index("step: cut")
    restore_at = lines.index("step: restore")
    while_cut = [ln for ln in lines[cut_at:restore_at] if ln.startswith("status:")]
    after_presses = [_eventbridge_backlog(ln) for ln in while_cut[1:]]
    assert len(after_presses) == 2, while_cut
    assert 0 < after_presses[0] < after_presses[1], while_cut
    assert "eventbridge OFFLINE" in while_cut[-1]

    # After the restore it drained: backlog 0, and the SQS target got 1..N once, in order.
    drained = next(ln for ln in lines if ln.startswith("drained: "))
    m = re.search(r"journal seq (\d+);", drained)
    assert m, drained
    last = int(m.group(1))
    assert f"eventbridge cursor {last} backlog 0" in drained
    assert f"feeder cursor {last} backlog 0" in drained
    sqs = next(ln for ln in lines if ln.startswith("sqs seqs: "))
    seqs = [int(x) for x in sqs.removeprefix("sqs seqs: ").split(" (")[0].split()]
    assert seqs == list(range(1, last + 1)), sqs
    assert sqs.endswith("in seq order)")

    # The journal agrees: everything up to the stop went out, in order; the chain is intact.
    with JournalReader.open(state / "journal.db") as reader:
        assert reader.verify()[1] is None
        assert reader.last_seq() == last + 1
        stopped = reader.get(last + 1)
        assert stopped is not None
        assert stopped.type is EventType.GATEWAY_STOPPED
        assert reader.cursor("eventbridge") == last
        events = list(reader.read_after(0, 1000))
    clicks = [
        e.payload.to_dict()["click_type"] for e in events if e.type is EventType.FEED_REQUESTED
    ]
    assert clicks == ["SINGLE", "DOUBLE", "LONG"]
    assert sum(e.type is EventType.FEED_DISPENSED for e in events) == 3
    assert [e.seq for e in events] == list(range(1, last + 2))

    assert _gone(_pid_of_mosquitto(out)), "the private mosquitto is still running"
    assert state.exists()  # --state-dir is kept


@pytest.mark.e2e
def test_demo_in_a_temporary_directory_cleans_up_after_itself() -> None:
    result = run_demo("--script", "press SINGLE mqtt; wait drained; quit")
    out = result.stdout
    assert result.returncode == 0, f"{out}\n--- stderr ---\n{result.stderr}"
    # paho's publish.single() logged this at ERROR for every MQTT press.
    assert "Client is not connected" not in result.stderr
    assert re.search(r"^pressed SINGLE: journaled seq \d+ FeedRequested$", out, re.M), out
    m = re.search(r"^state dir: (.+)$", out, re.MULTILINE)
    assert m, out
    assert not Path(m.group(1)).exists(), "the temporary state dir was not removed"
    assert _gone(_pid_of_mosquitto(out))


@pytest.mark.e2e
def test_a_failing_step_exits_nonzero() -> None:
    result = run_demo("--script", "cut; press SINGLE; wait drained 2; quit")
    assert result.returncode == 1, result.stdout
    assert "FAILED: not drained within 2s" in result.stdout
    assert _gone(_pid_of_mosquitto(result.stdout))


@pytest.mark.e2e
def test_sigterm_stops_everything_cleanly(tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = {**os.environ, "AWS_EC2_METADATA_DISABLED": "true"}
    proc = subprocess.Popen(
        [*FMFB, "demo", "--script", "press SINGLE; wait 120; quit", "--state-dir", str(state)],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        seen: list[str] = []
        deadline = time.monotonic() + 60
        for line in proc.stdout:
            seen.append(line.rstrip("\n"))
            if line.startswith("step: wait 120") or time.monotonic() > deadline:
                break
        assert seen and seen[-1] == "step: wait 120", seen
        proc.send_signal(signal.SIGTERM)
        rest, _err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = "\n".join(seen) + "\n" + rest
    assert proc.returncode == 1, out  # the script did not finish
    assert "interrupted during: wait 120" in out
    with JournalReader.open(state / "journal.db") as reader:
        last = reader.get(reader.last_seq())
    assert last is not None
    assert last.type is EventType.GATEWAY_STOPPED
    assert _gone(_pid_of_mosquitto(out))


@pytest.mark.e2e
def test_with_stdout_not_a_terminal_steps_are_typed_line_by_line() -> None:
    """``scripts/run 2>&1 | tee log``: keys come from a terminal, the output goes to a pipe.
    No curses (it died there with a traceback): plain lines, and steps typed one at a time."""
    env = {**os.environ, "AWS_EC2_METADATA_DISABLED": "true", "TERM": "xterm"}
    terminal, keyboard = pty.openpty()
    proc = subprocess.Popen(
        [*FMFB, "demo"],
        cwd=REPO,
        env=env,
        stdin=keyboard,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(keyboard)
    try:
        assert proc.stdout is not None
        seen: list[str] = []
        for line in proc.stdout:  # until the demo asks for steps (or ends: the assert says)
            seen.append(line.rstrip("\n"))
            if line.startswith("status: "):
                break
        assert any(ln.startswith("no live view") for ln in seen), seen
        os.write(terminal, b"press SINGLE mqtt\nstatus\nquit\n")
        rest, err = proc.communicate(timeout=DEMO_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(terminal)
    out = "\n".join(seen) + "\n" + rest
    assert proc.returncode == 0, f"{out}\n--- stderr ---\n{err}"
    assert "Traceback" not in err, err
    assert "Client is not connected" not in err
    assert re.search(r"^pressed SINGLE: journaled seq \d+ FeedRequested$", out, re.M), out
    assert "step: status" in out
    assert _gone(_pid_of_mosquitto(out))
