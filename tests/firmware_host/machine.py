"""Shim of MicroPython's ``machine`` for running firmware/main.py on the host.

Pins log every change to ``pins.log`` in the flash directory (the working directory):
``<virtual ms> <pin> <0|1>``, so a test sees the motors as a scope would. The watchdog
really resets: not fed within its timeout (virtual time), the process prints
``WATCHDOG RESET`` and exits with status 86.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import vclock

WATCHDOG_EXIT = 86
_pins_log = Path("pins.log").open("a", buffering=1)  # noqa: SIM115 - for the process's lifetime
_lock = threading.Lock()


class Pin:
    OUT = 1
    IN = 0

    def __init__(self, pin: int, mode: int = -1, value: int | None = None) -> None:
        self.pin = int(pin)
        self._value = 0
        if value is not None:
            self._set(value)

    def _set(self, value: int) -> None:
        self._value = 1 if value else 0
        with _lock:
            _pins_log.write(f"{vclock.virtual_ms()} {self.pin} {self._value}\n")

    def value(self, value: int | None = None) -> int | None:
        if value is None:
            return self._value
        if (1 if value else 0) != self._value:
            self._set(value)
        return None


class PWM:
    def __init__(self, pin: Pin, freq: int = 1000, duty_u16: int = 0) -> None:
        self.pin = pin
        pin._set(1 if duty_u16 else 0)

    def deinit(self) -> None:
        self.pin._set(0)


class ADC:
    ATTN_11DB = 3

    def __init__(self, pin: Pin) -> None:
        self.pin = pin

    def atten(self, attn: int) -> None:
        pass

    def read_u16(self) -> int:
        return 32768


class RTC:
    def datetime(self, value: tuple | None = None) -> tuple:
        # The host's clock is already right: setting it is a no-op here.
        return ()


class WDT:
    _instance: WDT | None = None

    def __new__(cls, timeout: int = 5000) -> WDT:
        # The ESP32 reconfigures its one task watchdog on each construction.
        first = cls._instance is None
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        cls._instance.timeout = timeout
        cls._instance._fed = vclock.virtual_ms()
        if first:
            threading.Thread(target=cls._instance._watch, daemon=True).start()
        return cls._instance

    def feed(self) -> None:
        self._fed = vclock.virtual_ms()

    def _watch(self) -> None:
        while True:
            vclock.sleep_ms(50)
            if vclock.virtual_ms() - self._fed > self.timeout:
                print("WATCHDOG RESET", flush=True)
                sys.stdout.flush()
                os._exit(WATCHDOG_EXIT)


def reset() -> None:
    os._exit(0)
