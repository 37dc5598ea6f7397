"""A fault-injecting HTTP proxy on loopback, in front of moto: what moto itself never does.

The sink's ``endpoint_url`` points here; the proxy forwards each request to moto and answers
with moto's reply — unless told otherwise. Faults, switchable at any time from the test:

- ``refuse()`` / ``accept()``: close the listening socket (and every open connection), so
  connects are refused as if the link were cut; listen again on the same port;
- ``Reset(after_bytes)``: read the headers (and ``after_bytes`` of the body, or all of it with
  ``None``), then reset the connection (RST): nothing reaches moto;
- ``Status(500, "InternalFailure", ...)`` and ``THROTTLE`` (HTTP 400 with
  ``{"__type": "ThrottlingException", "message": "Rate exceeded"}`` and the
  ``x-amzn-ErrorType`` header): an error reply, nothing reaches moto;
- ``FailEntries(pick)``: a partial failure — the entries ``pick(index, entry)`` names are held
  back, the rest are forwarded, and the reply gives the held-back ones an ``ErrorCode`` and
  ``ErrorMessage`` and sets ``FailedEntryCount`` (what AWS does: failed entries are not
  delivered, the others are);
- ``latency_s``: added before each request is forwarded;
- ``put_events``: the entries of every PutEvents request whose body was read (all but resets);
- the PutEvents size limit, which moto does not check: a request whose entries add up to more
  than 256 KiB (counted as AWS documents it) is refused with a ValidationException, and
  counted in ``size_violations`` so a test can assert it never happened.

Faults apply to PutEvents requests only (``X-Amz-Target: AWSEvents.PutEvents``): ``fail_next``
queues faults for the next requests, ``always`` sets one for every request until cleared.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import struct
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from gateway.devstack.relay import listen_again

PUT_EVENTS = "AWSEvents.PutEvents"
MAX_BATCH_BYTES = 262_144
JSON_TYPE = "application/x-amz-json-1.1"


@dataclass(frozen=True)
class Reset:
    """Reset the connection after reading ``after_bytes`` of the body (None: all of it)."""

    after_bytes: int | None = 0


@dataclass(frozen=True)
class Status:
    """Answer with an AWS JSON error instead of forwarding."""

    status: int = 500
    code: str = "InternalFailure"
    message: str = "We encountered an internal error. Please try again."


THROTTLE = Status(400, "ThrottlingException", "Rate exceeded")
HTTP_500 = Status(500, "InternalFailure", "We encountered an internal error. Please try again.")


@dataclass(frozen=True)
class FailEntries:
    """Partial failure: ``pick(index, entry)`` returns (ErrorCode, ErrorMessage) for an entry
    to fail, or None to let it through."""

    pick: Callable[[int, dict[str, Any]], tuple[str, str] | None]


Fault = Reset | Status | FailEntries


def fail_indices(
    indices: set[int], code: str = "ThrottlingException", message: str = ""
) -> FailEntries:
    msg = message or f"{code} (injected)"
    return FailEntries(lambda i, _entry: (code, msg) if i in indices else None)


def entry_size(entry: dict[str, Any]) -> int:
    """The AWS-documented PutEvents entry size (Time counts 14 bytes)."""
    size = 14 if entry.get("Time") is not None else 0
    for key in ("Source", "DetailType", "Detail"):
        if entry.get(key) is not None:
            size += len(str(entry[key]).encode("utf-8"))
    for resource in entry.get("Resources") or ():
        size += len(str(resource).encode("utf-8"))
    return size


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    proxy: FaultProxy

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Connections the test cut or reset on purpose end in errors; they are not failures.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: with Nagle on, the body would wait for the
    # client's delayed ACK (~40 ms) on every reply.
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.proxy._track(self.connection, add=True)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.proxy._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.server.proxy._handle(self)

    def do_GET(self) -> None:
        self.server.proxy._handle(self)


class FaultProxy:
    def __init__(self, upstream: str, *, enforce_size_limit: bool = True) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.enforce_size_limit = enforce_size_limit
        self.host = "127.0.0.1"
        self.port = 0
        self.latency_s = 0.0
        self.counts: Counter[str] = Counter()
        self.size_violations = 0
        self.put_events: list[list[dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._queued: deque[Fault] = deque()
        self._always: Fault | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> FaultProxy:
        self._listen()
        return self

    def _listen(self) -> None:
        server = _Server((self.host, self.port), _Handler)
        server.proxy = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name=f"fault-proxy-{self.port}",
        )
        self._thread.start()

    def refuse(self) -> None:
        """Cut the link: stop listening (connects are refused) and close open connections."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def accept(self) -> None:
        """Restore the link: listen again on the same port."""
        if self._server is None:
            listen_again(self._listen)

    @property
    def refusing(self) -> bool:
        return self._server is None

    def stop(self) -> None:
        self.refuse()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- faults ----------------------------------------------------------------------------

    def fail_next(self, fault: Fault, times: int = 1) -> None:
        with self._lock:
            self._queued.extend([fault] * times)

    def always(self, fault: Fault | None) -> None:
        with self._lock:
            self._always = fault

    def clear(self) -> None:
        with self._lock:
            self._queued.clear()
            self._always = None
        self.latency_s = 0.0

    @property
    def pending_faults(self) -> int:
        with self._lock:
            return len(self._queued)

    def _next_fault(self) -> Fault | None:
        with self._lock:
            if self._queued:
                return self._queued.popleft()
            return self._always

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    # --- one request -----------------------------------------------------------------------

    def _handle(self, handler: _Handler) -> None:
        target = handler.headers.get("X-Amz-Target", "")
        length = int(handler.headers.get("Content-Length") or 0)
        is_put = target == PUT_EVENTS
        with self._lock:
            self.counts["requests"] += 1
            if is_put:
                self.counts["put_events"] += 1
        fault = self._next_fault() if is_put else None
        if isinstance(fault, Reset):
            self._count("fault:reset")
            if fault.after_bytes is None:
                handler.rfile.read(length)
            elif fault.after_bytes:
                handler.rfile.read(min(fault.after_bytes, length))
            self._reset(handler)
            return
        body = handler.rfile.read(length) if length else b""
        if self.latency_s:
            time.sleep(self.latency_s)
        request: dict[str, Any] | None = None
        if is_put:
            request = json.loads(body or b"{}")
            entries = list(request.get("Entries") or [])
            with self._lock:
                self.put_events.append(entries)
        if isinstance(fault, Status):
            self._count(f"fault:{fault.code}")
            self._reply_error(handler, fault)
            return
        if request is not None:
            total = sum(entry_size(e) for e in entries)
            if self.enforce_size_limit and total > MAX_BATCH_BYTES:
                with self._lock:
                    self.size_violations += 1
                self._reply_error(
                    handler,
                    Status(
                        400,
                        "ValidationException",
                        "Total size of the entries in the request is over the limit.",
                    ),
                )
                return
        if isinstance(fault, FailEntries) and request is not None:
            self._count("fault:partial")
            self._partial(handler, request, fault)
            return
        status, headers, answer = self._forward(handler, body)
        self._count("forwarded")
        self._reply(handler, status, headers, answer)

    def _count(self, key: str) -> None:
        with self._lock:
            self.counts[key] += 1

    def _partial(self, handler: _Handler, request: dict[str, Any], fault: FailEntries) -> None:
        entries: list[dict[str, Any]] = list(request.get("Entries") or [])
        failures = {i: fault.pick(i, e) for i, e in enumerate(entries)}
        through = [e for i, e in enumerate(entries) if failures[i] is None]
        results: list[dict[str, Any]] = []
        if through:
            body = json.dumps({**request, "Entries": through}).encode()
            status, headers, answer = self._forward(handler, body)
            if status != 200:
                self._reply(handler, status, headers, answer)
                return
            upstream = json.loads(answer)
            delivered = iter(upstream.get("Entries") or [])
            failed_upstream = int(upstream.get("FailedEntryCount") or 0)
        else:
            delivered = iter([])
            failed_upstream = 0
        failed = 0
        for i in range(len(entries)):
            failure = failures[i]
            if failure is None:
                results.append(next(delivered))
            else:
                code, message = failure
                results.append({"ErrorCode": code, "ErrorMessage": message})
                failed += 1
        reply = {"FailedEntryCount": failed + failed_upstream, "Entries": results}
        self._reply(handler, 200, {"Content-Type": JSON_TYPE}, json.dumps(reply).encode())

    def _forward(self, handler: _Handler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=30)
        try:
            headers = {
                k: v
                for k, v in handler.headers.items()
                if k.lower() not in {"host", "content-length", "connection", "keep-alive"}
            }
            headers["Content-Length"] = str(len(body))
            headers["Host"] = f"{self.upstream_host}:{self.upstream_port}"
            conn.request(handler.command, handler.path, body=body, headers=headers)
            response = conn.getresponse()
            answer = response.read()
            kept = {
                k: v
                for k, v in response.getheaders()
                if k.lower() in {"content-type", "x-amzn-requestid", "x-amz-crc32"}
            }
            return response.status, kept, answer
        finally:
            conn.close()

    def _reply(self, handler: _Handler, status: int, headers: dict[str, str], body: bytes) -> None:
        try:
            handler.send_response(status)
            for key, value in headers.items():
                handler.send_header(key, value)
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
        except OSError:
            handler.close_connection = True

    def _reply_error(self, handler: _Handler, fault: Status) -> None:
        body = json.dumps({"__type": fault.code, "message": fault.message}).encode()
        headers = {
            "Content-Type": JSON_TYPE,
            "x-amzn-ErrorType": fault.code,
            "x-amzn-RequestId": str(uuid.uuid4()),
        }
        self._reply(handler, fault.status, headers, body)

    def _reset(self, handler: _Handler) -> None:
        conn = handler.connection
        with contextlib.suppress(OSError):
            # Linger on, timeout 0: close() sends RST instead of FIN.
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
        handler.close_connection = True
