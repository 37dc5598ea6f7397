# The cat feeder's firmware for a Seeed XIAO ESP32-C3 running MicroPython: the hardware glue.
#
# Everything that decides lives in ``feeder_logic`` (no hardware, tested on the host); this file
# connects it to the world: ``config.json`` from flash, the motor pins (driven low before
# anything else), Wi-Fi (left to the port's own auto-reconnect), NTP (sanity-checked), the local
# broker through the frozen ``umqtt.simple`` wrapped by :class:`Link`, the dedupe memory and the
# work still owed (motor runs, acknowledgements) in flash, and the hardware watchdog.
#
# Why wrap the frozen ``umqtt.simple`` rather than ship another client: ESP32 builds freeze it
# (1.4.0 in MicroPython 1.23-1.24, 1.6.0 in 1.25-1.26, 1.7.0 in 1.27), so it is always there,
# costs no RAM for bytecode, and its CONNECT, SUBSCRIBE and PUBLISH encoding is sound. What it
# gets wrong is waiting, and all of it goes through one object, ``client.sock``, and one counter,
# ``client.pid``. So :class:`Link` hands it a socket (:class:`TimedSocket`) on which every read
# and write times out, whose blocking mode is "up to timeout_s" rather than forever, whose
# operations have a deadline (a PUBACK that never comes), and which notes every byte that
# arrives (a PINGRESP is otherwise invisible); and it wraps the packet id before it passes
# 65535. Any failure inside the client becomes :class:`LinkDead`: the loop drops the link and
# connects again; nothing owed is lost, because it is in flash.
#
# The loop::
#
#     Wi-Fi up? (else wait: the port reconnects by itself) → NTP (hourly) → connect MQTT
#     (clean_session=False, will "offline" retained) → subscribe action at QoS 1 → "online"
#     retained → poll messages / run the motors one request at a time, pinging and polling during
#     long runs / publish acks from flash / food level, feeding the watchdog throughout.
#
# A request feeds at most once, and its acknowledgement reaches the broker: the MQTT callback
# decides and writes the decision, with the motor run it owes, to flash *before* umqtt.simple
# sends the PUBACK; the run is marked started in flash before the motors turn; the ack is in
# flash until its own PUBACK. After a power cut, a run that had started is acknowledged as
# "interrupted" (never run twice), one that had not is run, and unsent acks are sent.
#
# Times are integers (ms): the ESP32-C3's floats are single precision.

import json

import machine

CONFIG_FILE = "config.json"
DEFAULT_MOTORS = {"left": [3, 5], "right": [6, 7]}  # config.example.json's


