"""A fault-injecting TCP proxy on loopback, for MQTT between a device and a real broker.

The device connects here; each connection is forwarded to the upstream port byte for byte,
unless told otherwise. Faults, switchable at any time from the test, apply to the
connections open at that moment (new connections pass, unless refused):

- ``stall()``: the broker "stops answering": what it sends is dropped; what the device sends
  still reaches it. Both TCP connections stay open.
- ``half_open()``: nothing passes either way, and no FIN or RST reaches either side: what a
  dead Wi-Fi access point or NAT leaves behind.
- ``cut()``: both sides are closed.
- ``refuse()`` / ``accept()``: new connections are closed at once, or forwarded again.
- ``stall_new(True)``: new connections start stalled (the TCP connect succeeds, the broker's
  CONNACK never arrives); ``stall_new(False)`` lets new ones pass again.
- ``stall_on(marker)``: ``stall()`` that connection as soon as the device sends bytes
  containing ``marker`` (forwarded first): the broker stops answering mid-publish.

``device_sends`` records ``(clock(), connection number, bytes)`` for every chunk the device
sent, so a test can check the gaps between its packets (keepalive) on the device's clock.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType

_PASS = 0
_STALLED = 1  # drop upstream → device
_HALF_OPEN = 2  # drop both ways


class _Connection:
    def __init__(self, number: int, device: socket.socket, broker: socket.socket) -> None:
        self.number = number
        self.device = device
        self.broker = broker
        self.state = _PASS
        self.closed = False


class TcpFaultProxy:
    def __init__(self, upstream_port: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.clock = clock
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._connections: list[_Connection] = []
        self._refusing = False
        self._stall_new = False
        self._stall_marker: bytes | None = None
        self._running = True
        self.device_sends: list[tuple[float, int, bytes]] = []
        self.accepted = 0
        self._accept_thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._accept_thread.start()

    # --- faults ------------------------------------------------------------------------------

    def _set_state(self, state: int) -> None:
        with self._lock:
            for conn in self._connections:
                if not conn.closed:
                    conn.state = state

    def stall(self) -> None:
        self._set_state(_STALLED)

    def half_open(self) -> None:
        self._set_state(_HALF_OPEN)

    def stall_on(self, marker: bytes | None) -> None:
        self._stall_marker = marker

    def cut(self) -> None:
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            self._close(conn)

    def refuse(self) -> None:
        self._refusing = True
        self.cut()

    def accept(self) -> None:
        self._refusing = False

    def stall_new(self, stalled: bool) -> None:
        self._stall_new = stalled

    @property
    def open_connections(self) -> int:
        with self._lock:
            return sum(1 for conn in self._connections if not conn.closed)

    # --- plumbing ----------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while self._running:
            try:
                device, _ = self._listener.accept()
            except OSError:
                return
            if self._refusing:
                device.close()
                continue
            try:
                broker = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                device.close()
                continue
            for sock in (device, broker):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.settimeout(None)
            with self._lock:
                self.accepted += 1
                conn = _Connection(self.accepted, device, broker)
                if self._stall_new:
                    conn.state = _STALLED
                self._connections.append(conn)
            threading.Thread(target=self._pump, args=(conn,), daemon=True).start()

    def _pump(self, conn: _Connection) -> None:
        try:
            while self._running and not conn.closed:
                readable, _, _ = select.select([conn.device, conn.broker], [], [], 0.05)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        self._close(conn)
                        return
                    if sock is conn.device:
                        self._from_device(conn, data)
                    elif conn.state == _PASS:
                        conn.device.sendall(data)
        except OSError:
            self._close(conn)

    def _from_device(self, conn: _Connection, data: bytes) -> None:
        if conn.state == _HALF_OPEN:
            return
        with self._lock:
            self.device_sends.append((self.clock(), conn.number, data))
        conn.broker.sendall(data)
        marker = self._stall_marker
        if marker is not None and marker in data:
            self._stall_marker = None
            conn.state = _STALLED

    def _close(self, conn: _Connection) -> None:
        conn.closed = True
        for sock in (conn.device, conn.broker):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def close(self) -> None:
        self._running = False
        with contextlib.suppress(OSError):
            self._listener.close()
        self.cut()

    def __enter__(self) -> TcpFaultProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
