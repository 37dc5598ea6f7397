"""``fmfb demo``: the whole product on this machine, in one command.

The demo drives the same :class:`~gateway.daemon.Daemon` as ``fmfb run`` through its public
interfaces only: its config, its typed ``status()``, ``ready`` and ``stop()``, the journal
file (read-only, like ``fmfb journal``), mock GPIO pins through gpiozero's own API on the pin
factory it hands in, and the MQTT button's topic on the broker.

- :mod:`~gateway.demo.stack`: what runs around the gateway (``gateway.devstack``'s broker,
  local AWS and relay, and the feeder simulator) and the gateway's demo config;
- :mod:`~gateway.demo.script`: the ``--script`` language (pure);
- :mod:`~gateway.demo.track`: what the demo follows in the journal and at the SQS target
  (pure);
- :mod:`~gateway.demo.buttons`: pressing the GPIO button (a mock pin) and the MQTT button;
- :mod:`~gateway.demo.session`: a running demo: steps, keys, the live view's data;
- :mod:`~gateway.demo.view`: rendering (pure) and the curses screen;
- :mod:`~gateway.demo.app`: set-up and tear-down around a session (``run_demo``).

Errors: :class:`DemoError` when the demo cannot start or a script does not parse; a part of
the local stack that fails raises ``gateway.devstack.DevStackError``.
"""

from __future__ import annotations


class DemoError(Exception):
    """The demo could not start (a missing binary or library) or a step failed."""
