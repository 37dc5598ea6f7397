"""Calling EventBridge: the boto3 client as the gateway makes it, what a failed call means,
and the one thread blocking calls run on. Shared by the EventBridge sink and ``fmfb replay``.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
)

from gateway.config import Config, EventBridgeConfig
from gateway.credentials import aws_session
from gateway.errors import CredentialsError
from gateway.eventbridge_entries import Disposition, classify
from gateway.sinks.follower import short_error

T = TypeVar("T")

NO_CREDENTIALS: Final = "no AWS credentials"


@dataclass(frozen=True, slots=True)
class CallFailure:
    disposition: Disposition
    error: str  # for the status line and the log
    drop_client: bool = False  # credentials may have changed: build a new client


def describe_call_error(error: BaseException) -> CallFailure:
    """What a put_events call that raised (after botocore's own retries) means."""
    if isinstance(
        error,
        NoCredentialsError | PartialCredentialsError | CredentialRetrievalError | CredentialsError,
    ):
        detail = "" if isinstance(error, NoCredentialsError) else f" ({short_error(str(error))})"
        return CallFailure(Disposition.CONFIG, NO_CREDENTIALS + detail, drop_client=True)
    if isinstance(error, ClientError):
        response: Mapping[str, Any] = error.response or {}
        err = response.get("Error") or {}
        code = str(err.get("Code") or "")
        message = str(err.get("Message") or "")
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        text = short_error(f"{code}: {message}" if message else code or str(error))
        if status == 413:
            return CallFailure(Disposition.PERMANENT, text)
        disposition = classify(code or None)
        return CallFailure(disposition, text, drop_client=disposition is Disposition.CONFIG)
    if isinstance(error, ParamValidationError):
        # boto3 refused the request before sending it: the entries are wrong, not the link.
        return CallFailure(Disposition.PERMANENT, short_error(str(error)))
    if isinstance(error, BotoCoreError | OSError):
        return CallFailure(Disposition.TRANSIENT, short_error(str(error) or type(error).__name__))
    return CallFailure(Disposition.TRANSIENT, short_error(f"{type(error).__name__}: {error}"))


def events_client(
    config: Config, settings: EventBridgeConfig | None, *, endpoint_url: str | None = None
) -> Any:
    """A boto3 EventBridge client as the sink makes it (the replay makes its own with this):
    the configured credentials and region, botocore's standard retries inside a call, the
    configured timeouts. ``endpoint_url`` overrides the configured one."""
    if settings is None:
        from gateway.config import EventBridgeConfig as Defaults  # noqa: PLC0415

        settings = Defaults()
    return aws_session(config.cloud).client(
        "events",
        endpoint_url=endpoint_url or settings.endpoint_url,
        region_name=config.cloud.aws.region,
        config=BotoConfig(
            retries={"mode": "standard", "max_attempts": settings.max_attempts},
            connect_timeout=settings.timeout_s,
            read_timeout=settings.timeout_s,
        ),
    )


class CallWorker:
    """One daemon thread that runs blocking calls in order; results come back on the loop."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._queue: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def submit(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """Queue ``fn`` (after those queued before it); its result comes back as the future's.
        Cancelling the future does not stop ``fn`` once it has started."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def settle(result: T | None, error: BaseException | None) -> None:
            if future.done():
                return  # the caller was cancelled meanwhile
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)  # type: ignore[arg-type]

        def job() -> None:
            try:
                result = fn()
            except BaseException as e:  # handed to the awaiting task
                with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                    loop.call_soon_threadsafe(settle, None, e)
            else:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(settle, result, None)

        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._main, name=self._name, daemon=True)
            self._thread.start()
        self._queue.put(job)
        return future

    def _main(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            job()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread = None
