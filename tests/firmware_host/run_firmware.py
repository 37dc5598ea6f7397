"""Run firmware/main.py itself on the host, in the working directory as its flash.

    FMFB_UMQTT=1.4.0 FMFB_SPEED=50 FMFB_T0=<monotonic> python run_firmware.py [main]
    ... python run_firmware.py publish N [SEED]   # N QoS 1 publishes on one Link
    ... python run_firmware.py exec CODE          # CODE with ``firmware`` = main, imported

Shims only for the hardware and the port: machine, network, ntptime (this folder),
time.ticks_* and sleep_ms (vclock), and MicroPython's socket API over real sockets
(mpsocket, also under the names usocket/ustruct/ubinascii that umqtt.simple 1.4.0 imports).
The MQTT client is the real umqtt.simple source at the version named by FMFB_UMQTT.
"""

from __future__ import annotations

import binascii
import os
import runpy
import struct
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIRMWARE = HERE.parent.parent / "firmware"

sys.path[:0] = [str(HERE), str(HERE / ("umqtt-" + os.environ["FMFB_UMQTT"])), str(FIRMWARE)]

import mpsocket  # noqa: E402
import vclock  # noqa: E402

vclock.install()
sys.modules["usocket"] = mpsocket
sys.modules["ustruct"] = struct
sys.modules["ubinascii"] = binascii
sys.modules["socket"] = mpsocket  # umqtt.simple >= 1.5 imports socket: MicroPython's


def publish_many(n: int, seed: int) -> None:
    import main as firmware  # noqa: PLC0415 - drives the pins low, as at boot

    config = firmware.BOOT_CONFIG or {}
    mqtt = config["mqtt"]
    firmware.umqtt.simple.socket = firmware._SocketModule(mpsocket, 10)
    client = firmware.MQTTClient(mqtt["client_id"], mqtt["host"], port=mqtt["port"], keepalive=60)
    client.set_callback(lambda topic, msg: None)
    link, _ = firmware.Link.open(client, 60, 10, "bench/will")
    client.pid = seed
    for i in range(n):
        link.publish("bench/acks", b"%d" % i)
    print("published", n, "last pid", client.pid, flush=True)


if len(sys.argv) > 1 and sys.argv[1] == "exec":
    import main as firmware

    exec(sys.argv[2], {"firmware": firmware})  # noqa: S102 - the test's own code
elif len(sys.argv) > 1 and sys.argv[1] == "publish":
    publish_many(int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 0)
else:
    runpy.run_path(str(FIRMWARE / "main.py"), run_name="__main__")
