"""Shared fixtures: a real Mosquitto broker per test or per session; moto with the published
bus, rule and target; a fault proxy in front of it.

The broker, moto and the in-process daemon are the local stack's (``gateway.devstack``), the
same the demo and the benchmarks run. Test-only helpers live next to this file and are imported
by module name (``tests/`` is on sys.path under pytest's default rootdir-relative import mode,
as it has no ``__init__.py``): ``from waiting import wait_for``, ``from fault_proxy import
FaultProxy``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

# Nothing in the tests may leave loopback: boto3's credential chain would otherwise ask the
# EC2 instance-metadata address. Set before any test module imports boto3.
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"

import pytest
from hypothesis import settings

from gateway.devstack.mosquitto import Mosquitto

# Terraform's fixtures (terraform_infra: one init per session) live in their own file.
pytest_plugins = ["terraform_fixture"]

# No per-example deadline: brokers, SQLite fsyncs and a loaded CI machine make timings noisy.
# Speed is measured by bench/, not by tests. HYPOTHESIS_PROFILE=fmfb-thorough for more examples.
settings.register_profile("fmfb", deadline=None, max_examples=100)
settings.register_profile("fmfb-thorough", deadline=None, max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fmfb"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--soak",
        action="store_true",
        default=False,
        help="long local runs: the SIGKILL crash loop runs 10,000 kills (tests/test_crash.py)",
    )


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    """A private, non-persistent mosquitto for one test (free to stop, kill and restart)."""
    mosquitto = Mosquitto()
    mosquitto.start()
    try:
        yield mosquitto
    finally:
        mosquitto.close()


@pytest.fixture(scope="session")
def broker_session() -> Iterator[Mosquitto]:
    """A private mosquitto shared by the whole session: do not stop, kill or restart it."""
    mosquitto = Mosquitto()
    mosquitto.start()
    try:
        yield mosquitto
    finally:
        mosquitto.close()


# --- the local AWS: moto's server, the published rule, a fault proxy in front ------------------
# Imported inside the fixtures: only the cloud tests pay for boto3 and moto.


@pytest.fixture(scope="module")
def moto() -> Iterator[Any]:
    """moto's server on a free loopback port, for one test module (a module may override it)."""
    from gateway.devstack.aws import MotoServer  # noqa: PLC0415

    with MotoServer() as server:
        yield server


@pytest.fixture
def feeds(moto: Any) -> Any:
    """A clean moto: the bus feedmyfurbabies, the rule feeds and an SQS target."""
    moto.reset()
    return moto.setup_feeds()


@pytest.fixture
def proxy(moto: Any) -> Iterator[Any]:
    """A fault-injecting HTTP proxy in front of moto."""
    from fault_proxy import FaultProxy  # noqa: PLC0415

    with FaultProxy(moto.url) as p:
        yield p
