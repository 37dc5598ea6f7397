"""Configuration: embedded defaults, and every mistake a ConfigError naming the key (or the
file) so that a person can fix it."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from gateway.config import Config, default_state_dir, load_config, parse_config
from gateway.errors import ConfigError
from gateway.events import Bowl, ClickType, EventType

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "systemd" / "config.example.toml"


def error_of(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return str(info.value)


def nested(path: str, value: Any) -> dict[str, Any]:
    """``nested("a.b", 1)`` → ``{"a": {"b": 1}}``; a numeric part makes a one-item list."""
    parts = path.split(".")
    out: Any = value
    for i in range(len(parts) - 1, -1, -1):
        part = parts[i]
        if part.isdigit():
            continue
        if i + 1 < len(parts) and parts[i + 1].isdigit():
            out = [out]
        out = {part: out}
    return out


GPIO = {"name": "door", "pin": 17}
MQTT = {"name": "remote", "topic": "zigbee2mqtt/remote"}
TLS = {"ca_file": "/etc/fmfb/ca.pem"}


# --- defaults --------------------------------------------------------------------------------


def test_defaults_load_without_a_file() -> None:
    cfg = load_config(None)
    assert isinstance(cfg, Config)
    assert cfg.broker.host == "127.0.0.1"
    assert cfg.broker.port == 1883
    assert cfg.broker.tls is None
    assert cfg.topics.action == "cat-feeder/action"
    assert cfg.topics.dispensed == "cat-feeder/dispensed"
    assert cfg.topics.states == "cat-feeder/states"
    assert cfg.topics.availability == "cat-feeder/availability"
    assert cfg.feeding.click_bowls() == {
        ClickType.SINGLE: (Bowl.LEFT,),
        ClickType.DOUBLE: (Bowl.RIGHT,),
        ClickType.LONG: (Bowl.LEFT, Bowl.RIGHT),
    }
    assert cfg.policy.cap_per_bowl > 0
    assert cfg.sinks.feeder is not None and cfg.sinks.feeder.enabled
    assert cfg.sinks.feeder.start == "tail"  # old requests are history, not commands
    assert list(cfg.sinks.configured()) == ["feeder"]  # no cloud, no file sink by default
    assert cfg.deprecated == []
    assert cfg.buttons.gpio == []
    assert [b.name for b in cfg.buttons.mqtt] == ["mqtt-button"]
    assert cfg.gateway_id
    assert cfg.log_level == "INFO"


def test_an_empty_file_is_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("# nothing set\n", encoding="utf-8")
    assert load_config(path).policy == load_config(None).policy


def test_a_file_overrides_what_it_sets(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        'gateway_id = "kitchen-pi"\n'
        f'state_dir = "{tmp_path}"\n'
        "[policy]\nmin_gap_s = 120\n"
        '[feeding.clicks]\nSINGLE = ["right"]\nDOUBLE = ["left"]\nLONG = ["right", "left"]\n'
        '[[buttons.gpio]]\nname = "door"\npin = "GPIO17"\npull_up = false\n',
        encoding="utf-8",
    )
    cfg = load_config(path)
    assert cfg.gateway_id == "kitchen-pi"
    assert cfg.state_dir == tmp_path
    assert cfg.policy.min_gap_s == 120
    assert cfg.policy.cap_per_bowl == load_config(None).policy.cap_per_bowl
    assert cfg.feeding.bowls_for(ClickType.SINGLE) == (Bowl.RIGHT,)
    assert cfg.feeding.bowls_for(ClickType.LONG) == (Bowl.LEFT, Bowl.RIGHT)  # canonical order
    assert cfg.buttons.gpio[0].pin == "GPIO17"
    assert cfg.buttons.gpio[0].pull_up is False


def test_log_level_is_normalised_and_checked() -> None:
    assert parse_config({"log_level": "debug"}).log_level == "DEBUG"
    assert "log_level" in error_of({"log_level": "chatty"})


# --- unknown keys ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"gateway_idd": "x"}, "gateway_idd"),
        (nested("broker.hots", "x"), "broker.hots"),
        ({"broker": {"tls": {**TLS, "cert": "c"}}}, "broker.tls.cert"),
        (nested("topics.actions", "x"), "topics.actions"),
        (nested("feeding.portion", 1), "feeding.portion"),
        (nested("policy.min_gapp_s", 1), "policy.min_gapp_s"),
        (nested("classifier.hold", 1), "classifier.hold"),
        (nested("buttons.pin_factroy", "mock"), "buttons.pin_factroy"),
        ({"buttons": {"gpio": [{**GPIO, "pullup": True}]}}, "buttons.gpio.0.pullup"),
        ({"buttons": {"mqtt": [{**MQTT, "qos": 1}]}}, "buttons.mqtt.0.qos"),
        (nested("sinks.eventbrige", True), "sinks.eventbrige"),
    ],
)
def test_unknown_key_names_its_dotted_path(data: dict[str, Any], key: str) -> None:
    message = error_of(data)
    assert f"{key}: unknown key" in message


def test_error_names_every_bad_key() -> None:
    message = error_of({"policy": {"min_gapp_s": 1, "cap_per_bowl": "ten"}})
    assert "policy.min_gapp_s" in message
    assert "policy.cap_per_bowl" in message


# --- wrong types -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("policy.min_gap_s", "60"),
        ("policy.cap_per_bowl", True),
        ("policy.cap_period_s", 1.5),
        ("broker.port", "1883"),
        ("broker.keepalive_s", "30"),
        ("broker.reconnect_min_s", "fast"),
        ("feeding.portion_ms", "10000"),
        ("feeding.expiry_s", False),
        ("classifier.double_click_ms", "400"),
        ("classifier.hold_ms", 1.5),
        ("sinks.feeder", "yes"),
        ("sinks.feeder", 1),
        ("log_level", 5),
        ("topics.action", 5),
        ("gateway_id", 7),
    ],
)
def test_wrong_type_names_the_key(key: str, value: Any) -> None:
    assert f"{key}:" in error_of(nested(key, value))


@pytest.mark.parametrize(
    ("section", "item", "key"),
    [
        ("gpio", {**GPIO, "pull_up": "yes"}, "buttons.gpio.0.pull_up"),
        ("gpio", {**GPIO, "bounce_ms": "30"}, "buttons.gpio.0.bounce_ms"),
        ("gpio", {"name": "door"}, "buttons.gpio.0.pin"),
        ("mqtt", {"name": "remote", "topic": 5}, "buttons.mqtt.0.topic"),
        ("mqtt", {"name": "", "topic": "a/b"}, "buttons.mqtt.0.name"),
    ],
)
def test_wrong_button_field_names_the_key(section: str, item: dict[str, Any], key: str) -> None:
    assert f"{key}:" in error_of({"buttons": {section: [item]}})


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("policy.cap_per_bowl", 0),
        ("policy.min_gap_s", -1),
        ("broker.port", 0),
        ("broker.port", 65536),
        ("feeding.portion_ms", 0),
        ("broker.reconnect_min_s", 0.0),
    ],
)
def test_out_of_range_names_the_key(key: str, value: Any) -> None:
    assert f"{key}:" in error_of(nested(key, value))


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("key", ["broker.reconnect_min_s", "broker.reconnect_max_s"])
def test_reconnect_delays_must_be_finite(key: str, value: float) -> None:
    # TOML can spell nan and inf; an infinite back-off would never reconnect.
    assert f"{key}:" in error_of(nested(key, value))


def test_reconnect_min_must_not_exceed_max() -> None:
    # Caught here, naming the keys, rather than as a ValueError when the MQTT link starts.
    message = error_of({"broker": {"reconnect_min_s": 10.0, "reconnect_max_s": 1.0}})
    assert "broker" in message
    assert "reconnect_min_s" in message
    assert "reconnect_max_s" in message
    cfg = parse_config({"broker": {"reconnect_min_s": 2, "reconnect_max_s": 2}})
    assert cfg.broker.reconnect_min_s == cfg.broker.reconnect_max_s == 2


# --- files -----------------------------------------------------------------------------------


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[policy\nmin_gap_s = 1\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert "not valid TOML" in str(info.value)


def test_a_bad_key_in_a_file_names_the_file_and_the_key(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[policy]\nmin_gapp_s = 30\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: ")
    assert "policy.min_gapp_s" in str(info.value)


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert "cannot read" in str(info.value)


def test_a_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert str(tmp_path) in str(info.value)
    assert "cannot read" in str(info.value)


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    # A config saved as Latin-1 by an editor: a ConfigError naming the file, not a traceback.
    path = tmp_path / "latin1.toml"
    path.write_bytes('gateway_id = "cuisine-é"\n'.encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"policy\.min_gapp_s"):
        parse_config({"policy": {"min_gapp_s": 1}})


def test_source_names_where_the_data_came_from() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"nope": 1}, source="/etc/fmfb/config.toml")
    assert str(info.value).startswith("/etc/fmfb/config.toml: nope: unknown key")


# --- clicks ----------------------------------------------------------------------------------

ALL_CLICKS = {"SINGLE": ["left"], "DOUBLE": ["right"], "LONG": ["left", "right"]}


@pytest.mark.parametrize("missing", ["SINGLE", "DOUBLE", "LONG"])
def test_clicks_must_cover_every_click_type(missing: str) -> None:
    clicks = {k: v for k, v in ALL_CLICKS.items() if k != missing}
    message = error_of({"feeding": {"clicks": clicks}})
    assert "feeding.clicks" in message
    assert missing in message


@pytest.mark.parametrize("bowls", [[], ["left", "left"]], ids=["empty", "repeated"])
def test_clicks_need_distinct_non_empty_bowls(bowls: list[str]) -> None:
    message = error_of({"feeding": {"clicks": {**ALL_CLICKS, "DOUBLE": bowls}}})
    assert "feeding.clicks" in message
    assert "DOUBLE" in message


@pytest.mark.parametrize(
    ("clicks", "key"),
    [
        ({**ALL_CLICKS, "LONG": ["left", "middle"]}, "feeding.clicks.LONG"),
        ({**ALL_CLICKS, "TRIPLE": ["left"]}, "feeding.clicks.TRIPLE"),
        ({**ALL_CLICKS, "SINGLE": "left"}, "feeding.clicks.SINGLE"),
    ],
)
def test_clicks_with_unknown_names_name_the_key(clicks: dict[str, Any], key: str) -> None:
    assert key in error_of({"feeding": {"clicks": clicks}})


def test_a_click_may_feed_any_bowls() -> None:
    cfg = parse_config({"feeding": {"clicks": {**ALL_CLICKS, "SINGLE": ["right", "left"]}}})
    assert cfg.feeding.bowls_for(ClickType.SINGLE) == (Bowl.LEFT, Bowl.RIGHT)


# --- buttons ---------------------------------------------------------------------------------


@pytest.mark.parametrize("topic", ["zigbee2mqtt/+/action", "buttons/#", "#", "+"])
def test_mqtt_button_topic_wildcards_are_refused(topic: str) -> None:
    message = error_of({"buttons": {"mqtt": [{"name": "remote", "topic": topic}]}})
    assert "buttons.mqtt.0.topic" in message
    assert "wildcard" in message


def test_a_plain_button_topic_is_accepted() -> None:
    cfg = parse_config({"buttons": {"mqtt": [MQTT]}})
    assert cfg.buttons.mqtt[0].topic == "zigbee2mqtt/remote"


@pytest.mark.parametrize(
    "buttons",
    [
        {"gpio": [{"name": "door", "pin": 17}], "mqtt": [{"name": "door", "topic": "a/b"}]},
        {"gpio": [{"name": "door", "pin": 17}, {"name": "door", "pin": 27}]},
        {"mqtt": [{"name": "door", "topic": "a/b"}, {"name": "door", "topic": "a/c"}]},
    ],
    ids=["gpio-and-mqtt", "gpio-twice", "mqtt-twice"],
)
def test_button_names_must_be_unique(buttons: dict[str, Any]) -> None:
    message = error_of({"buttons": buttons})
    assert "buttons" in message
    assert "door" in message
    assert "unique" in message


def test_distinct_button_names_are_accepted() -> None:
    cfg = parse_config({"buttons": {"gpio": [GPIO], "mqtt": [MQTT]}})
    assert [b.name for b in cfg.buttons.gpio] == ["door"]
    assert [b.name for b in cfg.buttons.mqtt] == ["remote"]


# --- TLS -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tls",
    [{**TLS, "cert_file": "/c.pem"}, {**TLS, "key_file": "/k.pem"}],
    ids=["cert-only", "key-only"],
)
def test_tls_cert_and_key_go_together(tls: dict[str, str]) -> None:
    message = error_of({"broker": {"tls": tls}})
    assert "broker.tls" in message
    assert "cert_file and key_file" in message


def test_tls_with_both_or_neither_is_accepted() -> None:
    both = parse_config({"broker": {"tls": {**TLS, "cert_file": "/c", "key_file": "/k"}}})
    assert both.broker.tls is not None
    assert both.broker.tls.cert_file == Path("/c")
    neither = parse_config({"broker": {"tls": TLS}})
    assert neither.broker.tls is not None
    assert neither.broker.tls.cert_file is None


def test_tls_needs_a_ca_file() -> None:
    assert "broker.tls.ca_file" in error_of({"broker": {"tls": {}}})


# --- paths -----------------------------------------------------------------------------------


def test_journal_and_control_socket_default_under_state_dir(tmp_path: Path) -> None:
    cfg = parse_config({"state_dir": str(tmp_path)})
    assert cfg.journal_file == tmp_path / "journal.db"
    assert cfg.control_path == tmp_path / "control.sock"


def test_explicit_journal_and_control_paths_win(tmp_path: Path) -> None:
    cfg = parse_config(
        {
            "state_dir": str(tmp_path),
            "journal_path": "/srv/fmfb/ledger.db",
            "control_socket": "/run/fmfb/ctl.sock",
        }
    )
    assert cfg.journal_file == Path("/srv/fmfb/ledger.db")
    assert cfg.control_path == Path("/run/fmfb/ctl.sock")


def test_state_directory_from_systemd_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/fmfb:/var/lib/fmfb-extra")
    monkeypatch.setenv("XDG_STATE_HOME", "/home/pi/.state")
    assert default_state_dir() == Path("/var/lib/fmfb")
    cfg = parse_config({})
    assert cfg.state_dir == Path("/var/lib/fmfb")
    assert cfg.journal_file == Path("/var/lib/fmfb/journal.db")


def test_xdg_state_home_without_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", "/home/pi/.state")
    assert default_state_dir() == Path("/home/pi/.state/fmfb")


def test_home_fallback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "")  # set but empty: not a service
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_state_dir() == tmp_path / ".local" / "state" / "fmfb"


# --- the shipped example ---------------------------------------------------------------------


def test_the_example_config_is_accepted() -> None:
    data = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    cfg = parse_config(data, source=str(EXAMPLE))
    assert load_config(EXAMPLE) == cfg


# --- sink sections, and the keys of older files ------------------------------------------------


def test_every_sink_section_shares_the_follower_settings() -> None:
    cfg = parse_config(
        {
            "sinks": {
                "feeder": {"enabled": False},
                "jsonl": {"event_types": ["FeedRequested"], "start": "tail", "retry_max_s": 5},
                "eventbridge": {"retry_min_s": 0.1},
            }
        }
    )
    assert list(cfg.sinks.configured()) == ["eventbridge", "jsonl"]
    jsonl = cfg.sinks.jsonl
    assert jsonl is not None
    assert jsonl.event_types == [EventType.FEED_REQUESTED]
    assert jsonl.start == "tail"
    assert jsonl.retry_max_s == 5


@pytest.mark.parametrize(
    ("sinks", "key"),
    [
        ({"jsonl": {"retry_min_s": 10, "retry_max_s": 1}}, "sinks.jsonl"),
        ({"jsonl": {"max_bytes": 10}}, "sinks.jsonl.max_bytes"),
        ({"eventbridge": {"start": "middle"}}, "sinks.eventbridge.start"),
        ({"feeder": {"event_typo": []}}, "sinks.feeder.event_typo"),
        ({"kafka": {}}, "sinks.kafka"),
    ],
)
def test_bad_sink_settings_name_the_key(sinks: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"sinks": sinks})
    assert key in str(info.value)


def test_old_files_keep_working_and_say_what_moved(tmp_path: Path) -> None:
    path = tmp_path / "old.toml"
    path.write_text(
        '[sinks]\nfeeder = false\n\n[cloud.eventbridge]\nbus = "mine"\n\n'
        '[cloud.iot_core]\nendpoint = "e"\ncert_file = "c"\nkey_file = "k"\n',
        encoding="utf-8",
    )
    cfg = load_config(path)
    assert cfg.sinks.feeder is not None and not cfg.sinks.feeder.enabled
    assert cfg.sinks.eventbridge is not None and cfg.sinks.eventbridge.bus == "mine"
    assert cfg.sinks.iot_core is not None and cfg.sinks.iot_core.endpoint == "e"
    notes = " ".join(cfg.deprecated)
    assert "[cloud.eventbridge] is deprecated" in notes
    assert "[sinks.eventbridge]" in notes
    assert "[cloud.iot_core] is deprecated" in notes
    assert "sinks.feeder = true|false is deprecated" in notes
    assert str(path) in notes


def test_a_section_in_both_places_is_an_error() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"cloud": {"eventbridge": {}}, "sinks": {"eventbridge": {}}})
    assert "keep only [sinks.eventbridge]" in str(info.value)


# --- broker credentials per link ---------------------------------------------------------------


def test_credentials_dir_gives_each_link_its_own_user(tmp_path: Path) -> None:
    (tmp_path / "fmfb-gw-feeder").write_text("feeder-pw\n", encoding="utf-8")
    cfg = parse_config({"broker": {"credentials_dir": str(tmp_path)}})
    assert cfg.broker.credentials("fmfb-gw-feeder") == ("fmfb-gw-feeder", "feeder-pw")
    # Read at each call: a password changed on disk is used at the next connect.
    (tmp_path / "fmfb-gw-feeder").write_text("new-pw", encoding="utf-8")
    assert cfg.broker.credentials("fmfb-gw-feeder") == ("fmfb-gw-feeder", "new-pw")
    with pytest.raises(ConfigError, match=r"cannot read .*fmfb-gw-buttons"):
        cfg.broker.credentials("fmfb-gw-buttons")


def test_username_and_password_serve_every_link_and_never_print() -> None:
    cfg = parse_config({"broker": {"username": "gw", "password": "s3cret-pw"}})
    assert cfg.broker.credentials("any") == ("gw", "s3cret-pw")
    assert "s3cret-pw" not in repr(cfg) + cfg.model_dump_json()
    assert "credentials_dir or username/password" in error_of(
        {"broker": {"credentials_dir": "/x", "password": "p"}}
    )
