"""The cat feeder's logic: what a message on ``cat-feeder/action`` means and what to do about it.

No hardware, no clock, no I/O: the caller passes every time in as integer ms and does what the
returned :class:`Decision` says. It runs unchanged on the ESP32-C3 under MicroPython (``main.py``
drives it there), on the host under CPython (tests, the gateway's feeder simulator) and under
the MicroPython WebAssembly port (``mpy_cases.py``). So it uses only what MicroPython has: no
``typing`` at run time, no dataclasses, no f-strings, integers only (the ESP32-C3's floats are
single precision: a float timestamp would lose whole minutes).

API::

    feeder = Feeder(config=None, memory_blob=None)
        config: dict, every key optional (see DEFAULTS): default_portion_ms, max_run_ms,
            cap_feeds, cap_period_ms, dedupe_size, click_bowls, max_payload_bytes, hopper_ms.
        memory_blob: the text last returned by feeder.memory_blob() (read back from flash
            after a reboot), or None for a fresh feeder. A damaged blob starts fresh.
    decision = feeder.handle(payload, now_ms, clock_synced)
        payload: the message as bytes (bytearray, memoryview or str also accepted).
        now_ms: int, ms since the Unix epoch when clock_synced, else any monotonic ms.
        clock_synced: bool, True once NTP has set the clock; only then is a request's
            expires_at_ms compared with now_ms (a request with ttl_ms needs no clock).
        Never raises on any payload. Returns a Decision:
            .status      "served" | "refused" | "ignored"
            .reason      None, or why ("duplicate", "expired", "cap", "malformed: <field>",
                         and on a served request whose portion was cut, "clamped")
            .request_id  the message's id, or None (old format, or no usable id)
            .bowls       list of bowl names ("left", "right"), possibly empty
            .run         the motor plan: list of (bowl, ms) to run together; [] unless served
            .ran_ms      ms each motor of the plan runs (0 unless served)
            .ack         bytes for cat-feeder/dispensed (QoS 1), or None when the message
                         carried no usable id (old format, or garbage): nothing to answer
            .persist     True when the memory changed: write feeder.memory_blob() to flash
            .work        on a served decision, a small JSON-able dict to keep (in flash) until
                         the motors have run: {"id", "bowls", "ms", "at", "ttl", "exp"}
    refused = feeder.recheck(work, waited_ms, now_ms, clock_synced)
        Just before the motors start: None while the request is still good, or a refused
        "expired" Decision when it expired while it waited its turn (waited_ms: ms since the
        feeder received it, by a monotonic clock; 0 when unknown, after a reboot). The feed
        it had counted (caps, food estimate) is taken back; write memory_blob() to flash.
    feeder.memory_blob(extra=None) -> str   small JSON: recent ids, recent feeds, motor ms
        since refill, and ``extra`` (any JSON value the caller keeps with them, read back as
        feeder.extra), so one atomic write keeps both
    feeder.extra                    the ``extra`` of the blob it was built from, or None
    feeder.food_capacity() -> int or None   estimated 0..100 (needs config hopper_ms)
    feeder.refill()                 the hopper was filled: the estimate restarts at 100
    states_payload(food_capacity) -> bytes    {"food_capacity": N} for cat-feeder/states
    encode_ack(request_id, status, reason, bowls, ran_ms) -> bytes

Messages (docs/architecture.md, "Local MQTT topics"): the gateway's ``{"event",
"reportedTime", "id", "bowls", "portion_ms", "expires_at_ms", "ttl_ms"}``, and the published
firmware's ``{"event": "SINGLE"}`` with no id (SINGLE → left, DOUBLE → right, LONG → both, for
default_portion_ms), which feeds as before but cannot be deduplicated or acknowledged.

Safety, in the order checked: a malformed message never runs a motor; a request id already
decided is refused as "duplicate" (the ids survive a reboot through memory_blob, so a message
redelivered by the broker's persistent session feeds once); an expired request is refused:
with ``ttl_ms`` (an int >= 0), once ``ttl_ms`` have passed since the feeder received it,
measured by the caller's monotonic clock, so no synchronised clock is needed (0: already
expired on arrival; the broker's message expiry covers the time it spent queued there);
without ``ttl_ms``, by ``expires_at_ms`` and only when the clock is synchronised (an
unsynchronised clock would refuse everything or nothing);
each bowl feeds at most cap_feeds times per rolling cap_period_ms; no motor runs longer than
max_run_ms whatever the request asks.
"""

import json

