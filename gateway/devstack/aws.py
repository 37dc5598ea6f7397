"""A local AWS: moto's server mode on a free loopback port (the demo, the cloud tests).

``MotoServer`` runs moto's ``ThreadedMotoServer`` (in this process, on 127.0.0.1, port picked
by the kernel) and reaches it with the real boto3 over HTTP. ``setup_feeds()`` builds what the
published design has: a custom bus ``feedmyfurbabies``, a rule ``feeds`` matching
``{"source": ["com.feedmyfurbabies"]}``, and an SQS queue as its target, so a test sees what
EventBridge would deliver. ``drain()`` takes everything in that queue and returns the parsed
envelopes; tests drain as they go (``collect`` does).

moto's EventBridge → SQS delivery rebuilds jsonpath-ng parsers (yacc tables) eight times per
event: ≈ 10 events/s. ``start()`` memoises ``jsonpath_ng.ext.parse`` in this process (the
parsed paths are immutable), which lifts it to ≈ 250 events/s. moto's ReceiveMessage scans
the whole queue on every call (quadratic as it fills, and a drain through it falls behind a
sink sending at full speed), so ``drain()`` takes the messages from moto's in-process queue
unless asked to go through the API.

moto checks the 10-entry limit and missing fields of PutEvents, but not the size limit, and it
never throttles or partly fails: ``tests/fault_proxy.py`` in front of it does that.

moto and boto3 come with the ``demo`` and ``test`` extras, not with the gateway: they are
imported inside the methods that need them, so importing this module costs nothing.
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
import os
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from gateway.devstack import DevStackError

REGION = "us-east-1"
BUS = "feedmyfurbabies"
RULE = "feeds"
SOURCE = "com.feedmyfurbabies"

# What boto3 needs to talk to moto, and nothing that leaves loopback.
AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
}


def use_test_credentials() -> None:
    """Put the fake credentials into this process's environment (boto3 reads them there)."""
    os.environ.update(AWS_TEST_ENV)


@contextmanager
def local_aws_environment() -> Iterator[None]:
    """The fake credentials for the duration of a block, and no profile or session token that
    could send boto3 elsewhere; the environment is put back as it was afterwards."""
    keys = (*AWS_TEST_ENV, "AWS_PROFILE", "AWS_SESSION_TOKEN")
    saved = {k: os.environ.get(k) for k in keys}
    use_test_credentials()
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


