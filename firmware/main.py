"""The cat feeder's firmware for a Seeed XIAO ESP32-C3 running MicroPython: the hardware glue.

Everything that decides lives in ``feeder_logic`` (no hardware, tested on the host); this file
only connects it to the world: ``config.json`` from flash, Wi-Fi (reconnecting), NTP, the local
MQTT broker through umqtt.simple with a persistent session, the two motors' H-bridge pins, an
optional food-level sensor, the dedupe memory in flash, and the hardware watchdog.

The loop::

    connect Wi-Fi → sync NTP (hourly) → connect MQTT (clean_session=False, last will
    "offline" retained on cat-feeder/availability) → publish "online" retained → subscribe
    cat-feeder/action at QoS 1 → check_msg / run motors / publish acks and food level / ping,
    feeding the watchdog throughout; on any network error, stop the motors and start again.

Why this order of work for one request: umqtt.simple acknowledges a QoS 1 message (PUBACK)
only after the callback returns, so the callback decides and writes the dedupe memory to flash
*before* the PUBACK; motors run after. A crash or power cut at any point feeds at most once: a
redelivery of a request already written to flash is refused as "duplicate". The
acknowledgement goes out after the motors stop, at QoS 1, and is kept and retried across
reconnects until the broker has it.

Times are integers (ms): the ESP32-C3's floats are single precision.
"""

import json
import os
import time

import feeder_logic
import machine
import network
import ntptime
from umqtt.simple import MQTTClient

CONFIG_FILE = "config.json"
MEMORY_FILE = "feeder_memory.json"

# The ESP32 port counts time from 2000-01-01 in older releases and from 1970 in newer ones.
_EPOCH_OFFSET_MS = 946684800000 if time.gmtime(0)[0] == 2000 else 0
_SYNCED_AFTER_MS = 1704067200000  # 2024-01-01: a clock earlier than this was never set

DEFAULT_TOPICS = {
    "action": "cat-feeder/action",
    "dispensed": "cat-feeder/dispensed",
    "states": "cat-feeder/states",
    "availability": "cat-feeder/availability",
}


def log(*parts: object) -> None:
    print("[feeder]", *parts)


# --- time ----------------------------------------------------------------------------------


def epoch_ms() -> int:
    """ms since 1970-01-01 UTC by the RTC (meaningful only once NTP has set it)."""
    return time.time_ns() // 1000000 + _EPOCH_OFFSET_MS


class Clock:
    """Whether the RTC holds real time: set by NTP, re-synced every ``interval_ms``."""

    def __init__(self, host: str, interval_ms: int) -> None:
        self.host = host
        self.interval_ms = interval_ms
        self.synced = False
        self._last_try = time.ticks_ms()
        self._tried = False

    def maybe_sync(self) -> None:
        now = time.ticks_ms()
        retry_ms = self.interval_ms if self.synced else 60000
        if self._tried and time.ticks_diff(now, self._last_try) < retry_ms:
            return
        self._tried = True
        self._last_try = now
        try:
            ntptime.host = self.host
            ntptime.settime()
        except Exception as e:  # OSError, or a short/garbled NTP reply
            log("NTP failed:", e)
            return
        self.synced = epoch_ms() >= _SYNCED_AFTER_MS
        log("NTP synced" if self.synced else "NTP gave an implausible time")


# --- hardware ------------------------------------------------------------------------------


class Motor:
    """One feed auger on an H-bridge (DRV8833, L298N, ...): IN1/IN2, forward = IN1 high."""

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
    """Optional analog level sensor: raw readings at an empty and a full hopper → 0..100."""

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


def run_plan(plan: list, motors: dict, wdt: machine.WDT) -> None:
    """Run the motors of a plan together, each for its ms, feeding the watchdog; always stop."""
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
            time.sleep_ms(10)
    finally:
        for motor, _ms in running:
            motor.stop()


# --- flash ---------------------------------------------------------------------------------