LEFT = "left"
RIGHT = "right"
BOWLS = (LEFT, RIGHT)  # canonical order, as the gateway's parse_bowls returns them

SERVED = "served"
REFUSED = "refused"
IGNORED = "ignored"

DEFAULTS = {
    "default_portion_ms": 10000,  # the published firmware ran a motor for 10 s
    "max_run_ms": 20000,  # hard limit on one motor run, whatever the request asks
    "cap_feeds": 6,  # feeds per bowl ...
    "cap_period_ms": 3600000,  # ... per rolling hour
    "dedupe_size": 64,  # request ids remembered (and kept in flash)
    "click_bowls": {"SINGLE": [LEFT], "DOUBLE": [RIGHT], "LONG": [LEFT, RIGHT]},
    "max_payload_bytes": 2048,  # the gateway's action message is ~200 bytes
    "hopper_ms": 0,  # motor ms that empties a full hopper; 0: no food estimate
}

MAX_ID_CHARS = 128  # the gateway's MAX_REQUEST_ID_CHARS
MAX_INT = 2**31 - 1  # the gateway's MAX_RAN_MS; and small ints on the device
_BLOB_VERSION = 1


class Decision:
    """What to do about one message; see the module docstring."""

    def __init__(self, status, reason=None, request_id=None, bowls=None, run=None, ran_ms=0):
        self.status = status
        self.reason = reason
        self.request_id = request_id
        self.bowls = bowls or []
        self.run = run or []
        self.ran_ms = ran_ms
        self.ack = None
        self.persist = False
        self.work = None
        if request_id is not None:
            self.ack = encode_ack(request_id, status, reason, self.bowls, ran_ms)

    def __repr__(self):
        return "Decision(%s, reason=%r, id=%r, bowls=%r, run=%r)" % (
            self.status,
            self.reason,
            self.request_id,
            self.bowls,
            self.run,
        )


class _Malformed(Exception):
    """A message that cannot be obeyed; ``args[0]`` names the field ("" for the whole)."""


