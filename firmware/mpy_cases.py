"""The feeder logic's core cases as plain assert functions, for CPython and real MicroPython.

pytest does not run under MicroPython, so this is its own tiny harness: every function named
``case_*`` is a case; :func:`run` calls each, prints a line per failure and then
``N passed, M failed``, and returns M. Under CPython: ``python firmware/mpy_cases.py`` (from the
repository root or from firmware/). Under MicroPython (WebAssembly, in node):
``node firmware/host-check/run_cases.mjs``. Uses only what MicroPython has.
"""

import json

import feeder_logic as fl

T0 = 1767225600000  # 2026-01-01T00:00:00Z in ms


def action(
    request_id="r1", bowls=None, portion_ms=3000, expires_at_ms=None, event="SINGLE", ttl_ms=None
):
    """An action message shaped like the gateway's encode_action output."""
    message = {
        "event": event,
        "reportedTime": "2026-01-01T00:00:00.000Z",
        "id": request_id,
        "bowls": bowls or ["left"],
        "portion_ms": portion_ms,
        "expires_at_ms": T0 + 60000 if expires_at_ms is None else expires_at_ms,
    }
    if ttl_ms is not None:
        message["ttl_ms"] = ttl_ms
    return json.dumps(message).encode()


def case_new_format_served():
    d = fl.Feeder().handle(action(bowls=["right", "left"], portion_ms=4000), T0, True)
    assert d.status == "served", d
    assert d.run == [("left", 4000), ("right", 4000)], d.run
    assert d.persist
    ack = json.loads(d.ack)
    assert ack["id"] == "r1"
    assert ack["status"] == "served"
    assert ack["reason"] is None
    assert ack["bowls"] == ["left", "right"]
    assert ack["ran_ms"] == 4000


def case_ack_bytes_exact():
    d = fl.Feeder().handle(action(request_id="abc"), T0, True)
    want = b'{"id":"abc","status":"served","reason":null,"bowls":["left"],"ran_ms":3000}'
    assert d.ack == want, d.ack


def case_old_format():
    f = fl.Feeder({"default_portion_ms": 10000})
    for event, bowls in (("SINGLE", ["left"]), ("DOUBLE", ["right"]), ("LONG", ["left", "right"])):
        d = f.handle(json.dumps({"event": event}).encode(), T0, False)
        assert d.status == "served", d
        assert d.bowls == bowls, d
        assert d.run == [(b, 10000) for b in bowls], d.run
        assert d.ack is None
        assert d.request_id is None


def case_old_format_with_reported_time():
    payload = b'{"event": "long", "reportedTime": "2026-01-01T00:00:00Z"}'
    d = fl.Feeder().handle(payload, T0, True)
    assert d.status == "served"
    assert d.bowls == ["left", "right"]


def case_duplicate_refused():
    f = fl.Feeder()
    assert f.handle(action(), T0, True).status == "served"
    d = f.handle(action(), T0 + 1, True)
    assert d.status == "refused"
    assert d.reason == "duplicate"
    assert d.run == []
    assert json.loads(d.ack)["status"] == "refused"


def case_duplicate_across_reboot():
    f = fl.Feeder()
    d = f.handle(action(request_id="x"), T0, True)
    assert d.status == "served" and d.persist
    blob = f.memory_blob()
    rebooted = fl.Feeder(None, blob)
    d = rebooted.handle(action(request_id="x"), T0 + 5000, True)
    assert d.status == "refused" and d.reason == "duplicate" and d.run == [], d


def case_dedupe_memory_bounded():
    f = fl.Feeder({"dedupe_size": 3, "cap_feeds": 100})
    for i in range(5):
        f.handle(action(request_id="id%d" % i), T0 + i, True)
    ids = json.loads(f.memory_blob())["ids"]
    assert ids == ["id2", "id3", "id4"], ids
    assert f.handle(action(request_id="id4"), T0 + 9, True).reason == "duplicate"


def case_damaged_blob_starts_fresh():
    for blob in ("", "{", "[]", '{"v": 99}', '{"v": 1, "ids": 5}', "null"):
        d = fl.Feeder(None, blob).handle(action(), T0, True)
        assert d.status == "served", blob


def case_expired_when_synced():
    d = fl.Feeder().handle(action(expires_at_ms=T0 - 1), T0, True)
    assert d.status == "refused" and d.reason == "expired" and d.run == []


def case_expired_ignored_when_not_synced():
    d = fl.Feeder().handle(action(expires_at_ms=T0 - 1), 12345, False)
    assert d.status == "served", d


def case_ttl_needs_no_clock():
    # An absolute time long past, an unsynchronised clock: the relative ttl_ms decides.
    f = fl.Feeder()
    d = f.handle(action("t1", expires_at_ms=1, ttl_ms=30000), 5, False)
    assert d.status == "served", d
    assert d.work["ttl"] == 30000
    assert f.recheck(d.work, 29999, 5, False) is None
    late = f.recheck(d.work, 30000, 5, False)
    assert late.status == "refused" and late.reason == "expired" and late.run == [], late
    assert json.loads(late.ack)["id"] == "t1"


def case_ttl_wins_over_a_synced_absolute_time():
    # The gateway's clock may be wrong: with ttl_ms, expires_at_ms is not looked at.
    d = fl.Feeder().handle(action(expires_at_ms=T0 - 600000, ttl_ms=60000), T0, True)
    assert d.status == "served", d


def case_ttl_zero_is_expired_on_arrival():
    d = fl.Feeder().handle(action(ttl_ms=0), T0, False)
    assert d.status == "refused" and d.reason == "expired" and d.run == [], d


