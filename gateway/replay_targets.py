"""Where ``fmfb replay`` sends: a JSONL file, an EventBridge bus, IoT Core.

Blocking on purpose (the CLI has no event loop), and built from the same parts as the sinks:
the EventBridge client and call-error reading of :mod:`gateway.sinks.eventbridge_calls`, the
IoT Core connection options of :mod:`gateway.sinks.iot_core`, :class:`~gateway.rate.Pacer`
and :class:`~gateway.backoff.Backoff`. Each ``send`` calls ``advance(seq)`` only for what the
target accepted, so the replay's cursor never runs ahead of delivery.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any, Final

from gateway.backoff import Backoff
from gateway.config import Config
from gateway.eventbridge_entries import (
    DeadLetterStep,
    Disposition,
    EntrySpec,
    SendStep,
    interpret,
    iter_plan,
    resume_seq,
)
from gateway.events import Event
from gateway.rate import Pacer
from gateway.replay import ReplayUsageError, jsonl_line, mark

RETRY_FIRST_S: Final = 0.5
RETRY_MAX_S: Final = 30.0

Advance = Callable[[int], None]


class ReplayFailedError(Exception):
    """The target refused an event for good; the cursor stays before it."""


class JsonlTarget:
    """Appends one JSON object per line; each chunk is fsynced before the cursor moves."""

    def __init__(self, path: Path, gateway_id: str, name: str) -> None:
        self.path = path
        self.gateway_id = gateway_id
        self.name = name
        self._file: IO[str] = path.open("a", encoding="utf-8")

    def send(self, events: Sequence[Event], advance: Advance) -> None:
        lines = [jsonl_line(e, self.gateway_id, self.name) + "\n" for e in events]
        self._file.write("".join(lines))
        self._file.flush()
        os.fsync(self._file.fileno())
        advance(events[-1].seq)

    def close(self) -> None:
        self._file.close()


class EventBridgeTarget:
    """PutEvents to any bus, with gateway.eventbridge_entries' batches and reply reading."""

    def __init__(
        self,
        config: Config,
        *,
        bus: str,
        source: str,
        name: str,
        endpoint_url: str | None,
        batch_size: int,
        say: Callable[[str], None],
    ) -> None:
        from gateway.sinks.eventbridge_calls import events_client  # noqa: PLC0415 - boto3

        eb = config.sinks.eventbridge
        self.spec = EntrySpec(
            bus=bus, source=source, gateway_id=config.gateway_id, replay=mark(name)
        )
        self.batch_size = batch_size
        self.say = say
        self.control_path = config.control_path
        self._told_no_gateway = False
        self.client = events_client(config, eb, endpoint_url=endpoint_url)
        self.retry = Backoff(RETRY_FIRST_S, RETRY_MAX_S)

    def send(self, events: Sequence[Event], advance: Advance) -> None:
        from gateway.sinks.eventbridge_calls import describe_call_error  # noqa: PLC0415

        for step in iter_plan(events, self.spec, max_entries=self.batch_size):
            if isinstance(step, DeadLetterStep):
                self.say(f"replay: seq {step.entry.seq} skipped: {step.error}")
                advance(step.through_seq)
                continue
            remaining = step
            self.retry.reset()
            while True:
                requests = [e.request for e in remaining.entries]
                self._announce([e.seq for e in remaining.entries])
                try:
                    response = self.client.put_events(Entries=requests) if requests else {}
                except Exception as e:
                    failure = describe_call_error(e)
                    if failure.disposition is not Disposition.TRANSIENT:
                        raise ReplayFailedError(
                            f"EventBridge refused seq {remaining.first_seq}..."
                            f"{remaining.through_seq}: {failure.error}"
                        ) from e
                    self.say(f"replay: EventBridge unreachable ({failure.error}); retrying")
                else:
                    reply = interpret(response, len(requests))
                    moved = resume_seq(remaining, reply)
                    if moved is not None:
                        advance(moved)
                    if reply.first_failure is None:
                        break
                    failure_entry = remaining.entries[reply.accepted]
                    if reply.first_failure.disposition is not Disposition.TRANSIENT:
                        raise ReplayFailedError(
                            f"EventBridge refused seq {failure_entry.seq}: "
                            f"{reply.first_failure.describe()}"
                        )
                    remaining = SendStep(
                        failure_entry.seq,
                        remaining.through_seq,
                        remaining.entries[reply.accepted :],
                    )
                    self.say(
                        f"replay: seq {failure_entry.seq} not accepted "
                        f"({reply.first_failure.describe()}); sending again"
                    )
                time.sleep(self.retry.next_delay())

    def _announce(self, seqs: list[int]) -> None:
        """Tell the running gateway these events are about to reach EventBridge, so that a
        replayed press coming back through a rule like the published one (an id-less command)
        is taken as an echo and never fed. Done before every send: each copy can echo once."""
        from gateway.control import call  # noqa: PLC0415
        from gateway.errors import ControlError  # noqa: PLC0415

        if not seqs:
            return
        try:
            call(self.control_path, {"op": "expect-echoes", "seqs": seqs}, timeout_s=5)
        except ControlError as e:
            if not self._told_no_gateway:
                self._told_no_gateway = True
                self.say(
                    f"replay: no running gateway was told about this replay ({e}); if a rule "
                    "turns these events into feed commands, a gateway started later could "
                    "take them for real ones"
                )

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()


