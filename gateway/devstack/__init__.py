"""The local stack: everything the product talks to, on this machine, on 127.0.0.1.

One implementation of each, imported by the demo (``fmfb demo``), the tests and the benchmarks:

- :mod:`~gateway.devstack.mosquitto`: a private Mosquitto process on a free port;
- :mod:`~gateway.devstack.aws`: moto's server with the published design's bus, rule and SQS
  target, and a drainer that collects what the target received (moto and boto3 are imported
  only there, and only when a server starts: they come with the ``demo`` and ``test`` extras);
- :mod:`~gateway.devstack.relay`: the cuttable "internet", a TCP relay that can be cut and
  restored;
- :mod:`~gateway.devstack.daemon`: the gateway's daemon in the caller's event loop, as an async
  context manager.

Nothing here is imported by the production daemon or by ``fmfb --help``: these are fakes
shipped as real implementations (like gpiozero's MockFactory), not part of the gateway.

Errors: :class:`DevStackError` (a ``RuntimeError``) when a part cannot start or stop.
"""

from __future__ import annotations


class DevStackError(RuntimeError):
    """A part of the local stack could not start (a missing binary or library) or stop."""