def case_ttl_malformed_refused():
    f = fl.Feeder()
    for i, bad in enumerate((-1, 1.5, "60000", True, [1])):
        payload = action("bad%d" % i).replace(
            b"}", b', "ttl_ms": ' + json.dumps(bad).encode() + b"}"
        )
        d = f.handle(payload, T0, True)
        assert d.status == "refused" and d.reason == "malformed: ttl_ms" and d.run == [], bad


def case_recheck_gives_back_the_feed():
    f = fl.Feeder({"cap_feeds": 1, "hopper_ms": 100000})
    d = f.handle(action("a", ttl_ms=1000), T0, True)
    assert d.status == "served" and f.food_capacity() == 97
    assert f.handle(action("b"), T0 + 1, True).reason == "cap"
    assert f.recheck(d.work, 1000, T0 + 2, True).reason == "expired"
    assert f.food_capacity() == 100
    assert f.handle(action("c"), T0 + 3, True).status == "served", "the expired feed left the cap"


def case_recheck_absolute_only_when_synced():
    f = fl.Feeder()
    d = f.handle(action(expires_at_ms=T0 + 10), T0, True)
    assert f.recheck(d.work, 50, T0 + 50, False) is None
    assert f.recheck(d.work, 50, T0 + 50, True).reason == "expired"


def case_extra_kept_in_the_blob():
    f = fl.Feeder()
    f.handle(action("k"), T0, True)
    again = fl.Feeder(None, f.memory_blob({"work": [1, 2]}))
    assert again.extra == {"work": [1, 2]}
    assert again.handle(action("k"), T0, True).reason == "duplicate"
    assert fl.Feeder(None, f.memory_blob()).extra is None


def case_cap_per_bowl():
    f = fl.Feeder({"cap_feeds": 2, "cap_period_ms": 60000})
    assert f.handle(action("a"), T0, True).status == "served"
    assert f.handle(action("b"), T0 + 1, True).status == "served"
    d = f.handle(action("c"), T0 + 2, True)
    assert d.status == "refused" and d.reason == "cap" and d.run == []
    other = f.handle(action("d", bowls=["right"]), T0 + 3, True)
    assert other.status == "served", "the cap is per bowl"
    later = f.handle(action("e", expires_at_ms=T0 + 120000), T0 + 60001, True)
    assert later.status == "served", "the period rolls"


def case_motor_time_limit():
    f = fl.Feeder({"max_run_ms": 5000})
    d = f.handle(action(portion_ms=10**9), T0, True)
    assert d.status == "served" and d.reason == "clamped"
    assert d.run == [("left", 5000)]
    assert d.ran_ms == 5000
    old = f.handle(b'{"event":"DOUBLE"}', T0, True)
    assert old.run == [("right", 5000)]


def case_malformed_never_runs():
    payloads = [
        b"",
        b"\xff\xfe",
        b"null",
        b"[]",
        b"42",
        b"{",
        b"SINGLE",
        b"{}",
        b'{"event": "TRIPLE"}',
        b'{"event": 1}',
        b'{"bowls": "left"}',
        b'{"bowls": []}',
        b'{"bowls": ["left", "left"]}',
        b'{"bowls": ["middle"]}',
        b'{"event": "SINGLE", "portion_ms": 1.5}',
        b'{"event": "SINGLE", "portion_ms": true}',
        b'{"event": "SINGLE", "portion_ms": -5}',
        b'{"event": "SINGLE", "portion_ms": "9"}',
        b'{"event": "SINGLE", "expires_at_ms": "soon"}',
        b'{"event": "SINGLE", "id": 7}',
        b'{"event": "SINGLE", "id": ""}',
        b'{"event": "SINGLE", "id": "a\\nb"}',
        b"[" * 300 + b"]" * 300,
        b'{"event": "SINGLE", "pad": "' + b"x" * 5000 + b'"}',
        "not bytes at all",
        None,
        12,
    ]
    f = fl.Feeder()
    for payload in payloads:
        d = f.handle(payload, T0, True)
        assert d.run == [], payload
        assert d.status in ("ignored", "refused"), payload
        assert d.ack is None, payload


def case_malformed_with_id_refused_and_acked():
    f = fl.Feeder()
    d = f.handle(b'{"id": "m1", "event": "SINGLE", "portion_ms": 0}', T0, True)
    assert d.status == "refused" and d.run == []
    assert d.reason == "malformed: portion_ms", d.reason
    ack = json.loads(d.ack)
    assert ack["id"] == "m1" and ack["status"] == "refused" and ack["ran_ms"] == 0


def case_states_payload():
    assert fl.states_payload(55) == b'{"food_capacity":55}'
    assert fl.states_payload(140) == b'{"food_capacity":100}'
    assert fl.states_payload(-3) == b'{"food_capacity":0}'


def case_food_estimate():
    f = fl.Feeder({"hopper_ms": 100000, "cap_feeds": 100})
    assert f.food_capacity() == 100
    f.handle(action("a", portion_ms=10000), T0, True)
    assert f.food_capacity() == 90
    f2 = fl.Feeder({"hopper_ms": 100000}, f.memory_blob())
    assert f2.food_capacity() == 90
    f2.refill()
    assert f2.food_capacity() == 100
    assert fl.Feeder().food_capacity() is None


def run():
    names = sorted(n for n in globals() if n.startswith("case_"))
    passed = 0
    failed = 0
    for name in names:
        try:
            globals()[name]()
            passed += 1
        except Exception as e:  # the harness reports every failure
            failed += 1
            print("FAIL %s: %s %s" % (name, type(e).__name__, e))
    print("%d passed, %d failed" % (passed, failed))
    return failed


if __name__ == "__main__":
    import sys

    sys.exit(1 if run() else 0)
