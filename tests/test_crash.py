"""Crash loop: SIGKILL the daemon at random moments while presses stream in, over many runs.

Each run starts the daemon on the same state directory, streams feed and press requests at it
over the control socket from two client threads, and kills it (SIGKILL) after a random number
of answers — so the kill lands wherever the daemon happens to be: mid-commit, mid-publish,
redelivering the previous life's backlog (most runs first wait for that backlog to reach the
feeder, some press straight away). After each kill, and after the restarts:

- every request the client saw accepted (an ok answer naming a seq) is in the journal with that
  seq, event id and request id: an answer is given only once the event is durable;
- seq is gapless from 1, and ``JournalReader.verify()`` finds the chain intact;
- each client thread saw its seqs increase (order kept);
- nothing reached the feeder that is not journaled (journal first), and after the restart
  every journaled FeedRequested reaches the feeder at least once (duplicates allowed), because
  the feeder sink resumes from its cursor. The expiry is long, so nothing legitimately expires.

- the feeder received the requests in journal order: the first delivery of each request
  comes in seq order (redeliveries after a restart may repeat older ones).

CI runs ``RUNS`` (100) kills; ``pytest --soak`` (or FMFB_CRASH_RUNS=N) runs 10,000 locally. The
seed is printed and can be fixed with FMFB_CRASH_SEED to replay a failing schedule.
"""

from __future__ import annotations

import os
import random
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from daemon_process import HIGH_CAPS, DaemonProcess
from e2e_probe import Probe
from waiting import wait_for

from gateway.control import call
from gateway.devstack.mosquitto import Mosquitto
from gateway.errors import ControlError

pytestmark = pytest.mark.e2e

RUNS = 100
SOAK_RUNS = 10_000
# Small: each run is cheap (most of it is the daemon's start), so CI affords 100 of them.
MAX_ANSWERS_BEFORE_KILL = 20
ACTION = "cat-feeder/action"


@dataclass(frozen=True)
class Answer:
    seq: int
    event_id: str
    type: str
    request_id: str


class PressStream:
    """Client threads sending feed/press requests to the control socket until stopped."""

    def __init__(self, control: Path, button: str, rng: random.Random, threads: int = 2) -> None:
        self.control = control
        self.button = button
        self._lock = threading.Lock()
        self.answers: list[list[Answer]] = [[] for _ in range(threads)]
        self.unanswered = 0
        self.failure: BaseException | None = None
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(
                target=self._run, args=(i, random.Random(rng.random())), name=f"press-{i}"
            )
            for i in range(threads)
        ]

    def _request(self, rng: random.Random) -> dict[str, Any]:
        if rng.random() < 0.5:
            bowls = rng.choice([["left"], ["right"], ["left", "right"]])
            return {"op": "feed", "bowls": bowls}
        return {"op": "press", "button": self.button, "click": rng.choice(["SINGLE", "DOUBLE"])}

    def _run(self, index: int, rng: random.Random) -> None:
        try:
            self._stream(index, rng)
        except BaseException as e:  # surfaced by stop(): a thread's assert must fail the test
            self.failure = e

    def _stream(self, index: int, rng: random.Random) -> None:
        while not self._stop.is_set():
            try:
                answer = call(self.control, self._request(rng), timeout_s=5.0)
            except (ControlError, OSError, ValueError):
                # Killed mid-request, or not up: the outcome is unknown, so nothing is promised.
                with self._lock:
                    self.unanswered += 1
                continue
            assert answer.get("ok"), answer
            assert not answer["held"], answer  # the disk is healthy: every answer is durable
            event = answer["event"]
            with self._lock:
                self.answers[index].append(
                    Answer(
                        seq=event["seq"],
                        event_id=event["event_id"],
                        type=event["type"],
                        request_id=event["payload"]["request_id"],
                    )
                )

    @property
    def count(self) -> int:
        if self.failure is not None:
            raise AssertionError(f"a press thread failed: {self.failure!r}") from self.failure
        with self._lock:
            return sum(len(a) for a in self.answers)

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)
            assert not t.is_alive(), f"{t.name} did not stop"
        if self.failure is not None:
            raise AssertionError(f"a press thread failed: {self.failure!r}") from self.failure


def check_journal(daemon: DaemonProcess, accepted: list[Answer], starts: int) -> set[str]:
    """The invariants after a kill. Returns the journaled FeedRequested request ids."""
    with daemon.reader() as reader:
        checked, problem = reader.verify()
        assert problem is None, problem
        rows = list(reader.chain_rows())
        assert [r.seq for r in rows] == list(range(1, len(rows) + 1)), "seq has a gap"
        assert checked == len(rows)
        events = {e.seq: e for e in reader.query()}
        cursor = reader.cursor("feeder")
    for a in accepted:
        event = events.get(a.seq)
        assert event is not None, f"accepted seq {a.seq} ({a.type}) is not in the journal"
        assert event.event_id == a.event_id
        assert event.type.value == a.type
        assert event.payload.to_dict()["request_id"] == a.request_id
    types = [e.type.value for e in events.values()]
    assert types.count("GatewayStarted") == starts
    assert types.count("GatewayStopped") == 0  # every stop so far was a SIGKILL
    assert cursor is not None
    assert 0 <= cursor <= len(rows)
    return {
        e.payload.to_dict()["request_id"]
        for e in events.values()
        if e.type.value == "FeedRequested"
    }


