"""MicroPython's socket API over CPython's real sockets (the port's ``socket``/``usocket``).

MicroPython sockets are streams: ``read(n)`` keeps reading until it has n bytes or the peer
closed (then fewer), returns None in non-blocking mode when nothing is there, and raises
OSError(ETIMEDOUT) when a timeout passes; ``write(buf[, n])`` sends all of it. CPython's
sockets have recv/sendall instead. This module gives the real TCP sockets the MicroPython
behaviour, nothing more; timeouts are in device seconds, scaled by the shared clock
(vclock).
"""

from __future__ import annotations

import errno
import socket as _socket

import vclock

AF_INET = _socket.AF_INET
SOCK_STREAM = _socket.SOCK_STREAM
IPPROTO_TCP = _socket.IPPROTO_TCP


def getaddrinfo(  # noqa: PLR0917 - MicroPython's signature
    host: str, port: int, af: int = 0, type: int = 0, proto: int = 0, flags: int = 0
) -> list:
    return _socket.getaddrinfo(host, port, AF_INET, SOCK_STREAM)


class socket:  # noqa: N801 - MicroPython's name
    def __init__(self, af: int = AF_INET, type: int = SOCK_STREAM, proto: int = 0) -> None:
        self._sock = _socket.socket(af, type, proto)
        self._sock.setsockopt(IPPROTO_TCP, _socket.TCP_NODELAY, 1)

    def connect(self, addr: tuple) -> None:
        try:
            self._sock.connect(addr)
        except TimeoutError:
            raise OSError(errno.ETIMEDOUT, "ETIMEDOUT") from None

    def settimeout(self, timeout: float | None) -> None:
        self._sock.settimeout(None if timeout is None else vclock.real_s(timeout))

    def setblocking(self, flag: bool) -> None:
        self._sock.setblocking(flag)

    def read(self, n: int) -> bytes | None:
        chunks = []
        got = 0
        while got < n:
            try:
                chunk = self._sock.recv(n - got)
            except BlockingIOError:
                if got == 0:
                    return None
                break
            except TimeoutError:
                raise OSError(errno.ETIMEDOUT, "ETIMEDOUT") from None
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def write(self, buf: bytes, n: int | None = None) -> int:
        if isinstance(buf, str):  # MicroPython's str has the buffer protocol: UTF-8 bytes
            buf = buf.encode()
        data = bytes(buf) if n is None else bytes(buf[:n])
        try:
            self._sock.sendall(data)
        except TimeoutError:
            raise OSError(errno.ETIMEDOUT, "ETIMEDOUT") from None
        return len(data)

    def close(self) -> None:
        self._sock.close()