class Feeder:
    """The feeder's state: recent request ids, recent feeds per bowl, motor ms since refill."""

    def __init__(self, config=None, memory_blob=None):
        cfg = {}
        for key in DEFAULTS:
            cfg[key] = DEFAULTS[key]
        if config:
            for key in DEFAULTS:
                if key in config and config[key] is not None:
                    cfg[key] = config[key]
        for key in DEFAULTS:
            if key != "click_bowls" and not _is_int(cfg[key]):
                raise ValueError("config " + key + " must be an integer")
        if cfg["max_run_ms"] < 1 or cfg["dedupe_size"] < 1 or cfg["cap_period_ms"] < 1:
            raise ValueError("config max_run_ms, dedupe_size and cap_period_ms must be >= 1")
        clicks = {}
        for click in cfg["click_bowls"]:
            clicks[str(click).upper()] = _bowls(cfg["click_bowls"][click], "click_bowls")
        cfg["click_bowls"] = clicks
        self.config = cfg
        self._ids = []  # oldest first, at most dedupe_size
        self._fed = []  # [bowl, t_ms] of served feeds, oldest first
        self._dispensed_ms = 0  # motor ms since the last refill, for the food estimate
        self.extra = None  # what the caller keeps in the same blob (see memory_blob)
        if memory_blob:
            self._load(memory_blob)

    # --- the one entry point -------------------------------------------------------------

    def handle(self, payload, now_ms, clock_synced):
        """Decide what one ``cat-feeder/action`` message means; never raises on its content."""
        request_id = None
        bowls = []
        try:
            data = self._parse(payload)
            request_id = _request_id(data)
            bowls, portion_ms, expires_at_ms, ttl_ms = self._request(data)
        except _Malformed as e:
            reason = "malformed: " + e.args[0] if e.args and e.args[0] else "malformed"
            status = IGNORED if request_id is None else REFUSED
            decision = Decision(status, reason, request_id, bowls)
            if request_id is not None:
                decision.persist = self._remember(request_id)
            return decision
        except Exception:  # a bug here must not crash the feeder's loop
            return Decision(IGNORED, "malformed")

        if request_id is not None and request_id in self._ids:
            return Decision(REFUSED, "duplicate", request_id, bowls)
        decision = self._decide(
            request_id, bowls, portion_ms, expires_at_ms, ttl_ms, now_ms, clock_synced
        )
        if request_id is not None:
            decision.persist = self._remember(request_id) or decision.persist
        return decision

    def _decide(self, request_id, bowls, portion_ms, expires_at_ms, ttl_ms, now_ms, clock_synced):
        if _expired(ttl_ms, expires_at_ms, 0, now_ms, clock_synced):
            return Decision(REFUSED, "expired", request_id, bowls)
        self._forget_feeds(now_ms)
        for bowl in bowls:
            if self._feeds(bowl) >= self.config["cap_feeds"]:
                return Decision(REFUSED, "cap", request_id, bowls)
        run_ms = min(portion_ms, self.config["max_run_ms"])
        reason = "clamped" if run_ms < portion_ms else None
        for bowl in bowls:
            self._fed.append([bowl, now_ms])
        self._dispensed_ms = min(self._dispensed_ms + run_ms * len(bowls), MAX_INT)
        run = [(bowl, run_ms) for bowl in bowls]
        decision = Decision(SERVED, reason, request_id, bowls, run, run_ms)
        decision.persist = True
        decision.work = {
            "id": request_id,
            "bowls": bowls,
            "ms": run_ms,
            "at": now_ms,
            "ttl": ttl_ms,
            "exp": expires_at_ms,
        }
        return decision

    def recheck(self, work, waited_ms, now_ms, clock_synced):
        """None while ``work`` (a served decision's .work) is still good, else "expired"."""
        if not _expired(work.get("ttl"), work.get("exp"), waited_ms, now_ms, clock_synced):
            return None
        bowls = work.get("bowls") or []
        for bowl in bowls:
            for i in range(len(self._fed)):
                if self._fed[i][0] == bowl and self._fed[i][1] == work.get("at"):
                    self._fed.pop(i)
                    break
        taken = int(work.get("ms") or 0) * len(bowls)
        self._dispensed_ms = max(0, self._dispensed_ms - taken)
        decision = Decision(REFUSED, "expired", work.get("id"), bowls)
        decision.persist = True
        return decision

    # --- decoding --------------------------------------------------------------------------

    def _parse(self, payload):
        if isinstance(payload, str):
            text = payload
            if len(text) > self.config["max_payload_bytes"]:
                raise _Malformed("too large")
        else:
            if isinstance(payload, (bytearray, memoryview)):
                payload = bytes(payload)
            if not isinstance(payload, bytes):
                raise _Malformed("not bytes")
            if len(payload) > self.config["max_payload_bytes"]:
                raise _Malformed("too large")
            try:
                text = payload.decode("utf-8")
            except Exception:  # UnicodeError on CPython, others elsewhere
                raise _Malformed("not UTF-8") from None
        try:
            data = json.loads(text)
        except Exception:  # ValueError, RecursionError, MemoryError ...
            raise _Malformed("not JSON") from None
        if not isinstance(data, dict):
            raise _Malformed("not an object")
        return data

    def _request(self, data):
        """(bowls, portion_ms, expires_at_ms, ttl_ms) from an action message, or _Malformed."""
        bowls = None
        if data.get("bowls") is not None:
            bowls = _bowls(data["bowls"], "bowls")
        event = data.get("event")
        if event is not None:
            if not isinstance(event, str):
                raise _Malformed("event")
            mapped = self.config["click_bowls"].get(event.strip().upper())
            if mapped is None:
                raise _Malformed("event")
            if bowls is None:
                bowls = mapped
        if bowls is None:
            raise _Malformed("bowls")
        portion_ms = data.get("portion_ms")
        if portion_ms is None:
            portion_ms = self.config["default_portion_ms"]
        elif not _is_int(portion_ms) or portion_ms < 1:
            raise _Malformed("portion_ms")
        expires_at_ms = data.get("expires_at_ms")
        if expires_at_ms is not None and (not _is_int(expires_at_ms) or expires_at_ms < 0):
            raise _Malformed("expires_at_ms")
        ttl_ms = data.get("ttl_ms")
        if ttl_ms is not None and (not _is_int(ttl_ms) or ttl_ms < 0):
            raise _Malformed("ttl_ms")
        return bowls, portion_ms, expires_at_ms, ttl_ms

    # --- memory ----------------------------------------------------------------------------

    def _remember(self, request_id):
        if request_id in self._ids:
            return False
        self._ids.append(request_id)
        while len(self._ids) > self.config["dedupe_size"]:
            self._ids.pop(0)
        return True

    def _forget_feeds(self, now_ms):
        # Only feeds within the rolling period count. A feed "in the future" means the clock
        # went back (NTP set it, or a reboot restarted an unsynchronised clock): it is dropped.
        since = now_ms - self.config["cap_period_ms"]
        self._fed = [f for f in self._fed if since < f[1] <= now_ms]

    def _feeds(self, bowl):
        n = 0
        for fed in self._fed:
            if fed[0] == bowl:
                n += 1
        return n

    def memory_blob(self, extra=None):
        """The state to keep in flash, as compact JSON text (a few KB at most)."""
        blob = {"v": _BLOB_VERSION, "ids": self._ids, "fed": self._fed, "ms": self._dispensed_ms}
        if extra is not None:
            blob["x"] = extra
        return json.dumps(blob)

    def _load(self, blob):
        try:
            data = json.loads(blob)
            if not isinstance(data, dict) or data.get("v") != _BLOB_VERSION:
                return
            ids = data.get("ids", [])
            fed = data.get("fed", [])
            if not isinstance(ids, list) or not isinstance(fed, list):
                return
            ids = [i for i in ids if _valid_id(i)]
            fed = [
                [f[0], f[1]]
                for f in fed
                if isinstance(f, list) and len(f) == 2 and f[0] in BOWLS and _is_int(f[1])
            ]
            ms = data.get("ms", 0)
        except Exception:  # a damaged blob starts a fresh memory
            return
        self._ids = ids[-self.config["dedupe_size"] :]
        self._fed = fed[-(len(BOWLS) * self.config["cap_feeds"]) :]
        self._dispensed_ms = ms if _is_int(ms) and 0 <= ms <= MAX_INT else 0
        self.extra = data.get("x")

    # --- food level ------------------------------------------------------------------------

    def food_capacity(self):
        """Estimated food left, 0..100, from motor ms since refill; None without hopper_ms."""
        hopper_ms = self.config["hopper_ms"]
        if hopper_ms <= 0:
            return None
        left = 100 - (self._dispensed_ms * 100) // hopper_ms
        return max(0, min(100, left))

    def refill(self):
        self._dispensed_ms = 0


