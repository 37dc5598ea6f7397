"""Press-to-action latency through the gateway, against bare MQTT and bare fsync in the same run.

A private Mosquitto on a free port; the gateway daemon runs in this process's event loop
(``gateway.daemon.Daemon``) with a fresh state dir and the caps raised. Separate paho-mqtt
clients, each on its own network thread, play the button and the feeder:

- gateway path: publish ``{"action":"single"}`` (or ``"double"``) to the MQTT button's topic,
  stop the clock when the action message arrives on ``cat-feeder/action``. One press at a time:
  the next is sent only after the previous action arrived, so matching is by order. Singles
  (left bowl) and doubles (right) alternate, keeping each bowl under the 1000-per-period cap.
- baseline, as specified: one bare QoS 1 trip (publish -> broker -> subscriber, 300 B) plus one
  bare write+fsync of 300 B; "baseline sum" adds their p50s and their p99s.
- baseline, the same shape as the gateway path: a bare paho relay that receives on one topic,
  writes+fsyncs 300 B and republishes at QoS 1 (two broker trips and one fsync, no journal).
- optional: LONG on a mock GPIO pin held down, from the classifier's hold deadline to the
  action message (one broker trip + one fsync is its baseline).

Samples of all kinds are taken in interleaved blocks, so drift hits them alike.

    python bench/click_latency.py [--quick] [--presses N] [--holds H]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from _common import (
    PAYLOAD_BYTES,
    bench_tmpdir,
    emit_json,
    filesystem_of,
    machine_note,
    percentile,
    print_table,
    private_broker,
    rounded,
)
from paho.mqtt.enums import CallbackAPIVersion

from gateway.config import parse_config
from gateway.daemon import Daemon
from gateway.devstack.daemon import running
from gateway.devstack.mosquitto import Mosquitto
from gateway.inputs.gpio_buttons import GpioButtons

BUTTON = "bench-button"
BUTTON_TOPIC = "bench/button"
GPIO_BUTTON = "bench-gpio"
ACTION_TOPIC = "cat-feeder/action"
RTT_TOPIC = "bench/rtt"
RELAY_IN = "bench/relay-in"
RELAY_OUT = "bench/relay-out"
HOLD_MS = 150
BLOCK = 50
TIMEOUT_S = 5.0
CAP = 1000
WARMUP = 20

MS = 1e6  # nanoseconds per millisecond


class Inbox:
    """Arrival times (time.monotonic_ns, taken in paho's network thread) per topic."""

    def __init__(self) -> None:
        self.queues: dict[str, queue.Queue[tuple[int, bytes]]] = {
            t: queue.Queue() for t in (ACTION_TOPIC, RTT_TOPIC, RELAY_OUT)
        }

    def on_message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        arrived = time.monotonic_ns()
        q = self.queues.get(msg.topic)
        if q is not None:
            q.put((arrived, bytes(msg.payload)))

    def get(self, topic: str, timeout: float = TIMEOUT_S) -> tuple[int, bytes]:
        try:
            return self.queues[topic].get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"nothing arrived on {topic} within {timeout:g} s") from None

    def drain(self) -> int:
        n = 0
        for q in self.queues.values():
            while not q.empty():
                q.get_nowait()
                n += 1
        return n


def paho_client(broker: Mosquitto, client_id: str) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    client.connect(broker.host, broker.port, keepalive=60)
    client.loop_start()
    return client


class Relay:
    """The bare equivalent of the gateway path: receive, write+fsync 300 B, republish."""

    def __init__(self, broker: Mosquitto, log_path: Path) -> None:
        self.fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.block = b"r" * (PAYLOAD_BYTES - 1) + b"\n"
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-relay")
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port, keepalive=60)
        self.client.subscribe(RELAY_IN, qos=1)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        os.write(self.fd, self.block)
        os.fsync(self.fd)
        client.publish(RELAY_OUT, msg.payload, qos=1)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
        os.close(self.fd)


def stats(samples_ns: list[int]) -> tuple[float, float]:
    """(p50, p99) in milliseconds."""
    ms = [s / MS for s in samples_ns]
    return percentile(ms, 50), percentile(ms, 99)


