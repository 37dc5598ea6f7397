"""The EventBridge sink: journaled events → PutEvents on the configured bus, in seq order.

It reads the journal from its own cursor, lets :mod:`gateway.eventbridge_entries` plan the
steps (batches of at most 10 entries within 256 KiB, filtered-out events passed over,
oversized ones dead-lettered) and sends one batch at a time. The cursor moves only over what
is finished: the accepted prefix of a reply, a passed-over event, a dead-lettered one.

Two layers of retrying, each doing what it is good at:

- inside a call, botocore's "standard" retry mode retries throttling, 5xx and connection
  errors with its own jittered back-off and retry quota. ``max_attempts`` from the config is
  botocore's ``retries.max_attempts``: retries after the first attempt (5: up to 6 attempts);
- around calls, the sink's outage loop: when a call still fails, the cursor stays, the sink
  says "offline" in its status, logs the first failure loudly and the rest quietly, and tries
  again with :class:`~gateway.backoff.Backoff`. Offline is the normal case: the journal keeps
  growing and the backlog is sent, in order, once the link is back.

A reply can partly fail. The entries before the first failed one are accepted and the cursor
moves over them; the failed entry and everything after it are sent again (those after it that
got in arrive twice — ``event-id`` and ``seq`` let receivers drop the copies). A failed entry
is only dead-lettered when the code says the entry itself is bad; access and credential codes
are a setup problem and are retried slowly instead (see ``classify``). When a whole call is
refused as invalid, the sink sends that batch's entries one by one to find the culprit, and
dead-letters only it.

boto3 is blocking: calls run on one worker thread of the sink's own, one batch in flight. A
daemon thread, not ``asyncio.to_thread``: at shutdown the loop's default executor is joined,
and a call stuck on a dead link would hold up the stop for its whole timeout. To keep up with
a backlog, a planner task reads and plans batches ahead on the loop, and the worker is handed
several consecutive batches at once; it sends them one after another and stops at the first
that does not fully succeed, so the order is the same as sending them one by one. Two runs
are with it at once, so that it starts the next as one ends instead of waiting for the loop;
a run that does not go in whole halts the runs after it (they send nothing: ``_Halt``), and the
next pass starts again from the cursor.

The cursor is written to the journal at most every ``CURSOR_SAVE_S`` while a backlog drains
and at once when the sink catches up, fails or stops: after a crash it may be a little behind
what was delivered (those events are sent again), never ahead.

Only durable events are sent: the cloud copy carries the chain hash, which a held event (the
disk refusing writes) does not have yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
)

from gateway.backoff import Backoff
from gateway.config import EventBridgeConfig
from gateway.errors import CredentialsError
from gateway.eventbridge_entries import (
    MAX_ENTRIES,
    DeadLetterStep,
    Disposition,
    Entry,
    EntrySpec,
    Reply,
    SendStep,
    Step,
    interpret,
    iter_plan,
    resume_seq,
)
from gateway.sinks.base import SinkContext, SinkStatus
from gateway.sinks.eventbridge_calls import CallWorker, describe_call_error, events_client
from gateway.sinks.follower import Follower, short_error
from gateway.stored_event import StoredEvent, decode

log = logging.getLogger(__name__)

# Events read from the journal at a time. Each read is a new SQLite statement and read
# transaction; 200 at a time cost measurably less per event than 50 in a backlog drain
# (bench/eventbridge_drain.py), for a few hundred KiB held while they are planned.
READ_BATCH: Final = 200
PLAN_AHEAD: Final = 16  # steps planned ahead of the one in flight
RUN_STEPS: Final = 8  # batches handed to the worker thread at a time (sent one by one)
# Runs with the worker at once: it starts the next as one ends, rather than waiting for the
# loop (busy planning, perhaps) to read the replies and hand it another.
RUNS_HANDED: Final = 2
CURSOR_SAVE_S: Final = 0.05  # while a backlog drains, the cursor is written this often


@dataclass(slots=True)
class EventBridgeCounters:
    """What this sink does beyond every sink's counters (delivered, dead-lettered, passed
    over: in its follower's status), since it started."""

    batches: int = 0  # calls that got an answer
    retries: int = 0  # botocore's retries inside calls (RetryAttempts)
    failed_calls: int = 0  # calls that still failed after botocore's retries
    partial_failures: int = 0  # answers in which some entries failed
    duplicates: int = 0  # entries accepted after a failed one: they are sent again

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Answer:
    """A PutEvents response and what it means, read on the worker thread (which needs the
    meaning to know whether to go on with the run)."""

    response: Mapping[str, Any]
    reply: Reply