# --- encoding ------------------------------------------------------------------------------


def encode_ack(request_id, status, reason, bowls, ran_ms):
    """``{"id","status","reason","bowls","ran_ms"}`` as compact ASCII JSON bytes.

    Written key by key so the bytes are the same under CPython and MicroPython (whose dicts
    do not keep insertion order). ``bowls`` is null when the message named none.
    """
    parts = [
        '{"id":' + _json_str(request_id),
        '"status":' + _json_str(status),
        '"reason":' + ("null" if reason is None else _json_str(reason)),
        '"bowls":' + ("null" if not bowls else "[" + ",".join(_json_str(b) for b in bowls) + "]"),
        '"ran_ms":' + str(int(ran_ms)),
    ]
    return (",".join(parts) + "}").encode()


def states_payload(food_capacity):
    """``{"food_capacity": N}`` for ``cat-feeder/states``, N clamped to 0..100."""
    level = max(0, min(100, int(food_capacity)))
    return ('{"food_capacity":' + str(level) + "}").encode()


# --- helpers -------------------------------------------------------------------------------


def _is_int(value):
    """An int and not a bool (JSON true is not a duration); times in ms exceed 2**31."""
    return isinstance(value, int) and not isinstance(value, bool)


def _valid_id(value):
    """1..128 printable ASCII characters: an id the gateway's decode_dispensed takes back."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_CHARS:
        return False
    return all(0x20 <= ord(ch) <= 0x7E for ch in value)


def _expired(ttl_ms, expires_at_ms, waited_ms, now_ms, clock_synced):
    # ttl_ms, when present, wins: it needs no clock shared with the gateway. An absolute
    # expires_at_ms is believed only once NTP has set this clock.
    if ttl_ms is not None:
        return waited_ms >= ttl_ms
    return clock_synced and expires_at_ms is not None and now_ms >= expires_at_ms


def _request_id(data):
    if "id" not in data or data["id"] is None:
        return None
    if not _valid_id(data["id"]):
        raise _Malformed("id")
    return data["id"]


def _bowls(value, field):
    """A non-empty list of distinct bowl names, in canonical order (left before right)."""
    if not isinstance(value, (list, tuple)) or not value:
        raise _Malformed(field)
    for bowl in value:
        if bowl not in BOWLS:
            raise _Malformed(field)
    if len(value) != len(set(value)):
        raise _Malformed(field)
    return [b for b in BOWLS if b in value]


def _json_str(text):
    # Every string written here is printable ASCII (ids are checked, the rest are ours), so
    # escaping the two JSON metacharacters is the whole job, the same on every interpreter.
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'