def _import(module: str) -> Any:
    """A module of the ``demo``/``test`` extras, or a DevStackError that says how to get it.

    import_module: a plain module object, typed alike whether or not the installed package
    ships type information."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise DevStackError(
            f"the local AWS needs moto's server and boto3 ({e.name} is missing): "
            "pip install 'feedmyfurbabies-gateway[demo]' (or run scripts/install-deps)"
        ) from None


def _memoise_jsonpath() -> None:
    """moto parses the same eight JSONPath expressions for every event it sends to a target,
    and jsonpath-ng builds a parser each time; the parsed expressions are immutable."""
    ext = _import("jsonpath_ng.ext")  # moto's dependency
    parse = ext.parse
    if not hasattr(parse, "cache_info"):
        ext.parse = functools.lru_cache(maxsize=1024)(parse)


@dataclass
class Feeds:
    """The bus, rule and queue of one ``setup_feeds()``."""

    bus: str
    rule: str
    queue_url: str
    queue_arn: str
    seen: list[dict[str, Any]] = field(default_factory=list)


class MotoServer:
    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.port = 0
        self._server: Any = None
        self._clients: dict[tuple[str, str], Any] = {}

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> MotoServer:
        use_test_credentials()
        moto_server = _import("moto.server")
        _import("boto3")  # fail here, with the hint, rather than at the first client
        _memoise_jsonpath()
        # werkzeug logs one line per request at INFO: thousands per test.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        server = moto_server.ThreadedMotoServer(ip_address=self.host, port=0, verbose=False)
        server.start()
        self.host, self.port = server.get_host_and_port()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget every resource (moto's own reset endpoint)."""
        url = f"{self.url}/moto-api/reset"
        request = urllib.request.Request(url, method="POST", data=b"")  # noqa: S310 - http
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            response.read()

    # --- clients ---------------------------------------------------------------------------

    def client(self, service: str, *, endpoint_url: str | None = None) -> Any:
        """A boto3 client for ``service`` at moto (or ``endpoint_url``), made once and kept."""
        key = (service, endpoint_url or self.url)
        if key not in self._clients:
            self._clients[key] = self._new_client(service, key[1])
        return self._clients[key]

    def _new_client(self, service: str, endpoint_url: str) -> Any:
        use_test_credentials()
        return _import("boto3").client(
            service,
            endpoint_url=endpoint_url,
            region_name=REGION,
            aws_access_key_id=AWS_TEST_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=AWS_TEST_ENV["AWS_SECRET_ACCESS_KEY"],
        )

    # --- the published design's bus, rule and target ----------------------------------------

    def setup_feeds(
        self,
        *,
        bus: str = BUS,
        rule: str = RULE,
        source: str = SOURCE,
        with_target: bool = True,
        queue: str | None = None,
    ) -> Feeds:
        """The bus, a rule matching ``{"source": [source]}`` and (``with_target``) an SQS queue
        as its target, named ``queue`` or, by default, uniquely for this call. The defaults are
        the published design's bus ``feedmyfurbabies`` and rule ``feeds``."""
        events = self.client("events")
        events.create_event_bus(Name=bus)
        queue_url = queue_arn = ""
        if with_target:
            sqs = self.client("sqs")
            name = queue or f"{rule}-{uuid.uuid4().hex[:8]}"
            queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
            queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
                "Attributes"
            ]["QueueArn"]
        events.put_rule(Name=rule, EventBusName=bus, EventPattern=json.dumps({"source": [source]}))
        if with_target:
            events.put_targets(
                Rule=rule, EventBusName=bus, Targets=[{"Id": f"{rule}-queue", "Arn": queue_arn}]
            )
        return Feeds(bus=bus, rule=rule, queue_url=queue_url, queue_arn=queue_arn)

    def drain(self, feeds: Feeds, *, via_api: bool = False) -> list[dict[str, Any]]:
        """Take every message now in the queue; the parsed envelopes, in the order the target
        stored them (also appended to ``feeds.seen``).

        By default straight from moto's in-process queue: moto's own ReceiveMessage and
        DeleteMessageBatch scan the whole queue on every call, so draining thousands through
        the API is quadratic and falls behind a sink sending at full speed. ``via_api=True``
        receives and deletes through the real SQS API instead (fine for a few dozen).
        """
        out = self._receive_all(feeds) if via_api else self._take_all(feeds)
        feeds.seen.extend(out)
        return out

    def _take_all(self, feeds: Feeds) -> list[dict[str, Any]]:
        sqs_backends = _import("moto.sqs.models").sqs_backends  # moto's in-process state
        account = feeds.queue_arn.split(":")[4]
        queue = sqs_backends[account][REGION].get_queue(feeds.queue_url.rsplit("/", 1)[-1])
        with queue._messages_lock:  # moto's SQS target appends under this lock
            taken, queue._messages = queue._messages, []
        return [json.loads(m.body) for m in taken]

    def _receive_all(self, feeds: Feeds) -> list[dict[str, Any]]:
        sqs = self.client("sqs")
        out: list[dict[str, Any]] = []
        while True:
            answer = sqs.receive_message(
                QueueUrl=feeds.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            )
            messages = answer.get("Messages") or []
            if not messages:
                return out
            out.extend(json.loads(m["Body"]) for m in messages)
            sqs.delete_message_batch(
                QueueUrl=feeds.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(messages)
                ],
            )

    def collect(
        self,
        feeds: Feeds,
        until: Callable[[list[dict[str, Any]]], bool],
        *,
        timeout: float = 20.0,
        what: str = "events at the SQS target",
    ) -> list[dict[str, Any]]:
        """Drain as we go until ``until(everything seen so far)`` holds; everything seen."""
        deadline = time.monotonic() + timeout
        while True:
            self.drain(feeds)
            if until(feeds.seen):
                return feeds.seen
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"timed out after {timeout:.1f}s waiting for {what} "
                    f"({len(feeds.seen)} envelopes seen)"
                )
            time.sleep(0.02)


class Drainer:
    """Drains the SQS target on a thread of its own, every few milliseconds (moto's queue
    slows down as it fills). ``arrivals()`` is everything seen so far, in arrival order."""

    def __init__(self, moto: MotoServer, feeds: Feeds, *, every_s: float = 0.02) -> None:
        self.moto = moto
        self.feeds = feeds
        self.every_s = every_s
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="sqs-drainer", daemon=True)

    def _main(self) -> None:
        while not self._stop.is_set():
            try:
                with self._lock:
                    self.moto.drain(self.feeds)
            except Exception as e:  # reported by arrivals()
                self.error = e
                return
            self._stop.wait(self.every_s)

    def arrivals(self) -> list[dict[str, Any]]:
        """Every envelope the target received so far; raises if draining failed."""
        if self.error is not None:
            raise DevStackError(f"draining the SQS target failed: {self.error!r}")
        with self._lock:
            return list(self.feeds.seen)

    def start(self) -> Drainer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def __enter__(self) -> Drainer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def seqs(envelopes: list[dict[str, Any]], gateway_id: str | None = None) -> list[int]:
    """The ``detail.seq`` of each envelope, in arrival order (optionally one gateway's)."""
    return [
        int(e["detail"]["seq"])
        for e in envelopes
        if gateway_id is None or e["detail"].get("gateway-id") == gateway_id
    ]


def first_arrivals(seq_list: Sequence[int]) -> list[int]:
    """Each seq once, where it first arrived: a target may receive an event again (a resend
    after a lost reply), and what counts for order is the first copy."""
    return list(dict.fromkeys(seq_list))