class Driver:
    """Runs in a worker thread: publishes, waits for arrivals, records latencies."""

    def __init__(self, daemon: Daemon, broker: Mosquitto, workdir: Path) -> None:
        self.daemon = daemon
        self.inbox = Inbox()
        self.pub = paho_client(broker, "bench-publisher")
        self.sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-subscriber")
        self.sub.on_message = self.inbox.on_message
        self.sub.connect(broker.host, broker.port, keepalive=60)
        self.sub.subscribe([(ACTION_TOPIC, 1), (RTT_TOPIC, 1), (RELAY_OUT, 1)])
        self.sub.loop_start()
        self.relay = Relay(broker, workdir / "relay.log")
        self.fsync_fd = os.open(workdir / "bare.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.payload = b"p" * PAYLOAD_BYTES
        self.presses = 0
        self.samples: dict[str, list[int]] = {
            k: [] for k in ("gateway", "rtt", "fsync", "relay", "long")
        }

    def close(self) -> None:
        for client in (self.pub, self.sub):
            client.loop_stop()
            client.disconnect()
        self.relay.close()
        os.close(self.fsync_fd)

    # --- one sample of each kind -------------------------------------------------------------

    def press(self) -> int:
        click = "single" if self.presses % 2 == 0 else "double"
        self.presses += 1
        start = time.monotonic_ns()
        self.pub.publish(BUTTON_TOPIC, json.dumps({"action": click}, separators=(",", ":")), qos=1)
        arrived, body = self.inbox.get(ACTION_TOPIC)
        event = json.loads(body)["event"]
        if event != click.upper():
            raise RuntimeError(f"press {self.presses}: sent {click}, the action says {event}")
        return arrived - start

    def rtt(self) -> int:
        start = time.monotonic_ns()
        self.pub.publish(RTT_TOPIC, self.payload, qos=1)
        arrived, _ = self.inbox.get(RTT_TOPIC)
        return arrived - start

    def relayed(self) -> int:
        start = time.monotonic_ns()
        self.pub.publish(RELAY_IN, self.payload, qos=1)
        arrived, _ = self.inbox.get(RELAY_OUT)
        return arrived - start

    def fsync(self) -> int:
        start = time.monotonic_ns()
        os.write(self.fsync_fd, self.payload)
        os.fsync(self.fsync_fd)
        return time.monotonic_ns() - start

    def hold(self) -> int:
        """LONG on the mock pin: hold-deadline -> action, in ns."""
        gpio = next(i for i in self.daemon.inputs if isinstance(i, GpioButtons))
        wired = gpio.buttons[GPIO_BUTTON]
        pin = wired.device.pin
        pin.drive_low()  # pull-up: low is pressed; the edge reaches the loop thread-safely
        deadline_ms = None
        give_up = time.monotonic() + TIMEOUT_S
        while deadline_ms is None:
            deadline_ms = wired.classifier.next_deadline()
            if time.monotonic() > give_up:
                raise TimeoutError("the GPIO press never reached the classifier")
            time.sleep(0.0005)
        arrived, body = self.inbox.get(ACTION_TOPIC)
        pin.drive_high()
        event = json.loads(body)["event"]
        if event != "LONG":
            raise RuntimeError(f"held the GPIO button, the action says {event}")
        time.sleep(0.01)
        return arrived - int(deadline_ms) * 1_000_000

    # --- the run ---------------------------------------------------------------------------

    def warm_up(self) -> None:
        """Until the gateway's subscriptions are in place a press is lost (clean session):
        press until one comes through, then let stragglers arrive and start over clean."""
        self.rtt()  # our own subscriptions are in place once this comes back
        give_up = time.monotonic() + 30
        while True:
            self.presses = 0
            try:
                self.press()
                break
            except TimeoutError:
                if time.monotonic() > give_up:
                    raise
        time.sleep(0.3)
        self.inbox.drain()
        for _ in range(WARMUP):
            self.press()
            self.rtt()
            self.relayed()
            self.fsync()
        self.presses = 0

    def run(self, presses: int, holds: int, gap_s: float = 0.0) -> None:
        self.warm_up()
        kinds: list[tuple[str, Callable[[], int]]] = [
            ("gateway", self.press),
            ("rtt", self.rtt),
            ("fsync", self.fsync),
            ("relay", self.relayed),
        ]
        block = 0
        while len(self.samples["gateway"]) < presses:
            n = min(BLOCK, presses - len(self.samples["gateway"]))
            start = block % len(kinds)
            for name, sample in kinds[start:] + kinds[:start]:
                for _ in range(n):
                    self.samples[name].append(sample())
                    if gap_s:
                        time.sleep(gap_s)
            block += 1
            if block % 4 == 0:
                print(f"  {len(self.samples['gateway'])}/{presses} presses", flush=True)
        for _ in range(holds):
            self.samples["long"].append(self.hold())


def daemon_config(broker: Mosquitto, state_dir: Path, with_gpio: bool) -> dict[str, Any]:
    return {
        "gateway_id": "bench",
        "state_dir": str(state_dir),
        "log_level": "WARNING",
        "broker": {"host": broker.host, "port": broker.port},
        "policy": {"cap_per_bowl": CAP, "cap_period_s": 86_400, "min_gap_s": 0},
        "feeding": {"ack_timeout_s": 3600},
        "classifier": {"hold_ms": HOLD_MS},
        "buttons": {
            "mqtt": [{"name": BUTTON, "topic": BUTTON_TOPIC}],
            "gpio": (
                [{"name": GPIO_BUTTON, "pin": 17, "pull_up": True, "bounce_ms": 0}]
                if with_gpio
                else []
            ),
            "pin_factory": "mock",
        },
    }


async def run(workdir: Path, broker: Mosquitto, presses: int, holds: int, gap_s: float) -> Driver:
    config = parse_config(daemon_config(broker, workdir / "state", holds > 0))
    async with running(config, ready_timeout_s=30, stop_timeout_s=30) as daemon:
        driver = await asyncio.to_thread(Driver, daemon, broker, workdir)
        try:
            await asyncio.to_thread(driver.run, presses, holds, gap_s)
        finally:
            await asyncio.to_thread(driver.close)
    return driver


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer presses (a smoke run)")
    parser.add_argument("--presses", type=int, default=None)
    parser.add_argument("--holds", type=int, default=None, help="LONG holds on the mock pin")
    parser.add_argument(
        "--gap-ms",
        type=float,
        default=0.0,
        help="idle time after every sample (default 0: back to back, a warm machine; real "
        "presses come seconds apart, and an idle VM answers slower)",
    )
    args = parser.parse_args()
    presses = args.presses or (200 if args.quick else 1000)
    holds = args.holds if args.holds is not None else (10 if args.quick else 50)
    per_bowl = (presses + 1) // 2 + WARMUP + holds + 2
    if per_bowl >= CAP:
        parser.error(f"{presses} presses and {holds} holds would reach the cap of {CAP}/bowl")

    workdir = bench_tmpdir("click")
    print(
        f"click_latency: {presses} presses, {holds} LONG holds (hold_ms {HOLD_MS}), "
        f"{args.gap_ms:g} ms between samples"
    )
    print(f"  temp dir {workdir} on {filesystem_of(workdir)}; {machine_note()}")
    try:
        with private_broker() as broker:
            print(f"  private mosquitto on {broker.host}:{broker.port}")
            driver = asyncio.run(run(workdir, broker, presses, holds, args.gap_ms / 1000))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"  after: {machine_note()}")
    report(driver.samples, args.gap_ms)


