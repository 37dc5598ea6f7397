"""A local stand-in for the AWS IoT credentials provider: HTTPS on 127.0.0.1, mutual TLS.

It requires a client certificate signed by the test CA (``ssl.CERT_REQUIRED``), answers
``GET /role-aliases/<alias>/credentials`` with ``{"credentials": {...}}`` as AWS does, and
mimics AWS's refusals: 404 ``Role alias does not exist`` for another path, 403 ``Invalid thing
name passed`` when ``x-amzn-iot-thingname`` is not the expected thing. Each answer carries new
keys. ``status``/``body`` override the answer; ``requests`` logs what was seen (thing-name
header, client certificate CN) and ``refused`` the TLS handshakes it refused.

    with CredentialsServer(pki, role_alias="fmfb", thing_name="cat") as server:
        ... endpoint="127.0.0.1", port=server.port ...
"""

from __future__ import annotations

import datetime
import email.utils
import itertools
import json
import secrets
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from gateway.devstack.pki import Pki


@dataclass(frozen=True)
class SeenRequest:
    path: str
    thing_name: str | None  # the x-amzn-iot-thingname header
    client_cn: str | None  # the CN of the client certificate presented
    access_key: str | None  # what was handed out (None for an error answer)


class _Handler(BaseHTTPRequestHandler):
    server: _TlsServer

    def do_GET(self) -> None:
        owner = self.server.owner
        self._issued = int(time.time())
        status, body, access_key = owner.answer(self.path, self.headers, self._issued)
        cert: Any = self.connection.getpeercert()
        cn = next((v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"), None)
        owner.record(
            SeenRequest(self.path, self.headers.get("x-amzn-iot-thingname"), cn, access_key)
        )
        self.send_response_only(status)
        if owner.send_date:
            self.send_header("Date", email.utils.formatdate(self._issued, usegmt=True))
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _TlsServer(ThreadingHTTPServer):
    daemon_threads = True
    owner: CredentialsServer

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The handshake happens here, in the request's thread, so that a refused one can be
        # recorded and closed gracefully: the alert is sent, then the client's request is read
        # and discarded so that closing does not reset the connection before the client has
        # read the alert.
        request.settimeout(5)
        tls = self.owner.context.wrap_socket(
            request, server_side=True, do_handshake_on_connect=False
        )
        try:
            tls.do_handshake()
        except (ssl.SSLError, OSError) as e:
            self.owner.record_refusal(str(e))
            try:
                tls.shutdown(socket.SHUT_WR)
                while tls.recv(4096):  # plain reads once shut down
                    pass
            except OSError:
                pass
            tls.close()
            return
        self.RequestHandlerClass(tls, client_address, self)


class CredentialsServer:
    def __init__(
        self,
        pki: Pki,
        *,
        role_alias: str = "fmfb-gateway",
        thing_name: str | None = "fmfb-test-gateway",  # None: any thing name
        expiry_s: int = 3600,
    ) -> None:
        self.role_alias = role_alias
        self.thing_name = thing_name
        self.expiry_s = expiry_s
        self.status: int | None = None  # set with body to override the answer
        self.body: bytes | None = None
        self.send_date = True
        self.requests: list[SeenRequest] = []
        self.refused: list[str] = []
        self._lock = threading.Lock()
        self._serial = itertools.count(1)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(pki.server_cert, pki.server_key)
        self.context.load_verify_locations(cafile=pki.ca)
        self.context.verify_mode = ssl.CERT_REQUIRED
        self._server = _TlsServer(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # shutdown() waits up to one poll
            name="credentials-server",
            daemon=True,
        )

    @property
    def path(self) -> str:
        return f"/role-aliases/{self.role_alias}/credentials"

    def start(self) -> CredentialsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> CredentialsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def respond(self, status: int | None, body: bytes | dict[str, Any] | None = None) -> None:
        """Answer every following request with ``status`` and ``body`` (None: back to normal)."""
        with self._lock:
            self.status = status
            self.body = json.dumps(body).encode() if isinstance(body, dict) else body

    # -- called from the handler threads --------------------------------------------------

    def answer(self, path: str, headers: Any, issued: int) -> tuple[int, bytes, str | None]:
        with self._lock:
            status, body = self.status, self.body
            n = next(self._serial)
        if status is not None:
            return status, body or b"", None
        if path != self.path:
            return 404, b'{"message":"Role alias does not exist"}', None
        if self.thing_name is not None and headers.get("x-amzn-iot-thingname") != self.thing_name:
            return 403, b'{"message":"Invalid thing name passed"}', None
        expiration = datetime.datetime.fromtimestamp(issued + self.expiry_s, datetime.UTC)
        access_key = f"ASIATEST{n:012d}"
        doc = {
            "credentials": {
                "accessKeyId": access_key,
                "secretAccessKey": f"secret-{n}-{secrets.token_hex(8)}",
                "sessionToken": f"token-{n}-{secrets.token_hex(16)}",
                "expiration": expiration.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        }
        return 200, json.dumps(doc).encode(), access_key

    def record(self, seen: SeenRequest) -> None:
        with self._lock:
            self.requests.append(seen)

    def record_refusal(self, why: str) -> None:
        with self._lock:
            self.refused.append(why)
