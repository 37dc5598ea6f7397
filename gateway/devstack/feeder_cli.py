"""``python -m gateway.devstack.feeder_cli``: a simulated feeder for people, on a local broker."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from gateway.devstack.feeder import DEFAULT_CLIENT_ID
from gateway.devstack.feeder_sim import FeederSim

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m gateway.devstack.feeder_cli",
        description="A simulated cat feeder (the firmware's logic) on a local MQTT broker.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--client-id", default=DEFAULT_CLIENT_ID)
    p.add_argument("--memory-file", type=Path, help="simulated flash for the dedupe memory")
    p.add_argument("--config", type=Path, help="device config (JSON) for the firmware logic")
    p.add_argument(
        "--time-scale", type=float, default=0.001, help="real seconds per simulated second"
    )
    p.add_argument("--food-per-motor-ms", type=float, default=0.0005)
    p.add_argument("--drop-acks", action="store_true", help="never acknowledge (a jam)")
    p.add_argument("--clock-not-synced", action="store_true")
    p.add_argument("--log-level", default="INFO")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    config = None
    if args.config is not None:
        config = json.loads(args.config.read_text(encoding="utf-8"))
    sim = FeederSim(
        args.host,
        args.port,
        client_id=args.client_id,
        memory_path=args.memory_file,
        logic_config=config,
        time_scale=args.time_scale,
        food_per_motor_ms=args.food_per_motor_ms,
        drop_acks=args.drop_acks,
        clock_synced=not args.clock_not_synced,
    )
    done = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    sim.start(wait=False)
    log.info("feeder simulator %s on %s:%d; Ctrl-C to stop", args.client_id, args.host, args.port)
    with contextlib.suppress(KeyboardInterrupt):
        done.wait()
    sim.stop()
    log.info("stopped: %d motor runs, food level %d", len(sim.runs), sim.food_level)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
