"""gateway/broker_plan.py and broker_setup.py without a broker: who may do what, the files'
text, validation, and the file writer's modes and idempotency (a re-run keeps every password)."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pytest

from gateway.broker_plan import (
    DEBIAN_MAIN_CONF,
    BrokerFiles,
    BrokerPlan,
    MqttButton,
    Role,
    TlsListener,
    acl_text,
    firmware_config,
    main_conf_problem,
    mosquitto_conf_text,
)
from gateway.broker_setup import main, write_broker_files
from gateway.errors import BrokerSetupError, GatewayError

ROOT = Path(__file__).resolve().parent.parent
ACTION = "cat-feeder/action"

needs_passwd = pytest.mark.skipif(
    shutil.which("mosquitto_passwd") is None, reason="mosquitto_passwd is not installed"
)


def plan(**kw: object) -> BrokerPlan:
    defaults: dict[str, object] = {
        "gateway_id": "kitchen-pi",
        "buttons": (
            MqttButton("desk", "fmfb/button/desk"),
            MqttButton("hallway", "zigbee2mqtt/hallway-button"),
        ),
        "zigbee2mqtt_base": "zigbee2mqtt",
    }
    return BrokerPlan(**{**defaults, **kw})  # type: ignore[arg-type]


def by_user(p: BrokerPlan) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    return {c.username: (c.write, c.read) for c in p.clients()}


def test_only_the_gateway_writes_action_and_only_the_feeder_writes_its_reports() -> None:
    users = by_user(plan())
    writers = {user for user, (write, _) in users.items() if ACTION in write}
    assert writers == {"fmfb-kitchen-pi-feeder"}
    for report in ("cat-feeder/dispensed", "cat-feeder/states", "cat-feeder/availability"):
        assert {u for u, (w, _) in users.items() if report in w} == {"cat-feeder"}
    assert users["fmfb-kitchen-pi-feeder"][1] == (
        "cat-feeder/dispensed",
        "cat-feeder/states",
        "cat-feeder/availability",
    )
    assert users["cat-feeder"][1] == (ACTION,)


def test_each_button_writes_its_own_topic_and_zigbee2mqtt_its_base() -> None:
    users = by_user(plan())
    assert users["button-desk"] == (("fmfb/button/desk",), ())
    # The zigbee2mqtt-served button has no user of its own: the bridge publishes it.
    assert "button-hallway" not in users
    assert users["zigbee2mqtt"] == (("zigbee2mqtt/#",), ("zigbee2mqtt/#",))
    assert users["fmfb-kitchen-pi-buttons"] == (
        (),
        ("fmfb/button/desk", "zigbee2mqtt/hallway-button"),
    )


def test_the_gateway_has_one_user_per_connection_named_as_its_client_ids() -> None:
    roles = {c.role: c.username for c in plan().clients()}
    # gateway/sinks/local_feeder.py and gateway/daemon.py use these client ids.
    assert roles[Role.GATEWAY_FEEDER] == "fmfb-kitchen-pi-feeder"
    assert roles[Role.GATEWAY_BUTTONS] == "fmfb-kitchen-pi-buttons"


def test_acl_text_grants_per_user_and_nothing_by_pattern() -> None:
    text = acl_text(plan(monitor_user="fmfb-monitor").clients())
    blocks = text.split("\nuser ")[1:]
    rules = {
        b.splitlines()[0]: [ln for ln in b.splitlines()[1:] if ln.startswith("topic")]
        for b in blocks
    }
    assert rules["fmfb-kitchen-pi-feeder"][0] == f"topic write {ACTION}"
    assert rules["cat-feeder"][-1] == f"topic read {ACTION}"
    assert rules["zigbee2mqtt"] == ["topic readwrite zigbee2mqtt/#"]
    assert rules["fmfb-monitor"] == ["topic read #"]
    assert "pattern" not in text  # no rule that applies to every user


def test_conf_locks_every_listener_down() -> None:
    files = BrokerFiles()
    tls = TlsListener(Path("/etc/fmfb/tls/ca.pem"), Path("/etc/fmfb/tls/b.pem"), Path("/k"))
    text = mosquitto_conf_text(plan(tls=tls), files)
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert "allow_anonymous false" in lines
    assert f"password_file {files.password_file}" in lines
    assert f"acl_file {files.acl_file}" in lines
    # A listener option: each listener has it, and nothing of the kind precedes the first.
    first_listener = lines.index("listener 1883")
    assert lines.index("use_username_as_clientid true") == first_listener + 1
    tls_listener = lines.index("listener 8883")
    assert lines[tls_listener + 1] == "use_username_as_clientid true"
    assert "certfile /etc/fmfb/tls/b.pem" in lines
    assert "allow_anonymous true" not in text


def test_listen_address_narrows_the_plain_listener() -> None:
    text = mosquitto_conf_text(plan(listen_address="127.0.0.1", port=11883), BrokerFiles())
    assert "listener 11883 127.0.0.1" in text.splitlines()


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"buttons": (MqttButton("evil", ACTION),)}, "feeder's topic"),
        ({"buttons": (MqttButton("w", "fmfb/#"),)}, "wildcards"),
        ({"buttons": (MqttButton("sp", "a b"),)}, "no spaces"),
        ({"buttons": (MqttButton("bad name", "x/y"),)}, "user name"),
        ({"zigbee2mqtt_base": "cat-feeder"}, "covers a feeder topic"),
        ({"feeder_user": "fmfb-kitchen-pi-feeder"}, "unique"),
        ({"gateway_id": "has:colon"}, "user name"),
    ],
)
def test_a_plan_that_would_open_a_hole_is_refused(
    change: dict[str, object], complaint: str
) -> None:
    with pytest.raises(BrokerSetupError, match=complaint) as info:
        plan(**change).clients()
    assert isinstance(info.value, GatewayError)


def test_button_spec_parsing() -> None:
    assert MqttButton.parse("desk=fmfb/button/desk") == MqttButton("desk", "fmfb/button/desk")
    with pytest.raises(BrokerSetupError):
        MqttButton.parse("desk")


def test_main_conf_problems() -> None:
    assert main_conf_problem(DEBIAN_MAIN_CONF) is None
    opened = DEBIAN_MAIN_CONF + "listener 1883 127.0.0.1\nallow_anonymous true\n"
    assert main_conf_problem(opened) == "it sets listener itself"
    no_include = DEBIAN_MAIN_CONF.replace("include_dir /etc/mosquitto/conf.d", "")
    assert main_conf_problem(no_include) == "it does not include /etc/mosquitto/conf.d"


def test_firmware_config_has_the_example_shape_and_the_feeders_credentials() -> None:
    example = json.loads((ROOT / "firmware" / "config.example.json").read_text(encoding="utf-8"))
    config = firmware_config(plan(), "s3cret", "192.168.1.20")

    def shape(value: object) -> object:
        if isinstance(value, dict):
            return {k: shape(v) for k, v in value.items()}
        return None

    assert shape(config) == shape(example)
    assert config["mqtt"] == {
        **example["mqtt"],
        "host": "192.168.1.20",
        "user": "cat-feeder",
        "password": "s3cret",
        "client_id": "cat-feeder",
    }
    tls = TlsListener(Path("/ca"), Path("/c"), Path("/k"))
    over_tls = firmware_config(plan(tls=tls), "pw", "pi.lan", use_tls=True)["mqtt"]
    assert (over_tls["port"], over_tls["tls"], over_tls["ca_file"]) == (8883, True, "ca.pem")


@needs_passwd
def test_write_broker_files_modes_and_a_rerun_keeps_passwords(tmp_path: Path) -> None:
    files = BrokerFiles()
    result = write_broker_files(plan(), root=tmp_path, broker_host="pi.lan")
    creds = tmp_path / "etc/fmfb/mqtt"
    users = [c.username for c in result.clients]
    first = {u: (creds / u).read_text(encoding="utf-8") for u in users}
    for u in users:
        assert stat.S_IMODE((creds / u).stat().st_mode) == 0o600
        assert len(first[u].strip()) >= 32
    assert len(set(first.values())) == len(users)  # one password each
    passwd = (tmp_path / "etc/mosquitto/fmfb/passwd").read_text(encoding="utf-8")
    assert [line.split(":")[0] for line in passwd.splitlines()] == users
    assert all(":$7$" in line for line in passwd.splitlines())  # hashed, never plaintext
    assert not any(p.strip() in passwd for p in first.values())
    assert stat.S_IMODE((tmp_path / "etc/mosquitto/fmfb/passwd").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "etc/mosquitto/fmfb/acl").stat().st_mode) == 0o640
    firmware = tmp_path / "etc/fmfb/mqtt/feeder-config.json"
    assert stat.S_IMODE(firmware.stat().st_mode) == 0o600
    assert json.loads(firmware.read_text())["mqtt"]["password"] == first["cat-feeder"].strip()
    main_conf = tmp_path / "etc/mosquitto/mosquitto.conf"
    assert main_conf.read_text(encoding="utf-8") == DEBIAN_MAIN_CONF
    assert result.main_conf_replaced == "there is none"
    assert files.password_file in result.written

    # Again, with one more button: old passwords stay, the new user gets one.
    again = write_broker_files(
        plan(buttons=(*plan().buttons, MqttButton("porch", "fmfb/button/porch"))),
        root=tmp_path,
    )
    assert {u: (creds / u).read_text(encoding="utf-8") for u in users} == first
    assert (creds / "button-porch").exists()
    assert again.main_conf_replaced is None
    assert not list((tmp_path / "etc/mosquitto/fmfb").glob(".*"))  # no temporary files left


@needs_passwd
def test_an_open_main_conf_is_replaced_and_kept_aside(tmp_path: Path) -> None:
    main_conf = tmp_path / "etc/mosquitto/mosquitto.conf"
    main_conf.parent.mkdir(parents=True)
    main_conf.write_text("listener 1883 127.0.0.1\nallow_anonymous true\n", encoding="utf-8")
    result = write_broker_files(plan(), root=tmp_path)
    assert result.main_conf_replaced == "it sets listener itself"
    assert main_conf.read_text(encoding="utf-8") == DEBIAN_MAIN_CONF
    kept = main_conf.with_name("mosquitto.conf.fmfb-orig").read_text(encoding="utf-8")
    assert "allow_anonymous true" in kept


@needs_passwd
def test_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "--root",
            str(tmp_path),
            "--gateway-id",
            "kitchen-pi",
            "--mqtt-button",
            "desk=fmfb/button/desk",
            "--broker-host",
            "192.168.1.20",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "user fmfb-kitchen-pi-feeder (gateway-feeder-link)" in out
    assert "user button-desk (button)" in out
    assert (tmp_path / "etc/mosquitto/conf.d/fmfb.conf").exists()
    assert main(["--root", str(tmp_path), "--gateway-id", "x", "--tls-cafile", "/ca"]) == 1
    assert "TLS needs" in capsys.readouterr().err
