"""The feeder firmware's logic (firmware/feeder_logic.py) under CPython.

The same module runs on the ESP32-C3 under MicroPython; its core cases also run there through
firmware/mpy_cases.py (see test_firmware_micropython.py). Here: the cases in depth, arbitrary
bytes (never an exception, never a motor), and agreement with the gateway's own encoder and
decoder in gateway/wire.py, byte for byte where the contract is bytes.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware import feeder_logic as fl
from gateway.errors import PayloadError
from gateway.events import Bowl, ClickType, FeedRequested, Origin
from gateway.wire import (
    DEFAULT_CLICK_BOWLS,
    DispenseStatus,
    decode_dispensed,
    decode_states,
    encode_action,
)

FIRMWARE = Path(__file__).resolve().parent.parent / "firmware"
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def request(
    request_id: str = "req-1",
    bowls: tuple[Bowl, ...] = (Bowl.LEFT,),
    portion_ms: int = 3000,
    expires_at_ms: int = T0 + 60_000,
) -> FeedRequested:
    return FeedRequested(
        request_id=request_id,
        bowls=bowls,
        portion_ms=portion_ms,
        expires_at_ms=expires_at_ms,
        origin=Origin.BUTTON,
    )


def gateway_action(req: FeedRequested, event: ClickType = ClickType.SINGLE) -> bytes:
    return encode_action(req, event=event, reported_time_ms=T0)


def no_motor(decision: fl.Decision) -> bool:
    return decision.run == [] and decision.ran_ms == 0


# --- agreement with the gateway ---------------------------------------------------------------


@pytest.mark.parametrize("bowls", [(Bowl.LEFT,), (Bowl.RIGHT,), (Bowl.LEFT, Bowl.RIGHT)])
def test_gateway_action_is_served_and_its_ack_decodes(bowls: tuple[Bowl, ...]) -> None:
    feeder = fl.Feeder()
    decision = feeder.handle(gateway_action(request(bowls=bowls)), T0, True)
    assert decision.status == "served"
    assert decision.run == [(b.value, 3000) for b in bowls]
    report = decode_dispensed(decision.ack)
    assert report.request_id == "req-1"
    assert report.status is DispenseStatus.SERVED
    assert report.reason is None
    assert report.bowls == bowls
    assert report.ran_ms == 3000


def test_bowls_win_over_event() -> None:
    """The gateway always sets "event"; a feeder that knows "bowls" obeys the bowls."""
    payload = gateway_action(request(bowls=(Bowl.RIGHT,)), event=ClickType.LONG)
    decision = fl.Feeder().handle(payload, T0, True)
    assert decision.run == [("right", 3000)]


def test_refusals_decode_at_the_gateway() -> None:
    feeder = fl.Feeder({"cap_feeds": 1})
    feeder.handle(gateway_action(request("a")), T0, True)
    acks = [
        feeder.handle(gateway_action(request("a")), T0, True).ack,  # duplicate
        feeder.handle(gateway_action(request("b", expires_at_ms=T0 - 1)), T0, True).ack,
        feeder.handle(gateway_action(request("c")), T0, True).ack,  # cap
        feeder.handle(b'{"id": "d", "bowls": ["left"], "portion_ms": -1}', T0, True).ack,
        feeder.handle(b'{"id": "e", "bowls": "both"}', T0, True).ack,
    ]
    reports = [decode_dispensed(ack) for ack in acks]
    assert [(r.request_id, r.status, r.reason, r.ran_ms) for r in reports] == [
        ("a", DispenseStatus.REFUSED, "duplicate", 0),
        ("b", DispenseStatus.REFUSED, "expired", 0),
        ("c", DispenseStatus.REFUSED, "cap", 0),
        ("d", DispenseStatus.REFUSED, "malformed: portion_ms", 0),
        ("e", DispenseStatus.REFUSED, "malformed: bowls", 0),
    ]
    assert reports[0].bowls == (Bowl.LEFT,)
    assert reports[4].bowls is None


def test_old_format_matches_the_gateways_click_mapping() -> None:
    feeder = fl.Feeder({"cap_feeds": 100})
    for click, bowls in DEFAULT_CLICK_BOWLS.items():
        decision = feeder.handle(json.dumps({"event": click.value}).encode(), T0, True)
        assert decision.status == "served"
        assert tuple(bowl for bowl, _ in decision.run) == tuple(b.value for b in bowls)
        assert decision.ack is None


def test_states_payload_decodes_at_the_gateway() -> None:
    for level in (0, 1, 57, 100):
        assert decode_states(fl.states_payload(level)).food_capacity == level
    assert decode_states(fl.states_payload(250)).food_capacity == 100


@given(
    request_id=st.text(
        alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=128
    ),
    bowls=st.sampled_from([(Bowl.LEFT,), (Bowl.RIGHT,), (Bowl.LEFT, Bowl.RIGHT)]),
    portion_ms=st.integers(1, 120_000),
)
def test_any_gateway_request_round_trips(
    request_id: str, bowls: tuple[Bowl, ...], portion_ms: int
) -> None:
    req = request(request_id, bowls, portion_ms)
    decision = fl.Feeder({"max_run_ms": 20_000}).handle(gateway_action(req), T0, True)
    report = decode_dispensed(decision.ack)
    assert report.request_id == request_id
    assert report.status is DispenseStatus.SERVED
    assert report.bowls == bowls
    assert report.ran_ms == min(portion_ms, 20_000)
    assert decision.reason == (None if portion_ms <= 20_000 else "clamped")


# --- dedupe -----------------------------------------------------------------------------------


def test_duplicate_across_a_simulated_reboot() -> None:
    feeder = fl.Feeder()
    first = feeder.handle(gateway_action(request("x")), T0, True)
    assert first.status == "served"
    assert first.persist
    flash = feeder.memory_blob()
    assert isinstance(flash, str)
    assert len(flash.encode()) < 8192

    rebooted = fl.Feeder(None, flash)
    again = rebooted.handle(gateway_action(request("x")), T0 + 10_000, True)
    assert again.status == "refused"
    assert again.reason == "duplicate"
    assert no_motor(again)
    assert not again.persist
    fresh = rebooted.handle(gateway_action(request("y")), T0 + 10_000, True)
    assert fresh.status == "served"


def test_dedupe_memory_is_bounded_and_forgets_the_oldest() -> None:
    feeder = fl.Feeder({"dedupe_size": 10, "cap_feeds": 1000})
    for i in range(25):
        feeder.handle(gateway_action(request(f"id-{i}")), T0 + i, True)
    remembered = json.loads(feeder.memory_blob())["ids"]
    assert remembered == [f"id-{i}" for i in range(15, 25)]
    assert feeder.handle(gateway_action(request("id-24")), T0 + 30, True).reason == "duplicate"
    assert feeder.handle(gateway_action(request("id-0")), T0 + 31, True).status == "served"


def test_a_smaller_dedupe_size_after_reboot_keeps_the_newest() -> None:
    feeder = fl.Feeder({"dedupe_size": 10, "cap_feeds": 1000})
    for i in range(10):
        feeder.handle(gateway_action(request(f"id-{i}")), T0 + i, True)
    smaller = fl.Feeder({"dedupe_size": 3}, feeder.memory_blob())
    assert json.loads(smaller.memory_blob())["ids"] == ["id-7", "id-8", "id-9"]


def test_a_refused_request_is_remembered_too() -> None:
    """A request refused as expired must not feed when the broker redelivers it later."""
    feeder = fl.Feeder()
    expired = feeder.handle(gateway_action(request("old", expires_at_ms=T0 - 1)), T0, True)
    assert expired.reason == "expired"
    assert expired.persist
    again = feeder.handle(gateway_action(request("old", expires_at_ms=T0 - 1)), T0, False)
    assert again.reason == "duplicate"
    assert no_motor(again)


@pytest.mark.parametrize(
    "blob", ["", "{", "[]", "null", '{"v": 2, "ids": ["a"]}', '{"v": 1, "ids": "a"}', "\x00"]
)
def test_a_damaged_memory_blob_starts_fresh(blob: str) -> None:
    decision = fl.Feeder(None, blob).handle(gateway_action(request("a")), T0, True)
    assert decision.status == "served"


def test_blob_ignores_ids_the_gateway_could_not_have_sent() -> None:
    blob = json.dumps({"v": 1, "ids": ["ok", 5, "", "x" * 200, "bad\nid"], "fed": [], "ms": 0})
    assert json.loads(fl.Feeder(None, blob).memory_blob())["ids"] == ["ok"]


# --- expiry, caps, motor limit ------------------------------------------------------------------


def test_expired_request_refused_when_clock_synced() -> None:
    decision = fl.Feeder().handle(gateway_action(request(expires_at_ms=T0)), T0, True)
    assert decision.status == "refused"
    assert decision.reason == "expired"
    assert no_motor(decision)


def test_expiry_not_judged_when_clock_not_synced() -> None:
    # Unsynchronised, the device's clock says 2000-01-01 plus uptime: every request would look
    # expired. The broker's message expiry still drops stale requests.
    decision = fl.Feeder().handle(gateway_action(request(expires_at_ms=T0)), 5_000, False)
    assert decision.status == "served"


def test_not_yet_expired_is_served() -> None:
    decision = fl.Feeder().handle(gateway_action(request(expires_at_ms=T0 + 1)), T0, True)
    assert decision.status == "served"


def test_cap_per_bowl_per_rolling_period() -> None:
    feeder = fl.Feeder({"cap_feeds": 2, "cap_period_ms": 60_000})
    long_lived = T0 + 10**9
    assert feeder.handle(gateway_action(request("a", expires_at_ms=long_lived)), T0, True).ran_ms
    assert feeder.handle(
        gateway_action(request("b", expires_at_ms=long_lived)), T0 + 10_000, True
    ).ran_ms
    capped = feeder.handle(
        gateway_action(request("c", expires_at_ms=long_lived)), T0 + 20_000, True
    )
    assert (capped.status, capped.reason) == ("refused", "cap")
    assert no_motor(capped)
    right = request("d", bowls=(Bowl.RIGHT,), expires_at_ms=long_lived)
    assert feeder.handle(gateway_action(right), T0 + 20_000, True).status == "served"
    both = request("e", bowls=(Bowl.LEFT, Bowl.RIGHT), expires_at_ms=long_lived)
    assert feeder.handle(gateway_action(both), T0 + 30_000, True).reason == "cap"
    # The first left feed leaves the window at T0 + 60 000.
    later = feeder.handle(gateway_action(request("f", expires_at_ms=long_lived)), T0 + 60_000, True)
    assert later.status == "served"


def test_cap_counts_old_format_feeds_and_survives_reboot() -> None:
    feeder = fl.Feeder({"cap_feeds": 1})
    assert feeder.handle(b'{"event": "SINGLE"}', T0, True).status == "served"
    rebooted = fl.Feeder({"cap_feeds": 1}, feeder.memory_blob())
    capped = rebooted.handle(b'{"event": "SINGLE"}', T0 + 1000, True)
    assert (capped.status, capped.reason, capped.ack) == ("refused", "cap", None)


def test_clock_going_back_forgets_future_feeds() -> None:
    feeder = fl.Feeder({"cap_feeds": 1})
    feeder.handle(b'{"event": "SINGLE"}', T0, True)
    assert feeder.handle(b'{"event": "SINGLE"}', 5_000, False).status == "served"


@pytest.mark.parametrize("portion_ms", [20_001, 60_000, 2**31 - 1, 10**30])
def test_motor_time_is_clamped(portion_ms: int) -> None:
    payload = json.dumps(
        {"id": "big", "bowls": ["left", "right"], "portion_ms": portion_ms}
    ).encode()
    decision = fl.Feeder({"max_run_ms": 20_000}).handle(payload, T0, True)
    assert decision.status == "served"
    assert decision.reason == "clamped"
    assert decision.run == [("left", 20_000), ("right", 20_000)]
    assert decode_dispensed(decision.ack).ran_ms == 20_000


def test_default_portion_is_clamped_too() -> None:
    feeder = fl.Feeder({"default_portion_ms": 60_000, "max_run_ms": 15_000})
    assert feeder.handle(b'{"event": "LONG"}', T0, True).run == [
        ("left", 15_000),
        ("right", 15_000),
    ]


# --- old format ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "bowls"),
    [
        (b'{"event": "SINGLE"}', ["left"]),
        (b'{"event": "DOUBLE"}', ["right"]),
        (b'{"event": "LONG"}', ["left", "right"]),
        (b'{"event": " single ", "reportedTime": "2026-01-01T00:00:00Z"}', ["left"]),
    ],
)
def test_old_format_feeds_with_the_default_portion(payload: bytes, bowls: list[str]) -> None:
    decision = fl.Feeder({"default_portion_ms": 10_000}).handle(payload, T0, False)
    assert decision.status == "served"
    assert decision.run == [(bowl, 10_000) for bowl in bowls]
    assert decision.request_id is None
    assert decision.ack is None


def test_click_mapping_is_configurable() -> None:
    feeder = fl.Feeder({"click_bowls": {"SINGLE": ["right"], "DOUBLE": ["left"]}})
    assert feeder.handle(b'{"event": "SINGLE"}', T0, True).bowls == ["right"]
    assert feeder.handle(b'{"event": "LONG"}', T0, True).status == "ignored"


def test_bad_config_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="max_run_ms"):
        fl.Feeder({"max_run_ms": "20 s"})
    with pytest.raises(ValueError, match="max_run_ms"):
        fl.Feeder({"max_run_ms": 0})


# --- malformed payloads -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"   ",
        b"\xff",
        b"\xc3\x28",
        b"SINGLE",
        b"null",
        b"true",
        b"[1, 2]",
        b'"SINGLE"',
        b"{}",
        b'{"event": null}',
        b'{"event": "TRIPLE"}',
        b'{"event": ["SINGLE"]}',
        b'{"event": "SINGLE", "bowls": []}',
        b'{"event": "SINGLE", "bowls": ["left", "left"]}',
        b'{"event": "SINGLE", "bowls": ["LEFT"]}',
        b'{"event": "SINGLE", "bowls": [{"left": 1}]}',
        b'{"event": "SINGLE", "portion_ms": 0}',
        b'{"event": "SINGLE", "portion_ms": 2.5}',
        b'{"event": "SINGLE", "portion_ms": NaN}',
        b'{"event": "SINGLE", "portion_ms": Infinity}',
        b'{"event": "SINGLE", "portion_ms": false}',
        b'{"event": "SINGLE", "expires_at_ms": -1}',
        b'{"event": "SINGLE", "expires_at_ms": 1e20}',
        b'{"event": "SINGLE", "id": 12}',
        b'{"event": "SINGLE", "id": ""}',
        b'{"event": "SINGLE", "id": "caf\xc3\xa9"}',
        b'{"event": "SINGLE", "id": "' + b"x" * 129 + b'"}',
        b'{"event": "SINGLE", "portion_ms": 1' + b"0" * 5000 + b"}",
        b"[" * 100_000,
        b'{"event": "SINGLE"' + b" " * 5000 + b"}",
    ],
)
def test_malformed_without_a_usable_id_is_ignored(payload: bytes) -> None:
    decision = fl.Feeder().handle(payload, T0, True)
    assert decision.status == "ignored"
    assert decision.ack is None
    assert no_motor(decision)
    assert not decision.persist


def test_malformed_with_an_id_is_refused_and_acknowledged() -> None:
    feeder = fl.Feeder()
    decision = feeder.handle(b'{"id": "m", "event": "SINGLE", "portion_ms": "lots"}', T0, True)
    assert decision.status == "refused"
    assert decision.reason == "malformed: portion_ms"
    assert no_motor(decision)
    assert decode_dispensed(decision.ack).status is DispenseStatus.REFUSED
    fixed = feeder.handle(b'{"id": "m", "event": "SINGLE"}', T0, True)
    assert fixed.reason == "duplicate", "an id is decided once"


@pytest.mark.parametrize("payload", [None, 5, 1.5, ["SINGLE"], object()])
def test_non_bytes_are_ignored(payload: object) -> None:
    decision = fl.Feeder().handle(payload, T0, True)
    assert decision.status == "ignored"
    assert no_motor(decision)


def test_bytearray_memoryview_and_str_are_accepted() -> None:
    feeder = fl.Feeder({"cap_feeds": 10})
    for payload in (bytearray(b'{"event":"SINGLE"}'), memoryview(b'{"event":"SINGLE"}'), "{}"):
        feeder.handle(payload, T0, True)
    assert feeder.handle('{"event": "DOUBLE"}', T0, True).run == [("right", 10_000)]


@settings(max_examples=500)
@given(payload=st.binary(max_size=512))
def test_arbitrary_bytes_never_raise(payload: bytes) -> None:
    decision = fl.Feeder().handle(payload, T0, True)
    assert decision.status in {"served", "refused", "ignored"}
    if decision.status != "served":
        assert no_motor(decision)
    if decision.ack is not None:
        decode_dispensed(decision.ack)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=500)
@given(
    message=st.dictionaries(
        st.sampled_from(["id", "event", "bowls", "portion_ms", "expires_at_ms", "ttl_ms", "x"]),
        json_values,
    )
)
def test_arbitrary_json_objects_never_raise_and_runs_are_bounded(message: dict) -> None:
    payload = json.dumps(message).encode()
    decision = fl.Feeder({"max_run_ms": 20_000}).handle(payload, T0, True)
    for bowl, ms in decision.run:
        assert bowl in {"left", "right"}
        assert 0 < ms <= 20_000
    if decision.status != "served":
        assert no_motor(decision)
    if decision.ack is not None:
        try:
            report = decode_dispensed(decision.ack)
        except PayloadError as e:  # pragma: no cover - shown on failure
            pytest.fail(f"ack {decision.ack!r} does not decode: {e}")
        assert report.request_id == message.get("id")


# --- relative expiry (ttl_ms) --------------------------------------------------------------------


def with_ttl(payload: bytes, ttl_ms: object) -> bytes:
    data = json.loads(payload)
    data["ttl_ms"] = ttl_ms
    return json.dumps(data).encode()


@settings(max_examples=200)
@given(
    ttl_ms=st.integers(min_value=0, max_value=2**40),
    waited_ms=st.integers(min_value=0, max_value=2**30),
    synced=st.booleans(),
    expires_at_ms=st.integers(min_value=0, max_value=2 * T0),
)
def test_ttl_alone_decides_expiry(
    ttl_ms: int, waited_ms: int, synced: bool, expires_at_ms: int
) -> None:
    """With ttl_ms the absolute time and the clock's state never matter: only the ms waited
    since receipt, on arrival (0) and again before the run."""
    feeder = fl.Feeder({"hopper_ms": 100_000})
    payload = with_ttl(gateway_action(request(expires_at_ms=expires_at_ms)), ttl_ms)
    decision = feeder.handle(payload, T0, synced)
    if ttl_ms == 0:
        assert (decision.status, decision.reason) == ("refused", "expired")
        assert no_motor(decision)
        return
    assert decision.status == "served"
    assert feeder.food_capacity() == 97, "3 s of a 100 s hopper"
    assert json.loads(json.dumps(decision.work)) == decision.work, "kept in flash as JSON"
    later = feeder.recheck(decision.work, waited_ms, T0 + waited_ms, synced)
    if waited_ms < ttl_ms:
        assert later is None
    else:
        assert (later.status, later.reason, later.run) == ("refused", "expired", [])
        assert decode_dispensed(later.ack).reason == "expired"
        assert feeder.food_capacity() == 100, "the feed that never ran is not counted"


@pytest.mark.parametrize("bad", [-1, 1.5, "60000", True, [], {}])
def test_malformed_ttl_is_refused_as_malformed(bad: object) -> None:
    decision = fl.Feeder().handle(with_ttl(gateway_action(request()), bad), T0, True)
    assert (decision.status, decision.reason) == ("refused", "malformed: ttl_ms")
    assert no_motor(decision)
    assert decode_dispensed(decision.ack).reason == "malformed: ttl_ms"


def test_null_ttl_is_absent_and_the_absolute_time_applies() -> None:
    payload = with_ttl(gateway_action(request(expires_at_ms=T0 - 1)), None)
    assert fl.Feeder().handle(payload, T0, True).reason == "expired"
    assert fl.Feeder().handle(payload, 5_000, False).status == "served"


# --- the MicroPython harness, under CPython -------------------------------------------------------


def test_mpy_cases_pass_under_cpython() -> None:
    result = subprocess.run(
        [sys.executable, str(FIRMWARE / "mpy_cases.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith(" passed, 0 failed"), result.stdout


def test_logic_module_avoids_what_micropython_lacks() -> None:
    """The MicroPython run is the real check; this names the usual culprits on the host."""
    tree = ast.parse((FIRMWARE / "feeder_logic.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
        assert not isinstance(node, ast.JoinedStr), f"f-string at line {node.lineno}"
        if isinstance(node, ast.Constant):
            assert not isinstance(node.value, float), f"float at line {node.lineno}"
        assert not isinstance(node, ast.BinOp) or not isinstance(node.op, ast.Div), (
            f"true division (a float) at line {node.lineno}"
        )
    assert imported == {"json"}


# The glue (firmware/main.py) runs on the host with the real umqtt.simple, against a real
# broker through a fault proxy: tests/test_firmware_host.py.