Outcome = Answer | BaseException | None


@dataclass(frozen=True, slots=True)
class _Handed:
    """A run of steps given to the worker thread, and what it will answer."""

    steps: list[SendStep]
    future: asyncio.Future[list[Outcome]]


class _Halt:
    """One pass's stop sign for the worker thread: raised there when a run does not go in
    whole, and on the loop when the pass ends. A run of the pass that finds it raised sends
    nothing, so runs handed ahead never overtake a failure: the next pass starts again from
    the cursor. (Each pass has its own: a bool written by one thread and read by the other.)"""

    __slots__ = ("halted",)

    def __init__(self) -> None:
        self.halted = False


class _StepBuffer:
    """Steps planned ahead: the planner puts them in, the sender takes runs of them."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.steps: deque[Step] = deque()
        self._not_empty = asyncio.Event()
        self._not_full = asyncio.Event()

    async def put(self, step: Step) -> None:
        while len(self.steps) >= self.size:
            self._not_full.clear()
            await self._not_full.wait()
        self.steps.append(step)
        self._not_empty.set()

    async def wait_for_steps(self, planner: asyncio.Task[None]) -> None:
        while not self.steps:
            self._not_empty.clear()
            waiter = asyncio.ensure_future(self._not_empty.wait())
            try:
                await asyncio.wait({waiter, planner}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not waiter.done():
                    waiter.cancel()
            if planner.done():
                planner.result()  # raises what stopped the planner
                raise RuntimeError("the EventBridge planner stopped")

    def starts_with_a_send(self) -> bool:
        return bool(self.steps) and isinstance(self.steps[0], SendStep)

    def take_sends(self, limit: int) -> list[SendStep]:
        """Up to ``limit`` consecutive send steps (the buffer starts with one)."""
        return [s for s in self.take_run(limit) if isinstance(s, SendStep)]

    def take_run(self, limit: int) -> list[Step]:
        """A dead letter alone, or up to ``limit`` consecutive send steps."""
        run = [self.steps.popleft()]
        if isinstance(run[0], SendStep):
            while len(run) < limit and self.steps and isinstance(self.steps[0], SendStep):
                run.append(self.steps.popleft())
        self._not_full.set()
        return run


class EventBridgeSink:
    name = "eventbridge"

    # A setup problem (credentials, permissions) that a person has to fix is retried slowly;
    # a link that comes and goes, with the settings' retry_min_s..retry_max_s.
    CONFIG_RETRY_FIRST_S = 5.0
    CONFIG_RETRY_MAX_S = 300.0

    def __init__(self, context: SinkContext, settings: EventBridgeConfig) -> None:
        config = context.config
        self.config = config
        self.eb = settings
        self.journal = context.journal
        self.intake = context.intake
        self.clock = context.clock
        self.follower = Follower(self.name, settings, context, save_every_s=CURSOR_SAVE_S)
        self.spec = EntrySpec(
            bus=settings.bus,
            source=settings.source,
            gateway_id=config.gateway_id,
            event_types=self.follower.event_types,
        )
        self.counters = EventBridgeCounters()
        self._config_backoff = Backoff(
            max(self.CONFIG_RETRY_FIRST_S, settings.retry_min_s),
            max(self.CONFIG_RETRY_MAX_S, settings.retry_max_s),
        )
        # After a whole call was refused as invalid: one entry per call up to this seq.
        self._isolate_through = 0
        self._client: Any = None
        self._worker = CallWorker(f"{self.name}-put")

    # --- Sink ------------------------------------------------------------------------------

    @property
    def cursor(self) -> int:
        return self.follower.cursor

    def status(self) -> SinkStatus:
        return self.follower.status()

    async def run(self) -> None:
        log.info(
            "EventBridge sink: bus %s, source %s, from seq %d%s",
            self.eb.bus,
            self.eb.source,
            self.follower.cursor,
            f" ({self.eb.endpoint_url})" if self.eb.endpoint_url else "",
        )
        try:
            while True:
                await self._pass()
        finally:
            self._worker.stop()

    async def _pass(self) -> None:
        """Send from the cursor until a step cannot be finished; the next pass starts again
        from the cursor, which moved only over what is finished.

        A planner task reads and plans steps ahead while batches are in flight, and the worker
        thread is handed a run of consecutive batches at a time: it sends them one after the
        other (one batch in flight) and stops at the first that does not fully succeed, so
        order holds and the loop wakes once per run rather than once per batch.
        """
        buffer = _StepBuffer(PLAN_AHEAD)
        planner = asyncio.create_task(
            self._plan(buffer, self.follower.cursor), name="eventbridge-plan"
        )
        halt = _Halt()
        handed: deque[_Handed] = deque()
        try:
            while True:
                # Keep RUNS_HANDED runs with the worker, so that it starts the next as soon as
                # one ends (never past a dead letter: that moves the cursor, which must wait
                # for the runs before it).
                while len(handed) < RUNS_HANDED and buffer.starts_with_a_send():
                    handed.append(self._hand(buffer.take_sends(RUN_STEPS), halt))
                if handed:
                    run = handed.popleft()
                    if not await self._finished(run.steps, await self._outcomes(run)):
                        return  # the worker sends nothing more of this pass (see _Halt)
                    continue
                if not buffer.steps:
                    self.follower.save()  # caught up (or about to wait for the planner)
                await buffer.wait_for_steps(planner)
                step = buffer.steps[0]
                if isinstance(step, DeadLetterStep):
                    buffer.take_run(1)
                    self._dead_letter(step.entry, step.error)
                    self.follower.advance(step.through_seq)
                    self.follower.save()
        finally:
            # Runs not yet started are not sent; one being sent may still go in, and is sent
            # again by the next pass or after a restart (its events are behind the cursor).
            halt.halted = True
            for run in handed:
                run.future.cancel()
            self.follower.save()
            planner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await planner

    async def _plan(self, buffer: _StepBuffer, after: int) -> None:
        """Plan from ``after`` on, forever: a step at a time, waiting for new events (and for
        held ones to become durable) when the journal has nothing more to send now."""
        position = after
        while True:
            isolate_through = self._isolate_through
            upto = isolate_through if position < isolate_through else None
            events = self._events_after(position, upto)
            for step in iter_plan(events, self.spec, max_entries=1 if upto else MAX_ENTRIES):
                await buffer.put(step)
                position = step.through_seq
            if upto is not None and position >= upto:
                continue  # the narrowed range is done: batches of ten again
            await self.follower.wait_beyond(position)

    def _events_after(self, position: int, upto: int | None) -> Iterator[StoredEvent]:
        """The journal's durable events after ``position`` (up to ``upto``), as stored, read
        lazily in chunks; ends at the journal's current end. As stored: a copy of the ledger
        needs no typed payload, and decoding one was most of this sink's own cost."""
        while True:
            chunk = self.follower.read_stored(position, READ_BATCH, upto=upto)
            if not chunk:
                return
            yield from chunk
            position = chunk[-1].seq

    # --- sending ---------------------------------------------------------------------------

    def _hand(self, run: list[SendStep], halt: _Halt) -> _Handed:
        """Give the worker thread a run of consecutive steps to send."""
        payloads = [[e.request for e in step.entries] for step in run]
        return _Handed(run, self._worker.submit(lambda: self._put_run(payloads, halt)))

    @staticmethod
    async def _outcomes(handed: _Handed) -> list[Outcome]:
        try:
            return await handed.future
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the worker itself failed: treat it as a failed call
            return [e]

    async def _finished(self, run: Sequence[SendStep], outcomes: Sequence[Outcome]) -> bool:
        """Finish a run's steps from their outcomes; False when the pass must start again
        from the cursor."""
        for step, outcome in zip(run, outcomes, strict=False):
            if isinstance(outcome, BaseException):
                await self._call_failed(step, outcome)
                return False
            if not await self._answered(step, outcome):
                return False
        return len(outcomes) == len(run)

    def _put_run(
        self, payloads: Sequence[Sequence[Mapping[str, Any]]], halt: _Halt
    ) -> list[Outcome]:
        """On the worker thread: the calls of a run, in order, until one does not fully
        succeed (its outcome is the last); then the pass's later runs are not sent."""
        outcomes: list[Outcome] = []
        if halt.halted:
            return outcomes
        whole = False
        try:
            for requests in payloads:
                if not requests:
                    outcomes.append(None)  # only filtered-out events: nothing to send
                    continue
                try:
                    response = self._put_events(requests)
                except Exception as e:  # handed to the loop, which decides
                    outcomes.append(e)
                    break
                reply = interpret(response, len(requests))
                outcomes.append(Answer(response, reply))
                if reply.first_failure is not None:
                    break
            else:
                whole = True
        finally:
            if not whole:
                halt.halted = True
        return outcomes

    async def _answered(self, step: SendStep, answer: Answer | None) -> bool:
        """Finish ``step`` from its reply (None: there was nothing to send); False when the
        pass must start again from the cursor."""
        passed_over = (step.through_seq - step.first_seq + 1) - len(step.entries)
        if answer is None:
            self.follower.passed_over += passed_over
            self.follower.advance(step.through_seq)
            return True
        self._reachable()
        self.counters.batches += 1
        self.counters.retries += int(
            (answer.response.get("ResponseMetadata") or {}).get("RetryAttempts") or 0
        )
        reply = answer.reply
        # Credits for every entry that got in, including those after a failed one: they were
        # delivered (and will be again), so each copy may echo back.
        self._accepted([step.entries[i] for i in reply.accepted_indices])
        if reply.first_failure is None:
            self.follower.passed_over += passed_over
            self.follower.advance(step.through_seq)
            return True
        failure = reply.first_failure
        self.counters.partial_failures += 1
        self.counters.duplicates += reply.sent - reply.accepted - reply.failed
        resume = resume_seq(step, reply)
        if resume is not None:
            self.follower.advance(resume)
        failed_entry = step.entries[failure.index]
        disposition = failure.disposition
        if disposition is Disposition.PERMANENT:
            self._dead_letter(failed_entry, failure.describe())
            self.follower.advance(failed_entry.seq)
            return False
        what = f"seq {failed_entry.seq} refused: {short_error(failure.describe())}"
        await self._wait_out(disposition, what, link_down=False)
        return False

    async def _call_failed(self, step: SendStep, error: BaseException) -> bool:
        """A call that raised (after botocore's retries): isolate, dead-letter or wait out.
        Always False: the pass starts again from the cursor."""
        failure = describe_call_error(error)
        self.counters.failed_calls += 1
        if isinstance(error, ClientError):
            self.counters.retries += int(
                ((error.response or {}).get("ResponseMetadata") or {}).get("RetryAttempts") or 0
            )
        if failure.drop_client:
            self._client = None
        if failure.disposition is Disposition.PERMANENT:
            if len(step.entries) > 1:
                # Which entry is it? Send this batch's entries one by one.
                log.warning(
                    "EventBridge refused a batch of %d (seq %d..%d): %s; sending them one by one",
                    len(step.entries),
                    step.entries[0].seq,
                    step.entries[-1].seq,
                    failure.error,
                )
                self._isolate_through = step.entries[-1].seq
                return False
            self._dead_letter(step.entries[0], failure.error)
            self.follower.advance(step.through_seq)
            self.follower.save()
            return False
        if isinstance(error, BotoCoreError | OSError | ClientError | CredentialsError):
            log.debug("put_events failed: %s", failure.error)
        else:
            log.exception("put_events failed unexpectedly")
        await self._wait_out(failure.disposition, failure.error, link_down=True)
        return False

    # --- the pieces ------------------------------------------------------------------------

    def _put_events(self, requests: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
        """On the worker thread: one PutEvents call (botocore retries inside it)."""
        if self._client is None:
            self._client = self._new_client()
        response: Mapping[str, Any] = self._client.put_events(Entries=list(requests))
        return response

    def _new_client(self) -> Any:
        return events_client(self.config, self.eb)

    def _accepted(self, entries: Sequence[Entry]) -> None:
        """Accepted entries may echo back as id-less commands: leave a credit for each."""
        if not entries:
            return
        self.follower.succeeded(len(entries))
        now = self.clock.now_ms()
        for entry in entries:
            if entry.click is not None:
                self.intake.echoes.forwarded(entry.click, entry.stored.occurred_at_ms, now)

    def _dead_letter(self, entry: Entry, error: str) -> None:
        """Give up on ``entry``'s event (decoded now: dead letters are rare, and record what
        the event was)."""
        self.follower.dead_letter_nowait(decode(entry.stored), error)

    def _reachable(self) -> None:
        self.follower.link_up()
        self._config_backoff.reset()

    async def _wait_out(self, disposition: Disposition, error: str, *, link_down: bool) -> None:
        """Stay at the cursor; say why; wait before trying again."""
        if link_down and disposition is not Disposition.CONFIG:
            error = f"offline: {error}"
        self.follower.save()
        self.follower.link_down(error, connected=self.follower.connected and not link_down)
        config = disposition is Disposition.CONFIG
        await asyncio.sleep(self.follower.retry_delay(self._config_backoff if config else None))
