"""Where the metrics go: an HTTP endpoint on localhost, and/or a node_exporter textfile.

The daemon runs :meth:`MetricsExporter.run` as one task when ``[metrics]`` asks for either.
The HTTP server is prometheus_client's, on its own thread; a scrape there must not read the
daemon's state off the event loop (the journal's SQLite connection belongs to the loop's
thread), so its collector hands the status call to the loop and waits for the answer.

The textfile is written atomically — a temporary file in the same folder, fsynced, then renamed
over the old one — because node_exporter may read it at any moment and a half-written file
would be a scrape error (or, worse, half the figures).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from pathlib import Path

from prometheus_client import generate_latest, start_http_server

from gateway.config import MetricsConfig
from gateway.metrics import StatusSource, registry_for
from gateway.status import GatewayStatus

log = logging.getLogger(__name__)

STATUS_TIMEOUT_S = 5.0


def write_textfile(path: Path, text: bytes) -> None:
    """Replace ``path`` with ``text`` atomically (temp file in the same folder + rename)."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    temp = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        temp.chmod(0o644)  # node_exporter runs as its own user
        temp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise


class MetricsExporter:
    def __init__(self, settings: MetricsConfig, status: StatusSource) -> None:
        self.settings = settings
        self._status = status
        self._loop: asyncio.AbstractEventLoop | None = None
        self.port: int | None = None  # the bound port, once serving (0 in config: any free one)

    def _status_threadsafe(self) -> GatewayStatus:
        loop = self._loop
        assert loop is not None
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            return self._status()

        async def on_loop() -> GatewayStatus:
            return self._status()

        return asyncio.run_coroutine_threadsafe(on_loop(), loop).result(STATUS_TIMEOUT_S)

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        registry = registry_for(self._status_threadsafe)
        server = None
        try:
            if self.settings.port is not None:
                server, _thread = start_http_server(
                    self.settings.port, addr=self.settings.address, registry=registry
                )
                self.port = int(server.server_address[1])
                log.info("metrics on http://%s:%d/metrics", self.settings.address, self.port)
            path = self.settings.textfile
            if path is None:
                await asyncio.Future()  # serve until cancelled
                return
            while True:
                text = generate_latest(registry)  # on the loop: status() is read in place
                try:
                    await asyncio.to_thread(write_textfile, path, text)
                except OSError as e:
                    log.warning("metrics textfile %s not written: %s", path, e)
                await asyncio.sleep(self.settings.every_s)
        finally:
            if server is not None:
                server.shutdown()
                server.server_close()