def read_text(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def pins_low_at_boot() -> dict | None:
    # First thing at boot: every motor pin an output, low. The pins float from power-on until
    # this runs (about a second), and L298N boards have no pull-downs: see the README's wiring.
    config = None
    try:
        config = json.loads(read_text(CONFIG_FILE) or "null")
    except ValueError:
        pass
    motors = DEFAULT_MOTORS
    if isinstance(config, dict) and isinstance(config.get("motors"), dict):
        motors = config["motors"]
    for pins in motors.values():
        for pin in pins:
            try:
                machine.Pin(int(pin), machine.Pin.OUT, value=0)
            except Exception:  # noqa: S110 - a bad pin number is reported when the App starts
                pass
    return config if isinstance(config, dict) else None


BOOT_CONFIG = pins_low_at_boot()

import errno  # noqa: E402 - after the pins are low
import os  # noqa: E402
import time  # noqa: E402

import feeder_logic  # noqa: E402
import network  # noqa: E402
import ntptime  # noqa: E402
import umqtt.simple  # noqa: E402
from umqtt.simple import MQTTClient  # noqa: E402

MEMORY_FILE = "feeder_memory.json"

# The ESP32 port counts time from 2000-01-01 in older releases and from 1970 in newer ones.
_EPOCH_OFFSET_S = 946684800 if time.gmtime(0)[0] == 2000 else 0
# An NTP answer is believed only inside this range: a zeroed reply maps to 2036-02-07.
_NTP_MIN_S = 1704067200  # 2024-01-01
_NTP_MAX_S = 2082758400  # 2036-01-01
_NTP_MAX_STEP_S = 3600  # once synced, a bigger jump is believed only when it repeats

DEFAULT_TOPICS = {
    "action": "cat-feeder/action",
    "dispensed": "cat-feeder/dispensed",
    "states": "cat-feeder/states",
    "availability": "cat-feeder/availability",
}
MAX_ACKS = 32  # acknowledgements kept in flash while the broker is away


def log(*parts: object) -> None:
    print("[feeder]", *parts)


# --- time ----------------------------------------------------------------------------------


def epoch_ms() -> int:
    # ms since 1970-01-01 UTC by the RTC (meaningful only once NTP has set it).
    return time.time_ns() // 1000000 + _EPOCH_OFFSET_S * 1000


class Clock:
    # Whether the RTC holds real time: set from NTP answers that pass a sanity check.

    def __init__(self, host: str, interval_ms: int) -> None:
        self.host = host
        self.interval_ms = interval_ms
        self.synced = False
        self._last_try = time.ticks_ms()
        self._tried = False
        self._jumps = 0

    def maybe_sync(self) -> None:
        now = time.ticks_ms()
        retry_ms = self.interval_ms if self.synced else 60000
        if self._tried and time.ticks_diff(now, self._last_try) < retry_ms:
            return
        self._tried = True
        self._last_try = now
        try:
            ntptime.host = self.host
            device_s = int(ntptime.time())
        except Exception as e:  # OSError, or a short/garbled NTP reply
            log("NTP failed:", repr(e))
            return
        if self.check(device_s + _EPOCH_OFFSET_S, epoch_ms() // 1000):
            tm = time.gmtime(device_s)
            machine.RTC().datetime((tm[0], tm[1], tm[2], tm[6] + 1, tm[3], tm[4], tm[5], 0))
            self.synced = True
            log("NTP synced")

    def check(self, unix_s: int, rtc_s: int) -> bool:
        # Is this NTP answer believable? In range, and (once synced) close to the RTC.
        if not _NTP_MIN_S <= unix_s < _NTP_MAX_S:
            log("NTP answer out of range, ignored:", unix_s)
            return False
        if self.synced and abs(unix_s - rtc_s) > _NTP_MAX_STEP_S:
            self._jumps += 1
            if self._jumps < 3:
                log("NTP answer jumps", unix_s - rtc_s, "s, ignored until it repeats")
                return False
        self._jumps = 0
        return True


# --- hardware ------------------------------------------------------------------------------


class Motor:
    # One feed auger on an H-bridge (DRV8833, L298N, ...): IN1/IN2, forward = IN1 high.

    def __init__(self, in1: int, in2: int, duty_pct: int) -> None:
        self.in1 = machine.Pin(in1, machine.Pin.OUT, value=0)
        self.in2 = machine.Pin(in2, machine.Pin.OUT, value=0)
        self.in1_num = in1
        self.duty_pct = max(1, min(100, duty_pct))
        self.pwm: machine.PWM | None = None

    def start(self) -> None:
        self.in2.value(0)
        if self.duty_pct >= 100:
            self.in1.value(1)
        else:
            self.pwm = machine.PWM(self.in1, freq=1000, duty_u16=self.duty_pct * 65535 // 100)

    def stop(self) -> None:
        if self.pwm is not None:
            self.pwm.deinit()
            self.pwm = None
            self.in1 = machine.Pin(self.in1_num, machine.Pin.OUT, value=0)
        self.in1.value(0)
        self.in2.value(0)


class FoodSensor:
    # Optional analog level sensor: raw readings at an empty and a full hopper → 0..100.

    def __init__(self, pin: int, empty_raw: int, full_raw: int) -> None:
        self.adc = machine.ADC(machine.Pin(pin))
        self.adc.atten(machine.ADC.ATTN_11DB)
        self.empty_raw = empty_raw
        self.full_raw = full_raw

    def level(self) -> int:
        raw = self.adc.read_u16()
        span = self.full_raw - self.empty_raw
        if span == 0:
            return 0
        return max(0, min(100, (raw - self.empty_raw) * 100 // span))


def run_plan(plan: list, motors: dict, wdt: machine.WDT, service: object) -> None:
    # Run the motors of a plan together, each for its ms, feeding the watchdog and calling
    # ``service()`` (MQTT pings and polls) every 100 ms or so; always stop.
    started = time.ticks_ms()
    running = []
    try:
        for bowl, ms in plan:
            motor = motors.get(bowl)
            if motor is None:
                log("no motor configured for bowl", bowl)
                continue
            motor.start()
            running.append((motor, int(ms)))
        ticks = 0
        while running:
            wdt.feed()
            elapsed = time.ticks_diff(time.ticks_ms(), started)
            still = []
            for motor, ms in running:
                if elapsed >= ms:
                    motor.stop()
                else:
                    still.append((motor, ms))
            running = still
            ticks += 1
            if ticks % 10 == 0 and callable(service):
                service()
            time.sleep_ms(10)
    finally:
        for motor, _ms in running:
            motor.stop()


# --- flash ---------------------------------------------------------------------------------


def write_atomically(path: str, text: str) -> None:
    # Write then rename: a power cut leaves the old file or the new, never half of one.
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


# --- MQTT ----------------------------------------------------------------------------------


class LinkDead(Exception):
    # The MQTT link cannot be used any more: drop it and connect again.
    pass


class TimedSocket:
    # The socket umqtt.simple talks through, so that nothing it does can wait forever.
    #
    # - every read and write times out after ``timeout_s`` (OSError ETIMEDOUT);
    # - ``setblocking(True)``, which umqtt.simple's wait_msg() calls after each first byte and
    #   which on MicroPython means "wait forever", means "wait up to timeout_s" here;
    # - ``deadline`` (ticks) bounds a whole operation: a publish whose PUBACK never comes while
    #   other packets keep arriving, a subscribe without its SUBACK;
    # - ``last_in`` (ticks) moves on every byte received: PINGRESP included, which umqtt.simple
    #   swallows without a trace.

    def __init__(self, sock: object, timeout_s: int, raw: object = None) -> None:
        self.sock: object = sock  # what umqtt.simple made: a TCP socket, or TLS on top of one
        self.raw: object = raw if raw is not None else sock  # the TCP socket
        self.timeout_s = timeout_s
        self.deadline: object = None  # ticks, or None
        self.last_in = time.ticks_ms()
        self.setblocking(True)

    def setblocking(self, flag: bool) -> None:
        sock: object = self.sock
        if not flag:
            sock.setblocking(False)  # type: ignore[attr-defined]
            return
        if sock is not self.raw:
            # TLS: blocking again (on MicroPython this reaches the TCP socket, timeout none),
            # then the timeout back on the TCP socket, where reads really wait.
            sock.setblocking(True)  # type: ignore[attr-defined]
        self.raw.settimeout(self.timeout_s)  # type: ignore[attr-defined]

    def settimeout(self, timeout_s: int | None) -> None:
        self.setblocking(True)

    def _check(self) -> None:
        deadline = self.deadline
        if deadline is not None and time.ticks_diff(time.ticks_ms(), deadline) >= 0:  # type: ignore[call-overload]
            raise OSError(errno.ETIMEDOUT)

    def read(self, n: int) -> bytes | None:
        self._check()
        data: bytes | None = self.sock.read(n)  # type: ignore[attr-defined]
        if data:
            self.last_in = time.ticks_ms()
        return data

    def write(self, buf: bytes, n: int | None = None) -> int:
        self._check()
        if n is None:
            written: int = self.sock.write(buf)  # type: ignore[attr-defined]
        else:
            written = self.sock.write(buf, n)  # type: ignore[attr-defined]
        return written

    def close(self) -> None:
        self.sock.close()  # type: ignore[attr-defined]


class _SocketModule:
    # Stands in for the socket module inside umqtt.simple, so that its connect() times out.
    #
    # 1.3.4 and 1.4.0 never set a timeout; 1.6.0 and later call ``settimeout(timeout)`` with
    # connect()'s own ``timeout=None`` default, which means "forever", right after making the
    # socket. Every version then calls ``getaddrinfo()`` before ``connect(addr)``: so the timeout
    # is set when the socket is made and set again there, after whatever the client did.

    def __init__(self, module: object, timeout_s: int) -> None:
        self.module: object = module
        self.timeout_s = timeout_s
        self.last: object = None  # the last TCP socket made (TLS wraps it)

    def socket(self, *args: object) -> object:
        sock: object = self.module.socket(*args)  # type: ignore[attr-defined]
        sock.settimeout(self.timeout_s)  # type: ignore[attr-defined]
        self.last = sock
        return sock

    def getaddrinfo(self, *args: object) -> list:
        found: list = self.module.getaddrinfo(*args)  # type: ignore[attr-defined]
        if self.last is not None:
            self.last.settimeout(self.timeout_s)  # type: ignore[attr-defined]
        return found


def client_capabilities() -> dict:
    # What the frozen umqtt.simple can do, found by looking, not by a version number (the
    # module has none). 1.3.x (MicroPython 1.22) takes ``ssl`` as a flag, defaulting to False,
    # and wraps with ``ssl_params``, silently dropping an SSLContext: no CA check, no SNI. From
    # 1.4.0 (MicroPython 1.23) ``ssl`` defaults to None and an SSLContext is used.
    probe = MQTTClient("probe", "localhost")
    return {"ssl_context": probe.ssl is None, "unsubscribe": hasattr(probe, "unsubscribe")}


def tls_context(mqtt: dict, caps: dict) -> object | None:
    # The SSLContext for a TLS broker, or None for plain MQTT; refuses TLS that would not
    # verify the broker (an old client that ignores the context, or no CA file).
    if not mqtt.get("tls"):
        return None
    if not caps["ssl_context"]:
        raise ValueError(
            "TLS refused: this firmware's umqtt.simple (MicroPython 1.22 or older) ignores the "
            "SSL context and would not verify the broker; flash MicroPython 1.23 or newer"
        )
    ca_file = mqtt.get("ca_file")
    if not ca_file:
        raise ValueError("TLS refused: mqtt.ca_file is not set, the broker would not be verified")
    import ssl  # only a TLS broker needs it

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=ca_file)
    context.verify_mode = ssl.CERT_REQUIRED
    return context


class Link:
    # One MQTT connection: the frozen umqtt.simple on a :class:`TimedSocket`.
    #
    # Every method either completes within its bounds or raises :class:`LinkDead`; after that
    # the link is closed and a new one must be opened.

    def __init__(
        self, client: MQTTClient, keepalive_s: int, timeout_s: int, feed: object = None
    ) -> None:
        self.client = client
        self.feed = feed  # the watchdog's feed(): before each operation, each <= timeout_s
        self.keepalive_ms = keepalive_s * 1000
        self.op_ms = timeout_s * 1000
        sockets = umqtt.simple.socket  # type: ignore[attr-defined]
        raw = sockets.last if isinstance(sockets, _SocketModule) else None
        self.sock = TimedSocket(client.sock, timeout_s, raw)
        client.sock = self.sock
        self.last_ping = time.ticks_ms()

    @staticmethod
    def open(
        client: MQTTClient, keepalive_s: int, timeout_s: int, will_topic: str, feed: object = None
    ) -> "tuple[Link, bool]":
        # Connect (clean_session=False, will "offline" retained): TCP connect, CONNECT and
        # CONNACK each time out after timeout_s (the sockets come from :class:`_SocketModule`).
        client.set_last_will(will_topic, b"offline", retain=True, qos=1)
        try:
            session_present = bool(client.connect(clean_session=False))
        except Exception as e:
            _close(client.sock)
            raise LinkDead("connect: " + repr(e)) from e
        return Link(client, keepalive_s, timeout_s, feed), session_present

    def _call(self, what: str, fn: object, *args: object) -> object:
        if self.client.pid >= 65535:  # umqtt.simple never wraps it (micropython-lib #94)
            self.client.pid = 0
        if callable(self.feed):
            self.feed()
        self.sock.deadline = time.ticks_add(time.ticks_ms(), self.op_ms)
        try:
            return fn(*args)  # type: ignore[operator]
        except Exception as e:
            self.close()
            raise LinkDead(what + ": " + repr(e)) from e
        finally:
            self.sock.deadline = None

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        # QoS 1: returns once the broker's PUBACK for it has arrived.
        self._call("publish", self.client.publish, topic, payload, retain, 1)

    def subscribe(self, topic: str) -> None:
        self._call("subscribe", self.client.subscribe, topic, 1)

    def poll(self) -> None:
        # Read what has arrived (messages go to the callback), ping when due, and declare
        # the link dead when nothing at all came from the broker for 1.5 x keepalive.
        for _ in range(4):
            if self._call("read", self.client.check_msg) is None:
                break
        if self.keepalive_ms <= 0:
            return
        now = time.ticks_ms()
        if time.ticks_diff(now, self.sock.last_in) > self.keepalive_ms * 3 // 2:
            self.close()
            raise LinkDead("no packet from the broker for 1.5 x keepalive")
        if time.ticks_diff(now, self.last_ping) >= self.keepalive_ms // 2:
            self._call("ping", self.client.ping)
            self.last_ping = now

    def close(self) -> None:
        _close(self.sock)


def _close(sock: object) -> None:
    try:
        sock.close()  # type: ignore[attr-defined]
    except Exception:  # noqa: S110 - the socket is already gone
        pass


# --- Wi-Fi ---------------------------------------------------------------------------------


class WiFi:
    # Station mode, cooperating with the ESP32 port's own auto-reconnect: ``connect()`` is
    # called once, and again only when the port has given up (never while it is CONNECTING,
    # where the C3 raises "Wifi Internal Error").

    def __init__(self, config: dict) -> None:
        self.ssid = config["ssid"]
        self.password = config["password"]
        self.retry_ms = int(config.get("retry_s", 30)) * 1000
        self.wlan = network.WLAN(network.STA_IF)
        self.wlan.active(True)
        tx = config.get("tx_power_dbm")
        if tx is not None:
            # Some C3 boards (XIAO among them) do not associate at full power: 8.5 dBm helps.
            self.wlan.config(txpower=tx)
        try:
            self.wlan.config(reconnects=-1)  # the port keeps reconnecting by itself
        except Exception as e:  # older ports lack the setting
            log("Wi-Fi reconnects setting not supported:", repr(e))
        self.asked: object = None  # ticks of the last connect(), or None

    def up(self) -> bool:
        # True when connected; otherwise starts (or restarts) a connection, never waits.
        if self.wlan.isconnected():
            return True
        now = time.ticks_ms()
        if self.wlan.status() == network.STAT_CONNECTING:
            return False
        asked = self.asked
        if asked is None or time.ticks_diff(now, asked) >= self.retry_ms:  # type: ignore[call-overload]
            self.asked = now
            log("connecting Wi-Fi", self.ssid)
            try:
                self.wlan.connect(self.ssid, self.password)
            except OSError as e:
                log("Wi-Fi connect:", repr(e))
        return False


# --- the feeder ----------------------------------------------------------------------------


class App:
    def __init__(self, config: dict) -> None:
        self.config = config
        self.topics = dict(DEFAULT_TOPICS)
        self.topics.update(config.get("topics") or {})
        self.mqtt_config = config["mqtt"]
        self.keepalive_s = int(self.mqtt_config.get("keepalive_s", 60))
        self.timeout_s = int(self.mqtt_config.get("timeout_s", 10))
        watchdog_ms = int(config.get("watchdog_ms", 30000))
        if watchdog_ms <= self.timeout_s * 2000:
            raise ValueError("watchdog_ms must exceed twice mqtt.timeout_s")
        # Checked before the watchdog starts: a refused setting leaves the board at the REPL
        # with the reason printed, not in a reset loop.
        self.caps = client_capabilities()
        log("MQTT client:", self.caps)
        self.ssl = tls_context(self.mqtt_config, self.caps)  # raises: TLS refused
        self.wdt = machine.WDT(timeout=watchdog_ms)
        duty = int(config.get("motor_duty_pct", 100))
        self.motors = {}
        for bowl, pins in config["motors"].items():
            self.motors[bowl] = Motor(int(pins[0]), int(pins[1]), duty)
        self.stop_motors()
        self.feeder = feeder_logic.Feeder(config.get("feeding"), read_text(MEMORY_FILE))
        self.work: list = []  # served requests whose motors have not finished (in flash)
        self.acks: list = []  # acknowledgements (text) waiting for their PUBACK (in flash)
        self.states: list = []  # food levels to publish (RAM: the next one supersedes)
        self.load_work()
        sensor = config.get("food_sensor")
        self.sensor = None
        if sensor:
            self.sensor = FoodSensor(
                int(sensor["pin"]), int(sensor["empty_raw"]), int(sensor["full_raw"])
            )
        self.clock = Clock(
            config.get("ntp_host", "pool.ntp.org"), int(config.get("ntp_interval_s", 3600)) * 1000
        )
        self.wifi = WiFi(config["wifi"])
        # umqtt.simple's sockets time out from birth (connect included).
        umqtt.simple.socket = _SocketModule(umqtt.simple.socket, self.timeout_s)  # type: ignore[attr-defined]
        self.link: Link | None = None
        self.states_every_ms = int(config.get("states_interval_s", 300)) * 1000
        self.last_states = time.ticks_ms()

    def stop_motors(self) -> None:
        for motor in self.motors.values():
            motor.stop()

    def now_ms(self) -> int:
        # The RTC, synced or not: unlike ticks_ms it does not wrap (every 2**30 ms), so the
        # logic's rolling caps keep working; absolute expiry is believed only once synced.
        return epoch_ms()

    # --- flash: what is owed survives a power cut ----------------------------------------

    def load_work(self) -> None:
        extra = self.feeder.extra
        if not isinstance(extra, dict):
            return
        self.acks = [a for a in extra.get("acks") or [] if isinstance(a, str)]
        for item in extra.get("work") or []:
            if not isinstance(item, dict):
                continue
            if item.get("go"):
                # The motors were running when the power went: never run them twice.
                log("interrupted by a reboot:", item.get("id"))
                if item.get("id") is not None:
                    ack = feeder_logic.encode_ack(
                        item["id"], "served", "interrupted", item.get("bowls"), item.get("ms", 0)
                    )
                    self.acks.append(ack.decode())
            else:
                self.work.append(item)
        self.save()

    def save(self) -> None:
        if len(self.acks) > MAX_ACKS:
            log("acks dropped, the broker was away too long:", len(self.acks) - MAX_ACKS)
            self.acks = self.acks[-MAX_ACKS:]
        work = [{k: v for k, v in item.items() if k != "rx"} for item in self.work]
        write_atomically(MEMORY_FILE, self.feeder.memory_blob({"work": work, "acks": self.acks}))

    # --- MQTT ------------------------------------------------------------------------------

    def on_message(self, topic: bytes, payload: bytes) -> None:
        # umqtt.simple's callback: decide and write to flash, *then* it sends the PUBACK.
        if topic.decode() != self.topics["action"]:
            return
        decision = self.feeder.handle(payload, self.now_ms(), self.clock.synced)
        log("action:", decision)
        if decision.work is not None:
            item = decision.work
            item["ack"] = None if decision.ack is None else decision.ack.decode()
            item["go"] = False
            item["rx"] = time.ticks_ms()
            self.work.append(item)
        elif decision.ack is not None:
            self.acks.append(decision.ack.decode())
        if decision.persist or decision.ack is not None:
            self.save()

    def connect(self) -> Link:
        mqtt = self.mqtt_config
        client = MQTTClient(
            mqtt.get("client_id", "cat-feeder"),
            mqtt["host"],
            port=int(mqtt.get("port", 0)),
            user=mqtt.get("user"),
            password=mqtt.get("password"),
            keepalive=self.keepalive_s,
            ssl=self.ssl,
        )
        client.set_callback(self.on_message)
        self.wdt.feed()
        link, session_present = Link.open(
            client, self.keepalive_s, self.timeout_s, self.topics["availability"], self.wdt.feed
        )
        log("MQTT connected, session present:", session_present)
        # Subscribed before "online": online means ready for requests, even on the first
        # connect, when the broker has no session (no subscription) to queue them in yet.
        # A callback during these (queued requests arrive right after CONNACK) may save.
        link.subscribe(self.topics["action"])
        link.publish(self.topics["availability"], b"online", True)
        self.last_states = time.ticks_add(time.ticks_ms(), -self.states_every_ms)
        return link

    def service(self) -> None:
        # Between and during motor runs: keep the link alive (ping, read), never raise.
        self.wdt.feed()
        if self.link is None:
            return
        try:
            self.link.poll()
        except LinkDead as e:
            log("link dead:", e)
            self.link = None

    def flush(self) -> None:
        # Publish the owed acks (dropped from flash only after their PUBACK), then states.
        while self.acks and self.link is not None:
            self.wdt.feed()
            self.link.publish(self.topics["dispensed"], self.acks[0].encode())
            self.acks.pop(0)
            self.save()
        while self.states and self.link is not None:
            self.wdt.feed()
            self.link.publish(self.topics["states"], self.states[0])
            self.states.pop(0)

    # --- motors ----------------------------------------------------------------------------

    def food_level(self) -> int | None:
        if self.sensor is not None:
            return self.sensor.level()
        level: int | None = self.feeder.food_capacity()
        return level

    def queue_states(self) -> None:
        level = self.food_level()
        if level is not None:
            self.states = [feeder_logic.states_payload(level)]
        self.last_states = time.ticks_ms()

    def run_next(self) -> bool:
        # Carry out the oldest request owed; False when there is none.
        if not self.work:
            return False
        item = self.work[0]
        now = time.ticks_ms()
        waited = time.ticks_diff(now, item["rx"]) if "rx" in item else 0
        refused = self.feeder.recheck(item, waited, self.now_ms(), self.clock.synced)
        if refused is not None:
            log("expired while queued:", item.get("id"))
            self.work.pop(0)
            if refused.ack is not None:
                self.acks.append(refused.ack.decode())
            self.save()
            return True
        item["go"] = True
        self.save()  # from here a power cut means "interrupted", never a second run
        log("feeding", item.get("id"), item["bowls"], item["ms"])
        run_plan([(b, item["ms"]) for b in item["bowls"]], self.motors, self.wdt, self.service)
        self.work.pop(0)
        if item.get("ack"):
            self.acks.append(item["ack"])
        self.save()
        self.queue_states()
        return True

    # --- the loop --------------------------------------------------------------------------

    def step(self) -> None:
        if self.link is None:
            self.link = self.connect()
        self.flush()
        self.link.poll()
        if self.run_next():
            return
        if time.ticks_diff(time.ticks_ms(), self.last_states) >= self.states_every_ms:
            self.queue_states()

    def run(self) -> None:
        backoff_ms = 500
        while True:
            self.wdt.feed()
            if not self.wifi.up():
                # Requests already accepted are served without the network; acks wait.
                if not self.run_next():
                    self.idle(200)
                continue
            self.clock.maybe_sync()
            try:
                self.step()
                backoff_ms = 500
            except LinkDead as e:
                log("MQTT:", e, "- again in", backoff_ms, "ms")
                self.link = None
                self.run_next_offline()
                self.idle(backoff_ms)
                backoff_ms = min(backoff_ms * 2, 30000)
                continue
            self.idle(20)

    def run_next_offline(self) -> None:
        # Requests already accepted are served without the broker; their acks wait.
        while self.run_next():
            pass

    def idle(self, ms: int) -> None:
        while ms > 0:
            self.wdt.feed()
            time.sleep_ms(min(ms, 200))
            ms -= 200


def load_config() -> dict:
    if BOOT_CONFIG is None:
        raise OSError("no usable " + CONFIG_FILE + " on the device: copy config.example.json")
    return BOOT_CONFIG


def main() -> None:
    try:
        app = App(load_config())
    except ValueError as e:  # a refused TLS setting, a bad config value
        log("cannot start:", e)
        raise
    app.run()


if __name__ == "__main__":
    main()
