"""Shim of MicroPython's ``network`` (station mode): the host is always on the network; it
records what the firmware asked of the port (``config`` settings, ``connect`` calls)."""

from __future__ import annotations

STA_IF = 0
AP_IF = 1
STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010


class WLAN:
    """``connected`` and ``stat`` are for a test to set; ``connect()`` while CONNECTING raises,
    as on the ESP32-C3 ("Wifi Internal Error")."""

    def __init__(self, interface: int = STA_IF) -> None:
        self.settings: dict = {}
        self.connects = 0
        self._active = False
        self.connected = True
        self.stat = STAT_GOT_IP

    def active(self, value: bool | None = None) -> bool | None:
        if value is None:
            return self._active
        self._active = bool(value)
        return None

    def config(self, *args: object, **kwargs: object) -> None:
        self.settings.update(kwargs)
        print("[network] config", kwargs, flush=True)

    def connect(self, ssid: str, password: str) -> None:
        if self.stat == STAT_CONNECTING:
            raise OSError("Wifi Internal Error")
        self.connects += 1
        self.stat = STAT_CONNECTING

    def isconnected(self) -> bool:
        return self.connected

    def status(self) -> int:
        return self.stat

    def ifconfig(self) -> tuple:
        return ("127.0.0.1", "255.0.0.0", "127.0.0.1", "127.0.0.1")
