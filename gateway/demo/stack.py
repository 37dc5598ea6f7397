"""What runs around the gateway in the demo, and the gateway's demo config.

All on 127.0.0.1 with ports the kernel picks (``gateway.devstack``):

- a private Mosquitto (config and log in the demo's directory);
- a local AWS: moto's server with the published design's bus ``feedmyfurbabies``, rule
  ``feeds`` and an SQS queue as the rule's target, drained as it fills, so the demo sees what
  EventBridge would deliver;
- the "internet": a relay between the gateway's EventBridge sink and moto, which the demo cuts
  and restores;
- the feeder simulator (:mod:`gateway.devstack.feeder_sim`: the firmware's logic against the
  broker), slowed to a watchable pace.

Started in that order and stopped in reverse.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway.config import Config, parse_config
from gateway.demo import DemoError
from gateway.devstack.aws import BUS, REGION, RULE, SOURCE, Drainer, Feeds, MotoServer, seqs
from gateway.devstack.mosquitto import Mosquitto
from gateway.devstack.relay import Relay

QUEUE = "feedmyfurbabies-feeds"
GATEWAY_ID = "demo-gateway"
GPIO_BUTTON = "demo-gpio"
GPIO_PIN = 17
MQTT_BUTTON = "demo-mqtt"
MQTT_BUTTON_TOPIC = "fmfb/demo/button"
PORTION_MS = 2000
FEEDER_TIME_SCALE = 0.25  # real seconds per simulated second of motor
FEEDER_FOOD_PER_MS = 0.002  # % of food per motor-millisecond: 4 % per 2 s bowl
DEMO_FOOD_LOW_PERCENT = 90  # three bowl runs raise "food low"
DOUBLE_CLICK_MS = 300
HOLD_MS = 800
# Only the EventBridge sink retries sooner after an outage than in production (at most every
# 2 s rather than 15 s), so a restored link drains while people watch.
EB_RETRY_MIN_S = 0.3
EB_RETRY_MAX_S = 2.0
SQS_POLL_S = 0.1


def meal_soon(now: datetime | None = None) -> str:
    """HH:MM (UTC) of the next whole minute at least a minute away."""
    now = now or datetime.now(UTC)
    return (now + timedelta(seconds=120 - now.second)).strftime("%H:%M")


def demo_config(state_dir: Path, broker_port: int, relay_url: str) -> Config:
    """``fmfb run``'s config for the demo: a mock GPIO button and an MQTT button, the feeder
    sink, and the EventBridge sink pointing at the relay."""
    return parse_config(
        {
            "gateway_id": GATEWAY_ID,
            "state_dir": str(state_dir),
            "log_level": "INFO",
            "broker": {
                "host": "127.0.0.1",
                "port": broker_port,
                "reconnect_min_s": 0.1,
                "reconnect_max_s": 2.0,
            },
            "feeding": {"portion_ms": PORTION_MS, "expiry_s": 300, "ack_timeout_s": 30},
            # A demo is for pressing: no minimum gap, a cap nobody reaches.
            "policy": {"min_gap_s": 0, "cap_per_bowl": 1000},
            "classifier": {"double_click_ms": DOUBLE_CLICK_MS, "hold_ms": HOLD_MS},
            "buttons": {
                "pin_factory": "mock",
                "gpio": [{"name": GPIO_BUTTON, "pin": GPIO_PIN, "bounce_ms": 5}],
                "mqtt": [{"name": MQTT_BUTTON, "topic": MQTT_BUTTON_TOPIC}],
            },
            "cloud": {"aws": {"region": REGION}},
            # A meal due in about a minute, and a food alert that a few presses reach (4 % of
            # food per bowl run): the schedule and the alerts show without waiting for hours.
            "scheduling": {"time_zone": "UTC", "catch_up_s": 300},
            "schedule": [{"name": "demo-meal", "at": meal_soon(), "bowls": ["left", "right"]}],
            "alerts": {"food_low_percent": DEMO_FOOD_LOW_PERCENT},
            "sinks": {
                "eventbridge": {
                    "bus": BUS,
                    "source": SOURCE,
                    "endpoint_url": relay_url,
                    "max_attempts": 1,
                    "timeout_s": 3.0,
                    "retry_min_s": EB_RETRY_MIN_S,
                    "retry_max_s": EB_RETRY_MAX_S,
                },
            },
        },
        source="demo",
    )


class Feeder:
    """The feeder simulator (:class:`gateway.devstack.feeder_sim.FeederSim`), slowed to a watchable
    pace: a 2 s portion turns the motors for half a second, and the level drops visibly."""

    def __init__(self, host: str, port: int, workdir: Path) -> None:
        try:
            from gateway.devstack.feeder_sim import FeederSim  # noqa: PLC0415 - started only by the demo
        except ImportError as e:
            raise DemoError(
                f"the feeder simulator cannot be loaded ({e}); reinstall the project "
                "(scripts/install-deps, or pip install -e '.[demo]')"
            ) from None

        self.sim = FeederSim(
            host,
            port,
            client_id="fmfb-demo-feeder",
            memory_path=workdir / "feeder-memory.json",
            time_scale=FEEDER_TIME_SCALE,
            food_per_motor_ms=FEEDER_FOOD_PER_MS,
        )

    def start(self) -> None:
        self.sim.start()

    def stop(self) -> None:
        self.sim.stop()

    def runs(self) -> dict[str, int]:
        """Motor runs per bowl so far."""
        return self.sim.runs_per_bowl()

    def food_level(self) -> int:
        return self.sim.food_level


class Stack:
    """Everything around the gateway, started in order and stopped in reverse."""

    def __init__(self, workdir: Path, say: Callable[[str], None]) -> None:
        self.workdir = workdir
        self.say = say
        self.broker = Mosquitto(workdir=workdir / "mosquitto")
        self.cloud = MotoServer()
        self.feeds: Feeds | None = None
        self.drainer: Drainer | None = None
        self.relay: Relay | None = None
        self.feeder: Feeder | None = None

    def start(self) -> None:
        self.broker.start()
        self.say(f"mosquitto: pid {self.broker.pid} on 127.0.0.1:{self.broker.port}")
        self.cloud.start()
        self.feeds = self.cloud.setup_feeds(queue=QUEUE)
        self.drainer = Drainer(self.cloud, self.feeds, every_s=SQS_POLL_S).start()
        self.say(f"aws emulator (moto): {self.cloud.url}, bus {BUS}, rule {RULE} -> SQS {QUEUE}")
        self.relay = Relay(self.cloud.host, self.cloud.port).start()
        self.say(f"internet (relay): {self.relay.url} -> {self.cloud.url}")
        self.feeder = Feeder(self.broker.host, self.broker.port, self.workdir)
        self.feeder.start()
        self.say("feeder simulator: online")

    def config(self) -> Config:
        """The gateway's config for this stack (once started)."""
        if self.relay is None:
            raise DemoError("the stack is not started")
        return demo_config(self.workdir, self.broker.port, self.relay.url)

    def received(self) -> list[int]:
        """The seq of every event that reached the SQS target, in arrival order."""
        return [] if self.drainer is None else seqs(self.drainer.arrivals())

    @property
    def internet_up(self) -> bool:
        return self.relay is not None and self.relay.online

    def cut(self) -> None:
        if self.relay is not None:
            self.relay.cut()

    def restore(self) -> None:
        if self.relay is not None:
            self.relay.restore()

    def feeder_view(self) -> tuple[int | None, dict[str, int]]:
        """Food level and motor runs per bowl, from the simulator itself."""
        if self.feeder is None:
            return None, {}
        return self.feeder.food_level(), self.feeder.runs()

    def stop(self) -> None:
        stops: list[Callable[[], None] | None] = [
            self.feeder.stop if self.feeder else None,
            self.drainer.stop if self.drainer else None,
            self.relay.close if self.relay else None,
            self.cloud.stop,
            self.broker.stop,
        ]
        for stop in stops:
            if stop is not None:
                # One part that fails to stop must not keep the others (and the broker's
                # process) running.
                with contextlib.suppress(Exception):
                    stop()
