"""``fmfb demo``: the whole product on this machine, in one command.

It starts, all on 127.0.0.1 with ports the kernel picks:

- a private Mosquitto (the ``mosquitto`` binary, config and log in a temporary directory);
- a local AWS: moto's server (``ThreadedMotoServer``) with the published design's bus
  ``feedmyfurbabies``, rule ``feeds`` and an SQS queue as the rule's target, so the demo sees
  what EventBridge would deliver;
- the "internet": :class:`gateway.demo_link.Relay` between the gateway's EventBridge sink and
  moto, which the demo cuts and restores;
- the feeder simulator (:mod:`gateway.feeder_sim`: the firmware's logic against the broker);
- the gateway itself: the same :class:`~gateway.daemon.Daemon` as ``fmfb run``, in this
  process, with a mock GPIO button and an MQTT button, and ``cloud.eventbridge`` pointing at
  the relay with dummy credentials. Only its EventBridge sink retries sooner after an outage
  (at most every 2 s rather than 15 s), so a restored link drains while people watch.

Then it shows a live view (curses) and takes keys; or, with ``--script`` or when stdin is not a
terminal, runs steps and prints plain lines (for tests and CI). On q, Ctrl-C or SIGTERM the
daemon stops (journaling ``GatewayStopped``), then the simulator, the relay, moto and Mosquitto,
and the temporary directory is removed (kept with ``--state-dir``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import itertools
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import click

from gateway.config import Config, parse_config
from gateway.demo_link import Relay
from gateway.demo_view import (
    CursesScreen,
    EventRow,
    FeederRow,
    SinkRow,
    Snapshot,
    event_line,
    render,
    status_line,
    summarize,
)
from gateway.events import ClickType, Event, EventType
from gateway.sinks.base import Sink

if TYPE_CHECKING:
    from gateway.daemon import Daemon

log = logging.getLogger("gateway.demo")

REGION = "us-east-1"
BUS = "feedmyfurbabies"
RULE = "feeds"
SOURCE = "com.feedmyfurbabies"
QUEUE = "feedmyfurbabies-feeds"
GATEWAY_ID = "demo-gateway"
GPIO_BUTTON = "demo-gpio"
MQTT_BUTTON = "demo-mqtt"
MQTT_BUTTON_TOPIC = "fmfb/demo/button"
GPIO_PIN = 17
PORTION_MS = 2000
FEEDER_TIME_SCALE = 0.25  # real seconds per simulated second of motor
FEEDER_FOOD_PER_MS = 0.002  # % of food per motor-millisecond: 4 % per 2 s bowl
DOUBLE_CLICK_MS = 300
HOLD_MS = 800
TAP_S = 0.05
EB_RETRY_FIRST_S = 0.3
EB_RETRY_MAX_S = 2.0
DEMO_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
}
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 20.0
PRESS_TIMEOUT_S = 15.0
DRAINED_TIMEOUT_S = 60.0
DRAINED_STEADY_S = 1.0
JOURNAL_ROWS = 200
FRAME_S = 0.1


class DemoError(Exception):
    """The demo could not start (a missing binary or library) or a step failed."""


def _free_port() -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port != 1883:  # the system broker's
            return port


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


# --- the private broker --------------------------------------------------------------------


class PrivateBroker:
    """A mosquitto process of our own on a free loopback port (never 1883)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.host = "127.0.0.1"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def config_text(self) -> str:
        lines = [
            "# written by fmfb demo",
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            "persistence false",
            f"log_dest file {self.workdir / 'mosquitto.log'}",
        ]
        if os.geteuid() == 0:
            # Started as root, mosquitto would drop to the user "mosquitto", who cannot write
            # this directory.
            lines.append("user root")
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        binary = shutil.which("mosquitto") or next(
            (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()),
            None,
        )
        if binary is None:
            raise DemoError(
                "the mosquitto broker is not installed (Debian: sudo apt-get install mosquitto; "
                "or run scripts/install-deps)"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "mosquitto.conf"
        for _attempt in range(3):
            self.port = _free_port()
            conf.write_text(self.config_text(), encoding="utf-8")
            with (self.workdir / "mosquitto.out").open("ab") as out:
                self.process = subprocess.Popen(
                    [binary, "-c", str(conf)],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    break  # lost the port to someone else: try another
                if _accepts(self.port):
                    return
                time.sleep(0.02)
            self.stop()
        raise DemoError(f"mosquitto did not start; see {self.workdir / 'mosquitto.log'}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


# --- the local AWS -------------------------------------------------------------------------


def _memoise_jsonpath() -> None:
    """moto builds a JSONPath parser (yacc tables) several times for every event it hands to a
    target: about 10 events/s. The parsed expressions are immutable, so cache them."""
    try:
        # import_module: a plain module object, typed alike whether or not the installed
        # jsonpath_ng ships type information.
        ext: Any = importlib.import_module("jsonpath_ng.ext")
    except ImportError:
        return
    parse = ext.parse
    if not hasattr(parse, "cache_info"):
        ext.parse = functools.lru_cache(maxsize=1024)(parse)


class LocalCloud:
    """moto's server with the bus, the rule ``feeds`` and an SQS target; a thread takes what
    reaches the queue and remembers the ``seq`` of each event."""

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.port = 0
        self.queue_url = ""
        self._server: Any = None
        self._sqs: Any = None
        self._lock = threading.Lock()
        self._seqs: list[int] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        try:
            import boto3  # noqa: PLC0415
            from moto.server import ThreadedMotoServer  # noqa: PLC0415
        except ImportError as e:
            raise DemoError(
                f"the demo needs moto's server and boto3 ({e.name} is missing): "
                "pip install 'feedmyfurbabies-gateway[demo]' (or run scripts/install-deps)"
            ) from None
        _memoise_jsonpath()
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        server = ThreadedMotoServer(ip_address=self.host, port=0, verbose=False)
        server.start()
        self.host, self.port = server.get_host_and_port()
        self._server = server

        def client(service: str) -> Any:
            return boto3.client(service, endpoint_url=self.url, region_name=REGION)

        events, sqs = client("events"), client("sqs")
        self._sqs = sqs
        events.create_event_bus(Name=BUS)
        self.queue_url = sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])
        queue_arn = arn["Attributes"]["QueueArn"]
        events.put_rule(Name=RULE, EventBusName=BUS, EventPattern=json.dumps({"source": [SOURCE]}))
        events.put_targets(
            Rule=RULE, EventBusName=BUS, Targets=[{"Id": "feeds-queue", "Arn": queue_arn}]
        )
        self._thread = threading.Thread(target=self._poll, name="demo-sqs", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                answer = self._sqs.receive_message(
                    QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
                )
                messages = answer.get("Messages") or []
                if messages:
                    seqs = [int(json.loads(m["Body"])["detail"]["seq"]) for m in messages]
                    with self._lock:
                        self._seqs.extend(seqs)
                    self._sqs.delete_message_batch(
                        QueueUrl=self.queue_url,
                        Entries=[
                            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                            for i, m in enumerate(messages)
                        ],
                    )
                    continue
            except Exception:  # moto stopping, or a malformed body: keep polling
                log.debug("SQS poll failed", exc_info=True)
            self._stop.wait(0.1)

    def received(self) -> list[int]:
        """The seq of every event that reached the SQS target, in arrival order."""
        with self._lock:
            return list(self._seqs)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._server is not None:
            with contextlib.suppress(Exception):
                self._server.stop()
            self._server = None


def delivery_report(seqs: Sequence[int], first: int, last: int) -> tuple[list[int], bool, bool]:
    """Distinct seqs in first-arrival order; whether they arrived in order; whether every seq
    in ``first..last`` is there."""
    seen: set[int] = set()
    distinct = []
    for s in seqs:
        if s not in seen:
            seen.add(s)
            distinct.append(s)
    in_order = all(a < b for a, b in itertools.pairwise(distinct))
    complete = all(s in seen for s in range(first, last + 1))
    return distinct, in_order, complete


# --- the feeder simulator ------------------------------------------------------------------


class Feeder:
    """The feeder simulator (:class:`gateway.feeder_sim.FeederSim`), slowed to a watchable
    pace: a 2 s portion turns the motors for half a second, and the level drops visibly."""

    def __init__(self, host: str, port: int, workdir: Path) -> None:
        try:
            from gateway.feeder_sim import FeederSim  # noqa: PLC0415 - started only by the demo
        except ImportError as e:
            raise DemoError(
                f"the feeder simulator cannot be loaded ({e}); reinstall the project "
                "(scripts/install-deps, or pip install -e '.[demo]')"
            ) from None

        self.sim = FeederSim(
            host,
            port,
            client_id="fmfb-demo-feeder",
            memory_path=workdir / "feeder-memory.json",
            time_scale=FEEDER_TIME_SCALE,
            food_per_motor_ms=FEEDER_FOOD_PER_MS,
        )

    def start(self) -> None:
        self.sim.start()

    def stop(self) -> None:
        self.sim.stop()

    def runs(self) -> dict[str, int]:
        """Motor runs per bowl so far."""
        counts: dict[str, int] = {}
        for run in self.sim.runs:
            for bowl in run.bowls:
                counts[bowl] = counts.get(bowl, 0) + 1
        return counts

    def food_level(self) -> int:
        return self.sim.food_level


# --- the gateway ---------------------------------------------------------------------------


def make_daemon(config: Config) -> Daemon:
    """``fmfb run``'s daemon; only its EventBridge sink retries sooner after an outage."""
    from gateway.daemon import Daemon  # noqa: PLC0415 - keeps `fmfb --help` light
    from gateway.sinks.eventbridge import EventBridgeSink  # noqa: PLC0415 - boto3

    class DemoDaemon(Daemon):
        def _cloud_sinks(self) -> list[Sink]:
            assert self.journal is not None
            assert self.intake is not None
            return [
                EventBridgeSink(
                    self.config,
                    self.journal,
                    self.intake,
                    self.clock,
                    retry_first_s=EB_RETRY_FIRST_S,
                    retry_max_s=EB_RETRY_MAX_S,
                )
            ]

    return DemoDaemon(config)


def demo_config(state_dir: Path, broker_port: int, relay_url: str) -> Config:
    return parse_config(
        {
            "gateway_id": GATEWAY_ID,
            "state_dir": str(state_dir),
            "log_level": "INFO",
            "broker": {
                "host": "127.0.0.1",
                "port": broker_port,
                "reconnect_min_s": 0.1,
                "reconnect_max_s": 2.0,
            },
            "feeding": {"portion_ms": PORTION_MS, "expiry_s": 300, "ack_timeout_s": 30},
            # A demo is for pressing: no minimum gap, a cap nobody reaches.
            "policy": {"min_gap_s": 0, "cap_per_bowl": 1000},
            "classifier": {"double_click_ms": DOUBLE_CLICK_MS, "hold_ms": HOLD_MS},
            "buttons": {
                "pin_factory": "mock",
                "gpio": [{"name": GPIO_BUTTON, "pin": GPIO_PIN, "bounce_ms": 5}],
                "mqtt": [{"name": MQTT_BUTTON, "topic": MQTT_BUTTON_TOPIC}],
            },
            "cloud": {
                "aws": {"region": REGION},
                "eventbridge": {
                    "bus": BUS,
                    "source": SOURCE,
                    "endpoint_url": relay_url,
                    "max_attempts": 1,
                    "timeout_s": 3.0,
                },
            },
        },
        source="demo",
    )


# --- the script ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    verb: str  # press, cut, restore, drained, wait, status, quit
    click: ClickType | None = None
    via: str = "gpio"
    seconds: float = 0.0
    text: str = ""


def parse_script(text: str) -> list[Step]:
    """``press SINGLE [gpio|mqtt]; cut; restore; wait drained [S]; wait S; status; quit``
    (steps separated by ';' or new lines, '#' starts a comment)."""
    steps: list[Step] = []
    for raw in text.replace("\n", ";").split(";"):
        words = raw.split("#", 1)[0].split()
        if not words:
            continue
        verb, args, shown = words[0].lower(), [w.lower() for w in words[1:]], " ".join(words)
        if verb == "press" and 1 <= len(args) <= 2:
            try:
                click = ClickType(args[0].upper())
            except ValueError:
                raise DemoError(f"{shown!r}: press SINGLE, DOUBLE or LONG") from None
            via = args[1] if len(args) == 2 else "gpio"
            if via not in {"gpio", "mqtt"}:
                raise DemoError(f"{shown!r}: press through gpio or mqtt")
            steps.append(Step("press", click=click, via=via, text=shown))
        elif verb in {"cut", "restore", "status", "quit"} and not args:
            steps.append(Step(verb, text=shown))
        elif verb == "wait" and args and args[0] == "drained" and len(args) <= 2:
            seconds = _seconds(args[1], shown) if len(args) == 2 else DRAINED_TIMEOUT_S
            steps.append(Step("drained", seconds=seconds, text=shown))
        elif verb == "wait" and len(args) == 1:
            steps.append(Step("wait", seconds=_seconds(args[0], shown), text=shown))
        else:
            raise DemoError(
                f"{shown!r}: steps are press SINGLE|DOUBLE|LONG [gpio|mqtt], cut, restore, "
                "wait drained [SECONDS], wait SECONDS, status, quit"
            )
    return steps


def _seconds(word: str, shown: str) -> float:
    try:
        value = float(word.removesuffix("s"))
    except ValueError:
        raise DemoError(f"{shown!r}: {word!r} is not a number of seconds") from None
    if not 0 <= value <= 3600:
        raise DemoError(f"{shown!r}: seconds between 0 and 3600")
    return value


# --- the running demo ----------------------------------------------------------------------


@dataclass
class Tracker:
    """What the demo follows in the journal: the newest rows and the requests not settled."""

    seen: int = 0
    rows: deque[EventRow] = field(default_factory=lambda: deque(maxlen=JOURNAL_ROWS))
    events: deque[Event] = field(default_factory=lambda: deque(maxlen=JOURNAL_ROWS))
    unsettled: set[str] = field(default_factory=set)

    def add(self, event: Event) -> EventRow:
        payload = event.payload.to_dict()
        row = EventRow(event.seq, event.type.value, summarize(payload))
        self.rows.append(row)
        self.events.append(event)
        self.seen = event.seq
        request_id = payload.get("request_id")
        if event.type is EventType.FEED_REQUESTED and request_id:
            self.unsettled.add(str(request_id))
        elif event.type in {
            EventType.FEED_DISPENSED,
            EventType.FEED_UNCONFIRMED,
            EventType.FEED_REJECTED,
        }:
            self.unsettled.discard(str(request_id))
        return row


class Demo:
    def __init__(
        self,
        config: Config,
        relay: Relay,
        cloud: LocalCloud,
        feeder: Feeder | None,
        out: TextIO,
    ) -> None:
        self.config = config
        self.relay = relay
        self.cloud = cloud
        self.feeder = feeder
        self.out = out
        self.daemon = make_daemon(config)
        self.tracker = Tracker()
        self.message = ""
        self.plain = True
        self.eb_start = 0  # the EventBridge cursor when the demo started
        self._press_lock: asyncio.Lock | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- output ----------------------------------------------------------------------------

    def say(self, line: str) -> None:
        self.message = line
        if self.plain:
            print(line, file=self.out, flush=True)

    def snapshot(self) -> Snapshot:
        st = self.daemon.status().as_json()
        sinks = [
            SinkRow(s["name"], s["connected"], s["cursor"], s["backlog"], s["last_error"])
            for s in st["sinks"]
        ]
        distinct, in_order, _ = delivery_report(self.cloud.received(), 0, -1)
        # Online as the gateway's journal says; food and motor runs from the (simulated)
        # feeder itself, which knows its level before it first reports a change.
        level = st["feeder"]["food_level"]
        feeder = FeederRow(
            online=st["feeder"]["online"],
            food_level=self.feeder.food_level() if self.feeder else level,
            runs=self.feeder.runs() if self.feeder else {},
        )
        return Snapshot(
            journal_seq=st["journal"]["seq"],
            events=list(self.tracker.rows),
            sinks=sinks,
            feeder=feeder,
            internet_up=self.relay.online,
            sqs_received=len(distinct),
            sqs_in_order=in_order,
            message=self.message,
            state_dir=str(self.config.state_dir),
        )

    def sink(self, name: str) -> dict[str, Any]:
        for s in self.daemon.status().as_json()["sinks"]:
            if s["name"] == name:
                return dict(s)
        raise DemoError(f"no sink {name!r}")

    # --- the journal -----------------------------------------------------------------------

    def follow(self) -> None:
        """Take what the journal gained since the last call."""
        journal = self.daemon.journal
        if journal is None:
            return
        while True:
            events = journal.read_visible(self.tracker.seen, 100)
            if not events:
                return
            for event in events:
                row = self.tracker.add(event)
                if self.plain:
                    print(event_line(row), file=self.out, flush=True)

    async def _follow_loop(self) -> None:
        while True:
            self.follow()
            await asyncio.sleep(0.05)

    # --- actions ---------------------------------------------------------------------------

    async def press(self, click: ClickType, via: str) -> None:
        if via == "mqtt":
            await asyncio.to_thread(self._publish_press, click)
            return
        gpio = self.daemon.gpio
        assert gpio is not None
        pin = gpio.buttons[GPIO_BUTTON].device.pin
        assert self._press_lock is not None
        async with self._press_lock:
            if click is ClickType.LONG:
                pin.drive_low()  # pull-up: pressed is low
                await asyncio.sleep(HOLD_MS / 1000 + 0.2)
                pin.drive_high()
            else:
                for tap in range(2 if click is ClickType.DOUBLE else 1):
                    if tap:
                        await asyncio.sleep(TAP_S)
                    pin.drive_low()
                    await asyncio.sleep(TAP_S)
                    pin.drive_high()
            # Let the classifier finish this click before the next one starts.
            await asyncio.sleep(DOUBLE_CLICK_MS / 1000 + 0.1)

    def _publish_press(self, click: ClickType) -> None:
        from paho.mqtt import publish  # noqa: PLC0415

        action = {"SINGLE": "single", "DOUBLE": "double", "LONG": "hold"}[click.value]
        publish.single(
            MQTT_BUTTON_TOPIC,
            json.dumps({"action": action}),
            qos=1,
            hostname=self.config.broker.host,
            port=self.config.broker.port,
            client_id=f"fmfb-demo-press-{os.getpid()}",
        )

    def cut(self) -> None:
        self.relay.cut()

    def restore(self) -> None:
        self.relay.restore()

    # --- scripted steps --------------------------------------------------------------------

    async def run_step(self, step: Step) -> bool:
        if step.verb == "press":
            assert step.click is not None
            return await self._step_press(step.click, step.via)
        if step.verb == "cut":
            self.cut()
            self.say("internet CUT: the EventBridge sink can no longer reach the AWS emulator")
        elif step.verb == "restore":
            self.restore()
            self.say("internet RESTORED: the backlog drains in seq order")
        elif step.verb == "drained":
            return await self._step_drained(step.seconds)
        elif step.verb == "wait":
            await asyncio.sleep(step.seconds)
        self.say(status_line(self.snapshot()))
        return True

    async def _step_press(self, click: ClickType, via: str) -> bool:
        before = self.tracker.seen
        where = "the GPIO button (mock pin)" if via == "gpio" else "the MQTT button"
        self.say(f"press {click.value} on {where}")
        await self.press(click, via)
        deadline = time.monotonic() + PRESS_TIMEOUT_S
        while time.monotonic() < deadline:
            self.follow()
            for event in self.tracker.events:
                p = event.payload.to_dict()
                if (
                    event.seq > before
                    and event.type in {EventType.FEED_REQUESTED, EventType.FEED_REJECTED}
                    and p.get("click_type") == click.value
                ):
                    self.say(f"pressed {click.value}: journaled seq {event.seq} {event.type.value}")
                    self.say(status_line(self.snapshot()))
                    return True
            await asyncio.sleep(0.05)
        self.say(f"FAILED: press {click.value} was not journaled within {PRESS_TIMEOUT_S:.0f}s")
        return False

    def _drained(self) -> tuple[bool, str]:
        self.follow()
        st = self.daemon.status().as_json()
        last = st["journal"]["seq"]
        sinks = {s["name"]: s for s in st["sinks"]}
        distinct, in_order, complete = delivery_report(
            self.cloud.received(), self.eb_start + 1, last
        )
        ok = (
            all(s["backlog"] == 0 for s in sinks.values())
            and not self.tracker.unsettled
            and complete
            and in_order
        )
        detail = (
            f"journal seq {last}; "
            + "; ".join(
                f"{n} cursor {s['cursor']} backlog {s['backlog']}" for n, s in sinks.items()
            )
            + f"; {len(self.tracker.unsettled)} feed(s) awaiting the feeder"
            + f"; SQS target received {len(distinct)} event(s)"
            + (", in seq order" if in_order else ", OUT OF ORDER")
        )
        return ok, detail

    async def _step_drained(self, limit_s: float) -> bool:
        self.say(f"waiting (up to {limit_s:.0f}s) for every sink to catch up")
        deadline = time.monotonic() + limit_s
        steady_since: float | None = None
        detail = ""
        while time.monotonic() < deadline:
            ok, detail = self._drained()
            now = time.monotonic()
            if not ok:
                steady_since = None
            elif steady_since is None:
                steady_since = now
            elif now - steady_since >= DRAINED_STEADY_S:
                self.say(f"drained: {detail}")
                return True
            await asyncio.sleep(0.1)
        self.say(f"FAILED: not drained within {limit_s:.0f}s: {detail}")
        return False

    def report_deliveries(self) -> None:
        distinct, in_order, _ = delivery_report(self.cloud.received(), 0, -1)
        self.plain = True  # the live view is closed by now
        self.say(
            f"sqs seqs: {' '.join(map(str, distinct)) or '-'} "
            f"({len(distinct)} events, {'in seq order' if in_order else 'OUT OF ORDER'})"
        )

    # --- running ---------------------------------------------------------------------------

    async def run(self, steps: list[Step] | None, interactive: bool) -> int:
        self.plain = not interactive
        self._press_lock = asyncio.Lock()
        daemon_task = asyncio.create_task(self.daemon.run(), name="demo-daemon")
        ready = asyncio.create_task(self.daemon.ready.wait())
        await asyncio.wait(
            {daemon_task, ready}, timeout=START_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
        )
        if not self.daemon.ready.is_set():
            ready.cancel()
            self.daemon.stopping.set()
            if daemon_task.done():
                daemon_task.result()  # raises what stopped it
            await asyncio.wait({daemon_task}, timeout=STOP_TIMEOUT_S)
            raise DemoError(f"the gateway did not become ready within {START_TIMEOUT_S:.0f}s")
        self.eb_start = self.sink("eventbridge")["cursor"]
        await self._settle()
        self.follow()
        code = 0
        try:
            if interactive:
                await self._interactive(daemon_task)
            else:
                code = await self._scripted(steps or [], daemon_task)
        finally:
            self.report_deliveries()
            self.daemon.stopping.set()
            for task in self._tasks:
                task.cancel()
            done, _ = await asyncio.wait({daemon_task}, timeout=STOP_TIMEOUT_S)
            if not done:
                daemon_task.cancel()
                self.say("the gateway did not stop in time")
                code = 1
            elif daemon_task.exception() is not None:
                self.say(f"the gateway failed: {daemon_task.exception()!r}")
                code = 1
        return code

    async def _settle(self) -> None:
        """Ready means the journal is open and the inputs are starting: wait (briefly) for the
        MQTT button's subscription and the feeder sink's link, so a first press is not lost."""
        buttons = self.daemon.mqtt_buttons
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            linked = buttons is None or buttons.link.connected
            if linked and self.sink("feeder")["connected"]:
                await asyncio.sleep(0.3)  # the subscription follows the connection at once
                return
            await asyncio.sleep(0.05)

    async def _scripted(self, steps: list[Step], daemon_task: asyncio.Task[int]) -> int:
        follower = asyncio.create_task(self._follow_loop(), name="demo-follow")
        self._tasks.add(follower)
        self.say(status_line(self.snapshot()))
        for step in steps:
            if step.verb == "quit":
                self.say("quit")
                return 0
            if self.daemon.stopping.is_set() or daemon_task.done():
                self.say("stopped before the script ended")
                return 1
            self.say(f"step: {step.text}")
            running = asyncio.create_task(self.run_step(step))
            stopping = asyncio.create_task(self.daemon.stopping.wait())
            await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not running.done():  # Ctrl-C or SIGTERM: the gateway is stopping
                running.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await running
                self.say(f"interrupted during: {step.text}")
                return 1
            if not running.result():
                return 1
        return 0

    async def _interactive(self, daemon_task: asyncio.Task[int]) -> None:
        actions: dict[str, Callable[[], None]] = {
            "c": self._key_cut,
            "r": self._key_restore,
        }
        presses = {
            "1": (ClickType.SINGLE, "gpio"),
            "2": (ClickType.DOUBLE, "gpio"),
            "3": (ClickType.LONG, "gpio"),
            "s": (ClickType.SINGLE, "mqtt"),
            "d": (ClickType.DOUBLE, "mqtt"),
            "l": (ClickType.LONG, "mqtt"),
        }
        self.message = "press a key"
        with CursesScreen() as screen:
            while not self.daemon.stopping.is_set() and not daemon_task.done():
                for pressed in screen.read_keys():
                    key = pressed.lower()
                    if key == "q":
                        self.message = "quitting: stopping the gateway, feeder, broker, AWS"
                        self.daemon.stopping.set()
                    elif key in presses:
                        click, via = presses[key]
                        self._spawn(self._key_press(click, via))
                    elif key in actions:
                        actions[key]()
                self.follow()
                width, height = screen.size()
                screen.draw(render(self.snapshot(), width, height))
                await asyncio.sleep(FRAME_S)
            screen.draw(render(self.snapshot(), *screen.size()))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _key_press(self, click: ClickType, via: str) -> None:
        where = "GPIO" if via == "gpio" else "MQTT"
        self.message = f"pressing {click.value} on the {where} button"
        try:
            await self.press(click, via)
        except Exception as e:
            self.message = f"press failed: {e}"
        else:
            self.message = f"pressed {click.value} on the {where} button"

    def _key_cut(self) -> None:
        self.cut()
        self.message = "internet CUT: watch the eventbridge backlog grow"

    def _key_restore(self) -> None:
        self.restore()
        self.message = "internet RESTORED: the backlog drains, in order"


# --- set-up and tear-down ------------------------------------------------------------------


@contextlib.contextmanager
def _demo_environment() -> Iterator[None]:
    """Dummy AWS credentials for boto3 (moto takes anything), nothing that leaves loopback."""
    saved = {k: os.environ.get(k) for k in (*DEMO_ENV, "AWS_PROFILE", "AWS_SESSION_TOKEN")}
    os.environ.update(DEMO_ENV)
    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("AWS_SESSION_TOKEN", None)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _raise_on_sigterm() -> Callable[[], None]:
    """Until the gateway's loop takes SIGTERM over, treat it like Ctrl-C (so we clean up)."""

    def handler(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous)

    return restore


def _configure_logging(workdir: Path, interactive: bool) -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    file_handler = logging.FileHandler(workdir / "demo.log", encoding="utf-8")
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(file_handler)
    root.setLevel(logging.INFO)
    if not interactive:
        console = logging.StreamHandler(sys.stderr)
        console.setLevel(logging.WARNING)
        console.setFormatter(logging.Formatter("log: %(levelname)s %(name)s: %(message)s"))
        root.addHandler(console)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    logging.getLogger("botocore").setLevel(logging.WARNING)


class Stack:
    """Everything around the gateway, started in order and stopped in reverse."""

    def __init__(self, workdir: Path, say: Callable[[str], None]) -> None:
        self.workdir = workdir
        self.say = say
        self.broker = PrivateBroker(workdir / "mosquitto")
        self.cloud = LocalCloud()
        self.relay: Relay | None = None
        self.feeder: Feeder | None = None

    def start(self) -> None:
        self.broker.start()
        self.say(f"mosquitto: pid {self.broker.pid} on 127.0.0.1:{self.broker.port}")
        self.cloud.start()
        self.say(f"aws emulator (moto): {self.cloud.url}, bus {BUS}, rule {RULE} -> SQS {QUEUE}")
        self.relay = Relay(self.cloud.host, self.cloud.port).start()
        self.say(f"internet (relay): {self.relay.url} -> {self.cloud.url}")
        self.feeder = Feeder(self.broker.host, self.broker.port, self.workdir)
        self.feeder.start()
        self.say("feeder simulator: online")

    def stop(self) -> None:
        if self.feeder is not None:
            with contextlib.suppress(Exception):
                self.feeder.stop()
        if self.relay is not None:
            self.relay.close()
        self.cloud.stop()
        self.broker.stop()


def run_demo(
    steps: list[Step] | None, *, interactive: bool, state_dir: Path | None, out: TextIO
) -> int:
    keep = state_dir is not None
    workdir = state_dir.resolve() if state_dir else Path(tempfile.mkdtemp(prefix="fmfb-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    restore_sigterm = _raise_on_sigterm()

    def say(line: str) -> None:
        if not interactive:
            print(line, file=out, flush=True)

    stack = Stack(workdir, say)
    code = 1
    try:
        _configure_logging(workdir, interactive)
        with _demo_environment():
            print(
                "fmfb demo: starting a broker, a local AWS, a feeder and the gateway ...", file=out
            )
            say(f"state dir: {workdir}")
            stack.start()
            assert stack.relay is not None
            config = demo_config(workdir, stack.broker.port, stack.relay.url)
            demo = Demo(config, stack.relay, stack.cloud, stack.feeder, out)
            code = asyncio.run(demo.run(steps, interactive))
            restore_sigterm()  # the loop's handler is gone: ours again for the tear-down
            restore_sigterm = _raise_on_sigterm()
            print(_stopped_line(config), file=out, flush=True)
    except DemoError as e:
        print(f"fmfb demo: {e}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 0 if interactive else 1
    finally:
        stack.stop()
        print("stopped: gateway, feeder simulator, relay, moto, mosquitto", file=out, flush=True)
        logging.shutdown()
        if keep:
            print(
                f"kept: {workdir} (journal.db, demo.log); see the ledger with: "
                f"fmfb journal list --journal {workdir / 'journal.db'}",
                file=out,
                flush=True,
            )
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        restore_sigterm()
    return code


def _stopped_line(config: Config) -> str:
    from gateway.journal import JournalReader  # noqa: PLC0415

    try:
        with JournalReader.open(config.journal_file) as reader:
            last = reader.last_seq()
            event = reader.get(last)
            cursor = reader.cursor("eventbridge")
    except Exception as e:
        return f"journal: could not be read after the stop: {e}"
    kind = event.type.value if event is not None else "-"
    return f"journal: last seq {last} ({kind}); eventbridge cursor {cursor}"


@click.command()
@click.option(
    "--script",
    metavar="STEPS",
    help='Run these steps with no keyboard and plain output, e.g. "press SINGLE; cut; '
    'press DOUBLE; restore; wait drained; quit". Exit 0 when every step succeeded.',
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the journal and logs here [default: a temporary directory, removed at exit].",
)
@click.option(
    "--no-tty",
    is_flag=True,
    help="Plain line output; steps are read from stdin (the default when stdin is not a terminal).",
)
def demo(script: str | None, state_dir: Path | None, no_tty: bool) -> None:
    """See the whole product work on this machine: no Pi, no feeder, no AWS account.

    Starts a private Mosquitto, a local AWS (moto's server: the bus feedmyfurbabies, the rule
    feeds and an SQS target), a simulated feeder, a cuttable "internet" link, and the gateway
    itself (the daemon of `fmfb run`, with a mock GPIO button and an MQTT button), all on
    127.0.0.1. A live view shows the journal growing, the feeder, each sink's cursor and backlog.

    \b
    Keys: 1 2 3  SINGLE / DOUBLE / LONG on the GPIO button
          s d l  the same on the MQTT button
          c      cut the internet (the EventBridge backlog grows)
          r      restore it (the backlog drains, in order)
          q      quit (Ctrl-C too): everything is stopped and cleaned up

    \b
    Steps (--script, or stdin when it is not a terminal; ';' or new lines between them):
      press SINGLE|DOUBLE|LONG [gpio|mqtt]   cut   restore   status
      wait drained [SECONDS]   wait SECONDS   quit
    """
    try:
        if script is not None:
            steps: list[Step] | None = parse_script(script)
        elif no_tty or not sys.stdin.isatty():
            steps = parse_script(sys.stdin.read())
        else:
            steps = None
    except DemoError as e:
        raise click.UsageError(str(e)) from None
    sys.exit(run_demo(steps, interactive=steps is None, state_dir=state_dir, out=sys.stdout))