def read_text(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def write_atomically(path: str, text: str) -> None:
    """Write then rename: a power cut leaves the old file or the new, never half of one."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


# --- network -------------------------------------------------------------------------------


def connect_wifi(wlan: network.WLAN, ssid: str, password: str, wdt: machine.WDT) -> None:
    if wlan.isconnected():
        return
    log("connecting Wi-Fi", ssid)
    wlan.active(True)
    wlan.connect(ssid, password)
    started = time.ticks_ms()
    while not wlan.isconnected():
        wdt.feed()
        if time.ticks_diff(time.ticks_ms(), started) > 20000:
            wlan.disconnect()
            raise OSError("Wi-Fi did not connect in 20 s")
        time.sleep_ms(200)
    log("Wi-Fi up", wlan.ifconfig()[0])


def tls_context(mqtt: dict) -> object | None:
    if not mqtt.get("tls"):
        return None
    import ssl  # only a TLS broker needs it

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca_file = mqtt.get("ca_file")
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    else:
        log("TLS without ca_file: the broker's certificate is NOT verified")
        context.verify_mode = ssl.CERT_NONE
    return context


# --- the feeder ----------------------------------------------------------------------------


class App:
    def __init__(self, config: dict) -> None:
        self.config = config
        self.topics = dict(DEFAULT_TOPICS)
        self.topics.update(config.get("topics") or {})
        self.mqtt_config = config["mqtt"]
        self.wdt = machine.WDT(timeout=int(config.get("watchdog_ms", 30000)))
        self.feeder = feeder_logic.Feeder(config.get("feeding"), read_text(MEMORY_FILE))
        duty = int(config.get("motor_duty_pct", 100))
        self.motors = {}
        for bowl, pins in config["motors"].items():
            self.motors[bowl] = Motor(int(pins[0]), int(pins[1]), duty)
        sensor = config.get("food_sensor")
        self.sensor = None
        if sensor:
            self.sensor = FoodSensor(
                int(sensor["pin"]), int(sensor["empty_raw"]), int(sensor["full_raw"])
            )
        self.clock = Clock(
            config.get("ntp_host", "pool.ntp.org"), int(config.get("ntp_interval_s", 3600)) * 1000
        )
        self.wlan = network.WLAN(network.STA_IF)
        self.client: MQTTClient | None = None
        self.decisions: list = []  # decided in the MQTT callback, to carry out in the loop
        self.outbox: list = []  # (topic, payload) still to publish at QoS 1
        self.states_every_ms = int(config.get("states_interval_s", 300)) * 1000
        self.keepalive_s = int(self.mqtt_config.get("keepalive_s", 60))
        self.last_states = time.ticks_ms()
        self.last_ping = time.ticks_ms()
        self.stop_motors()

    def stop_motors(self) -> None:
        for motor in self.motors.values():
            motor.stop()

    def now_ms(self) -> int:
        # The RTC, synced or not: unlike ticks_ms it does not wrap (every 2**30 ms), so the
        # logic's rolling caps keep working; expiry is checked only once NTP has set it.
        return epoch_ms()

    def on_message(self, topic: bytes, payload: bytes) -> None:
        if topic.decode() != self.topics["action"]:
            return
        decision = self.feeder.handle(payload, self.now_ms(), self.clock.synced)
        log("action:", decision)
        if decision.persist:
            write_atomically(MEMORY_FILE, self.feeder.memory_blob())
        self.decisions.append(decision)

    def connect_mqtt(self) -> MQTTClient:
        mqtt = self.mqtt_config
        client = MQTTClient(
            mqtt.get("client_id", "cat-feeder"),
            mqtt["host"],
            port=int(mqtt.get("port", 0)),
            user=mqtt.get("user"),
            password=mqtt.get("password"),
            keepalive=self.keepalive_s,
            ssl=tls_context(mqtt),
        )
        client.set_callback(self.on_message)
        client.set_last_will(self.topics["availability"], b"offline", retain=True, qos=1)
        self.wdt.feed()
        session_present = client.connect(clean_session=False)
        log("MQTT connected, session present:", session_present)
        client.publish(self.topics["availability"], b"online", retain=True, qos=1)
        client.subscribe(self.topics["action"], qos=1)
        self.last_ping = time.ticks_ms()
        self.last_states = time.ticks_add(time.ticks_ms(), -self.states_every_ms)
        return client

    def food_level(self) -> int | None:
        if self.sensor is not None:
            return self.sensor.level()
        level: int | None = self.feeder.food_capacity()
        return level

    def carry_out(self) -> None:
        """Run the motors for each decided request, then queue its ack and the food level."""
        while self.decisions:
            decision = self.decisions.pop(0)
            if decision.run:
                run_plan(decision.run, self.motors, self.wdt)
            if decision.ack is not None:
                self.outbox.append((self.topics["dispensed"], decision.ack))
            if decision.run:
                self.queue_states()

    def queue_states(self) -> None:
        level = self.food_level()
        if level is not None:
            self.outbox.append((self.topics["states"], feeder_logic.states_payload(level)))
        self.last_states = time.ticks_ms()

    def flush(self, client: MQTTClient) -> None:
        while self.outbox:
            topic, payload = self.outbox[0]
            self.wdt.feed()
            client.publish(topic, payload, qos=1)
            self.outbox.pop(0)

    def step(self, client: MQTTClient) -> None:
        client.check_msg()
        self.carry_out()
        now = time.ticks_ms()
        if time.ticks_diff(now, self.last_states) >= self.states_every_ms:
            self.queue_states()
        self.flush(client)
        if time.ticks_diff(now, self.last_ping) >= self.keepalive_s * 500:
            client.ping()
            self.last_ping = now

    def drop_client(self) -> None:
        if self.client is not None:
            try:
                self.client.sock.close()
            except Exception:  # noqa: S110 - the socket is already gone
                pass
        self.client = None

    def run(self) -> None:
        wifi = self.config["wifi"]
        backoff_ms = 1000
        while True:
            self.wdt.feed()
            try:
                connect_wifi(self.wlan, wifi["ssid"], wifi["password"], self.wdt)
                self.clock.maybe_sync()
                if self.client is None:
                    self.client = self.connect_mqtt()
                    backoff_ms = 1000
                self.step(self.client)
                time.sleep_ms(50)
            except Exception as e:  # OSError, MQTTException: start again
                self.stop_motors()
                log("network error:", repr(e), "- retrying in", backoff_ms, "ms")
                self.drop_client()
                waited = 0
                while waited < backoff_ms:
                    self.wdt.feed()
                    time.sleep_ms(500)
                    waited += 500
                backoff_ms = min(backoff_ms * 2, 60000)


def load_config() -> dict:
    text = read_text(CONFIG_FILE)
    if text is None:
        raise OSError("no " + CONFIG_FILE + " on the device: copy config.example.json there")
    config: dict = json.loads(text)
    return config


def main() -> None:
    App(load_config()).run()


if __name__ == "__main__":
    main()