def report(samples: dict[str, list[int]], gap_ms: float) -> None:
    gw50, gw99 = stats(samples["gateway"])
    rtt50, rtt99 = stats(samples["rtt"])
    fs50, fs99 = stats(samples["fsync"])
    rl50, rl99 = stats(samples["relay"])
    base50, base99 = rtt50 + fs50, rtt99 + fs99
    over50, over99 = gw50 - base50, gw99 - base99
    rows: list[list[Any]] = [
        ["gateway: MQTT press -> action", len(samples["gateway"]), gw50, gw99, ""],
        ["bare paho QoS 1 trip, 300 B", len(samples["rtt"]), rtt50, rtt99, ""],
        ["bare write+fsync, 300 B", len(samples["fsync"]), fs50, fs99, ""],
        ["baseline sum (trip + fsync)", "", base50, base99, ""],
        ["overhead: gateway - baseline sum", "", over50, over99, "p99 < 2 ms"],
        ["gateway / baseline sum", "", gw50 / base50, gw99 / base99, ""],
        ["bare relay (2 trips + fsync)", len(samples["relay"]), rl50, rl99, ""],
        ["overhead: gateway - bare relay", "", gw50 - rl50, gw99 - rl99, ""],
    ]
    figures: dict[str, Any] = {
        "presses": len(samples["gateway"]),
        "gap_ms": gap_ms,
        "gateway_p50_ms": rounded(gw50),
        "gateway_p99_ms": rounded(gw99),
        "mqtt_trip_p50_ms": rounded(rtt50),
        "mqtt_trip_p99_ms": rounded(rtt99),
        "fsync_p50_ms": rounded(fs50),
        "fsync_p99_ms": rounded(fs99),
        "baseline_sum_p50_ms": rounded(base50),
        "baseline_sum_p99_ms": rounded(base99),
        "overhead_p50_ms": rounded(over50),
        "overhead_p99_ms": rounded(over99),
        "ratio_p50": rounded(gw50 / base50, 2),
        "ratio_p99": rounded(gw99 / base99, 2),
        "relay_p50_ms": rounded(rl50),
        "relay_p99_ms": rounded(rl99),
        "overhead_vs_relay_p50_ms": rounded(gw50 - rl50),
        "overhead_vs_relay_p99_ms": rounded(gw99 - rl99),
        "target_overhead_p99_ms": 2.0,
        "pass": over99 < 2.0,
    }
    if samples["long"]:
        lg50, lg99 = stats(samples["long"])
        rows += [
            ["LONG: hold deadline -> action", len(samples["long"]), lg50, lg99, ""],
            ["overhead: LONG - (trip + fsync)", "", lg50 - base50, lg99 - base99, ""],
        ]
        figures |= {
            "holds": len(samples["long"]),
            "long_p50_ms": rounded(lg50),
            "long_p99_ms": rounded(lg99),
            "long_overhead_p50_ms": rounded(lg50 - base50),
            "long_overhead_p99_ms": rounded(lg99 - base99),
        }
    print()
    print_table(["path (ms)", "samples", "p50", "p99", "target"], rows)
    emit_json("click_latency", figures)


if __name__ == "__main__":
    main()
