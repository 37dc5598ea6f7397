"""The feed Lambda (infra/lambdas/feed_command.py) against moto's IoT data plane.

The handler runs in this process with the environment infra/ gives it; its boto3 client
publishes to moto's server (IOT_DATA_ENDPOINT), and the test reads the publish back from moto's
own record (moto keeps IoT data publishes in its process, which is this one). Refusals publish
nothing and raise RefusedRequestError with a message that names what was wrong.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from terraform_fixture import INFRA

sys.path.insert(0, str(INFRA / "lambdas"))
import feed_command
from feed_command import RefusedRequestError

from gateway.devstack.aws import MotoServer
from gateway.wire import decode_remote_command

TOPIC = "cat-feeder/action"
REMOTE = "com.feedmyfurbabies.remote"
GATEWAYS = "com.feedmyfurbabies"
TEST_EVENT = json.loads((INFRA / "lambdas" / "test-event.json").read_text(encoding="utf-8"))


def request(detail: dict[str, Any], **envelope: Any) -> dict[str, Any]:
    return {
        **TEST_EVENT,
        "id": envelope.pop("id", "2f1c3f4e-0000-4000-8000-000000000001"),
        "detail": detail,
        **envelope,
    }


@pytest.fixture
def published(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """The function's environment as infra/ sets it; moto's record of IoT publishes."""
    from moto.iotdata.models import iotdata_backends  # noqa: PLC0415

    moto.reset()
    for name, value in {
        "IOT_DATA_ENDPOINT": moto.url,
        "COMMAND_TOPIC": TOPIC,
        "FEED_REQUEST_SOURCE": REMOTE,
        "EVENT_SOURCE": GATEWAYS,
        "PUBLISH_EVERY_PRESS": "false",
        "COMMAND_EXPIRY_S": "300",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(feed_command, "_client", None)
    backend = iotdata_backends["123456789012"]["us-east-1"]

    class Record(list[Any]):
        def messages(self) -> list[tuple[str, dict[str, Any]]]:
            return [(t, json.loads(p)) for t, p in backend.published_payloads]

    record = Record()
    yield record


def test_a_feed_request_becomes_one_command_with_its_id_and_bowls(published: Any) -> None:
    answer = feed_command.handler(TEST_EVENT, None)
    assert answer == {"published": True, "topic": TOPIC, "id": TEST_EVENT["id"]}
    [(topic, message)] = published.messages()
    assert topic == TOPIC
    assert message == {
        "event": "SINGLE",
        "reportedTime": "2026-12-01T07:00:00.000Z",
        "id": TEST_EVENT["id"],
        "bowls": ["left"],
        "portion_ms": 10000,
        "expires_at_ms": 1_796_108_400_000 + 300_000,  # 2026-12-01T07:00:00Z + 300 s
    }
    # The gateway takes it as a command with an id: never an echo, deduplicated by the id.
    command = decode_remote_command(json.dumps(message).encode())
    assert command.request_id == TEST_EVENT["id"]
    assert [b.value for b in command.bowls or ()] == ["left"]


@pytest.mark.parametrize(
    ("bowls", "click"),
    [(["right"], "DOUBLE"), (["right", "left"], "LONG"), (["left", "right"], "LONG")],
)
def test_the_click_type_is_the_one_a_published_firmware_feeds_those_bowls_for(
    published: Any, bowls: list[str], click: str
) -> None:
    feed_command.handler(request({"bowls": bowls, "request_id": "mine-1"}), None)
    [(_, message)] = published.messages()
    assert message["event"] == click
    assert message["id"] == "mine-1"
    assert message["bowls"] == ["left", "right"] if click == "LONG" else bowls
    assert "portion_ms" not in message  # the gateway's configured portion applies


def test_a_redelivered_request_keeps_its_id(published: Any) -> None:
    """EventBridge retries with the same envelope id: the gateway sees one request twice."""
    feed_command.handler(TEST_EVENT, None)
    feed_command.handler(TEST_EVENT, None)
    ids = [m["id"] for _, m in published.messages()]
    assert ids == [TEST_EVENT["id"], TEST_EVENT["id"]]


@pytest.mark.parametrize(
    ("detail", "says"),
    [
        ({}, 'missing "bowls"'),
        ({"bowls": []}, "non-empty list"),
        ({"bowls": "left"}, "non-empty list"),
        ({"bowls": ["middle"]}, "unknown bowl 'middle'"),
        ({"bowls": ["left", "left"]}, "names a bowl twice"),
        ({"bowls": ["left"], "portion_ms": 0}, "portion_ms"),
        ({"bowls": ["left"], "portion_ms": 10.5}, "portion_ms"),
        ({"bowls": ["left"], "request_id": ""}, "request_id"),
        ({"bowls": ["left"], "request_id": "x" * 129}, "request_id"),
    ],
)
def test_a_bad_request_is_refused_with_a_clear_error_and_nothing_published(
    published: Any, detail: dict[str, Any], says: str
) -> None:
    with pytest.raises(RefusedRequestError, match=says.replace("(", r"\(")):
        feed_command.handler(request(detail), None)
    assert published.messages() == []


def test_a_gateways_own_press_is_refused_by_default(published: Any) -> None:
    press = {
        **TEST_EVENT,
        "source": GATEWAYS,
        "detail-type": "Feed Requested",
        "detail": {"click-type": "SINGLE", "bowls": ["left"], "origin": "button"},
    }
    with pytest.raises(RefusedRequestError, match="never sent back as a command"):
        feed_command.handler(press, None)
    assert published.messages() == []


@pytest.mark.parametrize(
    "event",
    [
        {**TEST_EVENT, "detail-type": "Feed Requested"},
        {**TEST_EVENT, "source": "com.example.other"},
        {**TEST_EVENT, "detail": "left"},
        {**TEST_EVENT, "time": "yesterday"},
    ],
)
def test_other_events_are_refused(published: Any, event: dict[str, Any]) -> None:
    with pytest.raises(RefusedRequestError):
        feed_command.handler(event, None)
    assert published.messages() == []


def test_publish_every_press_is_the_published_id_less_action(
    published: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUBLISH_EVERY_PRESS", "true")
    press = {
        **TEST_EVENT,
        "source": GATEWAYS,
        "detail-type": "Feed Requested",
        "time": "2026-12-01T07:00:01Z",
        "detail": {"click-type": "DOUBLE", "bowls": ["right"]},
    }
    started = {**press, "detail-type": "Gateway Started", "detail": {"version": "1"}}
    assert feed_command.handler(press, None)["published"] is True
    assert feed_command.handler(started, None) == {
        "published": False,
        "reason": "an event without a click type",
    }
    [(_, message)] = published.messages()
    # Exactly the published Lambda's message: what the gateway recognises as an echo.
    assert message == {"event": "DOUBLE", "reportedTime": "2026-12-01T07:00:01Z"}
    assert decode_remote_command(json.dumps(message).encode()).request_id is None


def test_the_readmes_put_events_command_is_a_request_the_lambda_takes(published: Any) -> None:
    """The README's paste-able `aws events put-events` asks for a feed this function makes."""
    readme = (INFRA.parent / "README.md").read_text(encoding="utf-8")
    entries_text = readme.split("aws events put-events --entries '", 1)[1].split("'", 1)[0]
    [entry] = json.loads(entries_text)
    assert entry["EventBusName"] == "feedmyfurbabies"
    event = {
        **TEST_EVENT,
        "source": entry["Source"],
        "detail-type": entry["DetailType"],
        "detail": json.loads(entry["Detail"]),
    }
    feed_command.handler(event, None)
    [(topic, message)] = published.messages()
    assert (topic, message["bowls"], message["id"]) == (TOPIC, ["left"], TEST_EVENT["id"])