def check_delivery_order(feeder: Probe, seq_of: dict[str, int]) -> None:
    """Each request's first delivery comes after the first delivery of every request journaled
    before it (a restart resends from the cursor, so repeats of older ones may follow)."""
    firsts: list[int] = []
    seen: set[str] = set()
    for m in feeder.messages(ACTION):
        request_id = m.json()["id"]
        if request_id not in seen:
            seen.add(request_id)
            firsts.append(seq_of[request_id])
    assert firsts == sorted(firsts), "the feeder got requests out of journal order"


def request_seqs(daemon: DaemonProcess) -> dict[str, int]:
    return {
        e.payload.to_dict()["request_id"]: e.seq for e in daemon.events(types=["FeedRequested"])
    }


def delivered_ids(feeder: Probe) -> set[str]:
    return {m.json()["id"] for m in feeder.messages(ACTION)}


def wait_delivered(feeder: Probe, request_ids: set[str], what: str) -> None:
    feeder.wait_messages(
        lambda _ms: request_ids <= delivered_ids(feeder),
        timeout=20,
        what=f"{what} to reach the feeder",
    )


@pytest.mark.timeout(0)  # bounded by RUNS; --soak runs for hours
def test_sigkill_at_random_moments_loses_nothing_accepted(
    broker: Mosquitto, tmp_path: Path, pytestconfig: pytest.Config
) -> None:
    runs = int(
        os.environ.get("FMFB_CRASH_RUNS", SOAK_RUNS if pytestconfig.getoption("soak") else RUNS)
    )
    seed = int(os.environ.get("FMFB_CRASH_SEED", random.SystemRandom().randrange(2**32)))
    print(f"crash loop seed: FMFB_CRASH_SEED={seed}")
    rng = random.Random(seed)
    accepted: list[Answer] = []
    journaled: set[str] = set()
    daemon = DaemonProcess(
        broker.port,
        workdir=tmp_path / "gw",
        policy=HIGH_CAPS,
        feeding={"expiry_s": 86_400, "ack_timeout_s": 3600},
    )
    with daemon, Probe(broker.host, broker.port, subscribe=[ACTION]) as feeder:
        for run in range(runs):
            daemon.start()
            if rng.random() < 0.6:
                # The feeder sink resumes from its cursor: everything journaled before the kill
                # reaches the feeder (at least once) after the restart.
                wait_delivered(feeder, journaled, f"run {run}: the backlog from before the kill")
            # Otherwise press (and perhaps kill) while the sink is still sending that backlog;
            # a later life, at the latest the last one, must deliver it.
            stream = PressStream(daemon.control_path, daemon.button_name, rng)
            kill_after = (
                rng.randint(0, 3)
                if rng.random() < 0.25
                else rng.randint(0, MAX_ANSWERS_BEFORE_KILL)
            )
            stream.start()
            try:
                wait_for(
                    lambda: stream.count >= kill_after,  # noqa: B023 - used in this iteration
                    timeout=20,
                    what=f"run {run}: {kill_after} answers",
                )
                daemon.kill()
            finally:
                stream.stop()
            for answers in stream.answers:
                seqs = [a.seq for a in answers]
                assert seqs == sorted(seqs), f"run {run}: one client saw seqs out of order"
                accepted.extend(answers)
            assert len({a.seq for a in accepted}) == len(accepted), "a seq was answered twice"

            journaled = check_journal(daemon, accepted, starts=run + 1)
            # Journal first: the feeder never got a request that is not in the journal.
            assert delivered_ids(feeder) <= journaled, "a feed reached the feeder unjournaled"
            check_delivery_order(feeder, request_seqs(daemon))

        # A last, clean life: the backlog drains, SIGTERM, the chain verifies.
        daemon.start()
        wait_delivered(feeder, journaled, "the last backlog")
        wait_for(lambda: daemon.sink_status()["backlog"] == 0, what="the feeder cursor")
        assert daemon.stop() == 0, daemon.stderr_text()
        with daemon.reader() as reader:
            assert reader.verify()[1] is None
            last = reader.get(reader.last_seq())
            assert last is not None
            assert last.type.value == "GatewayStopped"
        ids = [m.json()["id"] for m in feeder.messages(ACTION)]
    print(
        f"{runs} kills: {len(accepted)} answers, {len(journaled)} requests journaled, "
        f"{len(ids)} deliveries ({len(ids) - len(set(ids))} repeated)"
    )
    # The schedule really exercised something: presses were accepted and requests delivered.
    assert sum(a.type == "FeedRequested" for a in accepted) > 0
    assert journaled