class IotCoreTarget:
    """Publishes each event (QoS 1, in order, one PUBACK at a time, paced) over mTLS with the
    configured [sinks.iot_core] certificate, on its events topic."""

    def __init__(self, config: Config, name: str, say: Callable[[str], None]) -> None:
        from awscrt import mqtt5  # noqa: PLC0415 - cloud only
        from awsiot import mqtt5_client_builder  # noqa: PLC0415

        from gateway.sinks.iot_core import client_options, events_topic  # noqa: PLC0415

        iot = config.sinks.iot_core
        if iot is None:
            raise ReplayUsageError("--to iot-core needs [sinks.iot_core] in the config")
        self.mqtt5 = mqtt5
        self.topic = events_topic(iot, config.gateway_id)
        self.gateway_id = config.gateway_id
        self.name = name
        self.say = say
        self.pacer = Pacer(iot.publish_rate_per_s)
        self._connected = threading.Event()
        self._error: str | None = None

        def connected(_data: Any) -> None:
            self._connected.set()

        def failed(data: Any) -> None:
            self._error = str(getattr(data, "exception", data))
            self._connected.set()

        # Its own client id: the daemon's session (the gateway id) must not be taken over.
        client_id = f"{iot.client_id or config.gateway_id}-replay-{name}"[:128]
        self.client = mqtt5_client_builder.mtls_from_path(
            **client_options(iot, client_id),
            clean_start=True,
            on_lifecycle_connection_success=connected,
            on_lifecycle_connection_failure=failed,
        )
        self.client.start()
        if not self._connected.wait(30) or self._error is not None:
            self.client.stop()
            raise ReplayFailedError(
                f"IoT Core {iot.endpoint}:{iot.port}: {self._error or 'timeout'}"
            )

    def send(self, events: Sequence[Event], advance: Advance) -> None:
        mqtt5 = self.mqtt5
        for event in events:
            wait = self.pacer.reserve(time.monotonic())
            if wait > 0:
                time.sleep(wait)
            packet = mqtt5.PublishPacket(
                payload=jsonl_line(event, self.gateway_id, self.name).encode(),
                qos=mqtt5.QoS.AT_LEAST_ONCE,
                topic=self.topic,
                payload_format_indicator=mqtt5.PayloadFormatIndicator.AWS_MQTT5_PFI_UTF8,
                content_type="application/json",
            )
            result = self.client.publish(packet).result(timeout=60)
            puback = getattr(result, "puback", None)
            code = None if puback is None else puback.reason_code
            if code is not None and int(code) >= 0x80:
                raise ReplayFailedError(f"IoT Core refused seq {event.seq}: {code}")
        advance(events[-1].seq)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.stop()
