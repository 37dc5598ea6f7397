"""The "internet": a tiny loopback TCP relay that can be cut and restored.

``fmfb demo`` points the EventBridge sink at this relay, and the relay forwards every
connection, byte for byte, to the local AWS emulator (moto's server). ``cut()`` stops
listening and closes every open connection, so a connect is refused at once, as when a home
router loses its uplink; ``restore()`` listens again on the same port. Nothing is inspected or
changed on the way: the sink sees exactly what it would see on a real link that comes and goes.

One thread accepts; each connection gets two pump threads (one per direction). Everything is
on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable

ACCEPT_POLL_S = 0.1
CONNECT_TIMEOUT_S = 5.0
CHUNK = 65_536
RELISTEN_TIMEOUT_S = 5.0


def listen_again(listen: Callable[[], None], timeout_s: float = RELISTEN_TIMEOUT_S) -> None:
    """Call ``listen`` (a bind to the port a cut link had) until it succeeds.

    Connections the cut closed may hold the port in TIME_WAIT for a moment, or the kernel may
    not have released the old listener yet: SO_REUSEADDR covers most of it, not all."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            listen()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
        else:
            return


class Relay:
    """Forward TCP connections from ``127.0.0.1:port`` to ``upstream_host:upstream_port``."""

    def __init__(self, upstream_host: str, upstream_port: int, *, port: int = 0) -> None:
        self.host = "127.0.0.1"
        self.port = port
        self.upstream = (upstream_host, upstream_port)
        self.connections_total = 0
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop_accepting = threading.Event()
        self._open: set[socket.socket] = set()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def online(self) -> bool:
        """True while the relay listens (the "internet" is up)."""
        return self._listener is not None

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> Relay:
        self._listen()
        return self

    def cut(self) -> None:
        """Cut the link: stop listening (connects are refused) and close open connections."""
        listener, self._listener = self._listener, None
        self._stop_accepting.set()
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        with self._lock:
            sockets = list(self._open)
            self._open.clear()
        for sock in sockets:
            _close(sock)

    def restore(self) -> None:
        """Restore the link: listen again on the same port."""
        if self._listener is None:
            listen_again(self._listen)

    def close(self) -> None:
        self.cut()

    def __enter__(self) -> Relay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals -------------------------------------------------------------------------

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self.host, self.port))
            listener.listen(64)
        except OSError:
            listener.close()
            raise
        listener.settimeout(ACCEPT_POLL_S)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._stop_accepting = threading.Event()
        self._thread = threading.Thread(
            target=self._accept_loop,
            args=(listener, self._stop_accepting),
            name=f"relay-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def _accept_loop(self, listener: socket.socket, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed by cut()
            if stop.is_set():
                _close(client)
                return
            threading.Thread(
                target=self._connect, args=(client, stop), name="relay-conn", daemon=True
            ).start()

    def _connect(self, client: socket.socket, stop: threading.Event) -> None:
        try:
            upstream = socket.create_connection(self.upstream, timeout=CONNECT_TIMEOUT_S)
        except OSError:
            _close(client)
            return
        client.settimeout(None)
        upstream.settimeout(None)
        for sock in (client, upstream):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            if stop.is_set():
                _close(client)
                _close(upstream)
                return
            self._open.update((client, upstream))
            self.connections_total += 1
        threading.Thread(
            target=self._pump, args=(client, upstream), name="relay-up", daemon=True
        ).start()
        self._pump(upstream, client)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(CHUNK)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            # One direction ended: the connection is over (HTTP does not half-close).
            with self._lock:
                self._open.discard(source)
                self._open.discard(sink)
            _close(source)
            _close(sink)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
