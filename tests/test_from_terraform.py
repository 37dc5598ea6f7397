"""``fmfb config from-terraform``: infra/'s outputs -> the gateway's cloud config. Pure parts
tested directly; the command through click's runner. (The end-to-end test in
test_infra_moto.py pipes a real ``terraform output -json`` into it.)"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from gateway.cli import main
from gateway.commands.from_terraform import (
    SECTION_PATHS,
    GatewayFiles,
    choose_thing,
    merge,
    outputs_from_json,
    place,
    render,
    toml_text,
)
from gateway.config import parse_config
from gateway.errors import ConfigError

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
OUTPUTS: dict[str, Any] = {
    "region": "eu-west-2",
    "bus_name": "feedmyfurbabies",
    "event_source": "com.feedmyfurbabies",
    "feed_request_source": "com.feedmyfurbabies.remote",
    "command_topic": "cat-feeder/action",
    "iot_data_endpoint": "abc123-ats.iot.eu-west-2.amazonaws.com",
    "credentials_endpoint": "xyz789.credentials.iot.eu-west-2.amazonaws.com",
    "role_alias": "fmfb-gateway",
    "gateways": {
        "kitchen-pi": {
            "thing_name": "kitchen-pi",
            "certificate_arn": "arn:aws:iot:eu-west-2:123456789012:cert/abc",
            "certificate_id": "abc",
            "certificate_pem": PEM,
            "events_topic": "feedmyfurbabies/kitchen-pi/events",
        }
    },
}
FILES = GatewayFiles(Path("/etc/fmfb/iot/cert.pem"), Path("/etc/fmfb/iot/key.pem"))


def section_of(config: Any, name: str) -> Any:
    """A rendered section in a parsed Config, wherever SECTION_PATHS puts it."""
    for key in SECTION_PATHS[name]:
        config = getattr(config, key)
    return config


def table_of(data: dict[str, Any], name: str) -> Any:
    """A rendered section in TOML data, wherever SECTION_PATHS puts it."""
    for key in SECTION_PATHS[name]:
        data = data[key]
    return data


def as_terraform_json(outputs: dict[str, Any]) -> str:
    return json.dumps(
        {k: {"sensitive": False, "type": "string", "value": v} for k, v in outputs.items()}
    )


def test_the_sections_are_rendered_from_the_outputs() -> None:
    sections = render(OUTPUTS, thing="kitchen-pi", files=FILES)
    assert sections == {
        "aws": {"region": "eu-west-2"},
        "eventbridge": {"bus": "feedmyfurbabies", "source": "com.feedmyfurbabies"},
        "credentials_provider": {
            "endpoint": "xyz789.credentials.iot.eu-west-2.amazonaws.com",
            "role_alias": "fmfb-gateway",
            "thing_name": "kitchen-pi",
            "cert_file": "/etc/fmfb/iot/cert.pem",
            "key_file": "/etc/fmfb/iot/key.pem",
        },
        "iot_core": {
            "endpoint": "abc123-ats.iot.eu-west-2.amazonaws.com",
            "cert_file": "/etc/fmfb/iot/cert.pem",
            "key_file": "/etc/fmfb/iot/key.pem",
            "client_id": "kitchen-pi",
            "topic": "feedmyfurbabies/kitchen-pi/events",
            "command_topic": "cat-feeder/action",
        },
    }
    # Whatever the gateway's own id, it connects as its thing and publishes to its topic.
    config = parse_config({"gateway_id": "other-name", **place(sections)})
    assert section_of(config, "iot_core").client_id == "kitchen-pi"
    assert section_of(config, "credentials_provider").role_alias == "fmfb-gateway"


def test_the_section_names_are_in_one_table() -> None:
    placed = place(render(OUTPUTS, thing="kitchen-pi", files=FILES))
    for name in SECTION_PATHS:
        assert table_of(placed, name), name


def test_without_a_gateway_only_the_bus_is_rendered() -> None:
    outputs = {**OUTPUTS, "gateways": {}}
    assert choose_thing(outputs, None) is None
    sections = render(outputs, thing=None, files=None, eventbridge_endpoint_url="http://x")
    assert set(sections) == {"aws", "eventbridge"}
    assert sections["eventbridge"]["endpoint_url"] == "http://x"


def test_the_thing_must_be_named_when_there_are_several() -> None:
    outputs = {**OUTPUTS, "gateways": {**OUTPUTS["gateways"], "garage-pi": {}}}
    with pytest.raises(ConfigError, match="several gateways"):
        choose_thing(outputs, None)
    with pytest.raises(ConfigError, match="no gateway 'attic'"):
        choose_thing(outputs, "attic")
    assert choose_thing(outputs, "garage-pi") == "garage-pi"


@pytest.mark.parametrize("missing", ["region", "bus_name", "role_alias", "iot_data_endpoint"])
def test_a_missing_output_is_named(missing: str) -> None:
    outputs = {k: v for k, v in OUTPUTS.items() if k != missing}
    with pytest.raises(ConfigError, match=repr(missing)):
        render(outputs, thing="kitchen-pi", files=FILES)


@pytest.mark.parametrize("text", ["", "[]", '{"region": "x"}', "{nope"])
def test_input_that_is_not_terraform_output_json_is_refused(text: str) -> None:
    with pytest.raises(ConfigError):
        outputs_from_json(text)


def test_merge_keeps_a_persons_other_keys() -> None:
    *parents, leaf = SECTION_PATHS["iot_core"]
    existing: dict[str, Any] = {"gateway_id": "kitchen-pi"}
    table = existing
    for key in parents:
        table = table.setdefault(key, {})
    table[leaf] = {"publish_rate_per_s": 20.0, "endpoint": "old"}
    placed = place(render(OUTPUTS, thing="kitchen-pi", files=FILES))
    merged = merge(existing, placed)
    assert merged["gateway_id"] == "kitchen-pi"
    assert table_of(merged, "iot_core")["publish_rate_per_s"] == 20.0
    assert table_of(merged, "iot_core")["endpoint"] == OUTPUTS["iot_data_endpoint"]


def test_the_toml_reads_back_as_the_same_data() -> None:
    data = {"a": 1, "b": {"c": 'x"y\\z', "d": [1, 2], "e": {"f": True}}, "g": [{"h": 1.5}]}
    assert tomllib.loads(toml_text(data)) == data


def test_the_command_prints_and_writes_the_sections(tmp_path: Path) -> None:
    runner = CliRunner()
    cert = tmp_path / "iot" / "cert.pem"
    args = ["config", "from-terraform", "--cert-file", str(cert), "--key-file", "key.pem"]
    printed = runner.invoke(main, args, input=as_terraform_json(OUTPUTS))
    assert printed.exit_code == 0, printed.output
    assert table_of(tomllib.loads(printed.output), "iot_core")["client_id"] == "kitchen-pi"
    assert not cert.exists()

    out = tmp_path / "config.toml"
    out.write_text('gateway_id = "kitchen-pi"\n[policy]\ncap_per_bowl = 4\n', encoding="utf-8")
    wrote = runner.invoke(
        main, [*args, "--write-cert", "--out", str(out)], input=as_terraform_json(OUTPUTS)
    )
    assert wrote.exit_code == 0, wrote.output
    assert cert.read_text(encoding="utf-8") == PEM
    config = parse_config(tomllib.loads(out.read_text(encoding="utf-8")))
    assert config.policy.cap_per_bowl == 4  # kept
    assert section_of(config, "eventbridge").bus == "feedmyfurbabies"
    assert section_of(config, "aws").region == "eu-west-2"


def test_the_command_names_what_is_wrong() -> None:
    runner = CliRunner()
    answer = runner.invoke(main, ["config", "from-terraform"], input=as_terraform_json(OUTPUTS))
    assert answer.exit_code == 1
    assert "--cert-file and --key-file are needed" in answer.output
    answer = runner.invoke(main, ["config", "from-terraform"], input="not json")
    assert answer.exit_code == 1
    assert "not JSON" in answer.output
