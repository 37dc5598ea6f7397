"""IoT Core's data-plane HTTP Publish, standing in front of the TLS Mosquitto that stands in
for IoT Core's broker: what a Lambda's ``boto3.client("iot-data").publish(...)`` reaches.

``POST /topics/<url-encoded topic>?qos=1`` with the payload as the body (the iot-data API) is
published to the broker by ``publish(topic, payload)`` and answered 200 ``{}``. The request's
SigV4 signature is not checked (moto does not check one either). ``published`` records each.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    # Each call is one small request: Nagle would add ~40 ms to every answer.
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if not path.startswith("/topics/"):
            self._answer(404, b'{"message":"not an iot-data publish"}')
            return
        topic = unquote(path.removeprefix("/topics/"))
        try:
            self.server.owner.publish(topic, body)
        except Exception as e:  # the broker refused: the caller sees a 503, as from AWS
            self._answer(503, f'{{"message":"{e!s}"}}'.encode())
            return
        with self.server.owner.lock:
            self.server.owner.published.append((topic, body))
        self._answer(200, b"{}")

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: IotDataStandIn


class IotDataStandIn:
    def __init__(self, publish: Callable[[str, bytes], None]) -> None:
        self.publish = publish
        self.published: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="iot-data-standin",
            daemon=True,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> IotDataStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
