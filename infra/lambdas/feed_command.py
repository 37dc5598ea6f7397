"""The feed Lambda: a remote feed request on the bus becomes one feed command on IoT Core.

EventBridge invokes ``handler(event, context)`` with one event envelope (``id``, ``source``,
``detail-type``, ``time``, ``detail``, ...). What it does with it:

- A **feed request** (source ``FEED_REQUEST_SOURCE``, detail-type ``Feed Request``), detail::

      {"bowls": ["left"], "portion_ms": 10000, "request_id": "optional, 1-128 chars"}

  is published on ``COMMAND_TOPIC`` (QoS 1) as the gateway's action message::

      {"event": "SINGLE", "reportedTime": "...Z", "id": <request id>, "bowls": ["left"],
       "portion_ms": 10000, "expires_at_ms": <request time + COMMAND_EXPIRY_S>}

  The id is ``request_id`` if given, else the envelope's own ``id``, which EventBridge keeps
  across its retries: a request delivered twice is one id, and the gateway and the feeder drop
  the second. ``event`` is the click type the published firmware maps to those bowls, for a
  feeder without a gateway.
- A **gateway's own event** (source ``EVENT_SOURCE``) is refused, unless ``PUBLISH_EVERY_PRESS``
  is ``true`` (the published design's behaviour, opt-in): then an event with a ``click-type``
  becomes the published id-less ``{"event": click-type, "reportedTime": time}``, and one
  without (a lifecycle event, a feeder report) is skipped. The rules already keep gateway
  events away from this function by default; refusing them here too means a miswired rule
  cannot feed a cat.
- Anything else, and a request without bowls or with an unknown bowl, is refused with
  :class:`RefusedRequestError` naming what was wrong: nothing is published, the invocation fails,
  and after Lambda's retries the event lands in the dead-letter queue for a person to see.

Nothing beyond the runtime's standard library and boto3. ``test-event.json`` beside this file
is a feed request as EventBridge delivers it (the Lambda console's test event).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import Any

BOWLS = ("left", "right")
# The published firmware's click → bowls mapping (and the gateway's default).
CLICK_FOR_BOWLS = {("left",): "SINGLE", ("right",): "DOUBLE", ("left", "right"): "LONG"}
CLICK_TYPES = frozenset(CLICK_FOR_BOWLS.values())
FEED_REQUEST = "Feed Request"
MAX_REQUEST_ID_CHARS = 128  # what the gateway accepts (gateway/wire.py)
MAX_PORTION_MS = 120_000

_client: Any = None


class RefusedRequestError(ValueError):
    """The event is not a feed request this function may turn into a command."""


def _setting(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None:
        raise RuntimeError(f"the function's environment lacks {name} (set by infra/)")
    return value


def _iot_data() -> Any:
    """The IoT data-plane client, made once per container (on the account's ATS endpoint)."""
    global _client  # noqa: PLW0603 - one client per Lambda container, reused across invocations
    if _client is None:
        import boto3  # noqa: PLC0415 - the runtime's boto3; imported once, on first use

        endpoint = _setting("IOT_DATA_ENDPOINT")
        if "://" not in endpoint:
            endpoint = f"https://{endpoint}"
        _client = boto3.client("iot-data", endpoint_url=endpoint)
    return _client


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Publish the command for ``event``; what was published (or skipped) as a dict."""
    del context  # unused: everything the function needs is in the event and its environment
    message = command_for(
        event,
        feed_request_source=_setting("FEED_REQUEST_SOURCE"),
        event_source=_setting("EVENT_SOURCE"),
        publish_every_press=_setting("PUBLISH_EVERY_PRESS", "false") == "true",
        expiry_s=int(_setting("COMMAND_EXPIRY_S", "300")),
    )
    if message is None:
        return {"published": False, "reason": "an event without a click type"}
    topic = _setting("COMMAND_TOPIC")
    _iot_data().publish(topic=topic, qos=1, payload=json.dumps(message).encode())
    return {"published": True, "topic": topic, "id": message.get("id")}


def command_for(
    event: dict[str, Any],
    *,
    feed_request_source: str,
    event_source: str,
    publish_every_press: bool,
    expiry_s: int,
) -> dict[str, Any] | None:
    """The command message for ``event`` (pure); None for an event to skip."""
    if not isinstance(event, dict):
        raise RefusedRequestError("the event is not a JSON object")
    source = event.get("source")
    detail = event.get("detail")
    if not isinstance(detail, dict):
        raise RefusedRequestError("the event has no detail object")
    if source == feed_request_source:
        if event.get("detail-type") != FEED_REQUEST:
            raise RefusedRequestError(
                f"detail-type {event.get('detail-type')!r} from {source}: only {FEED_REQUEST!r}"
            )
        return _feed_command(event, detail, expiry_s)
    if source == event_source:
        if not publish_every_press:
            # The echo the gateway would otherwise have to recognise: never by default.
            raise RefusedRequestError(
                f"an event of the gateways' own source {source!r}: a gateway's press is never "
                "sent back as a command (publish_every_press is off)"
            )
        return _published_action(event, detail)
    raise RefusedRequestError(f"source {source!r} is neither feed requests nor the gateways")


def _feed_command(event: dict[str, Any], detail: dict[str, Any], expiry_s: int) -> dict[str, Any]:
    bowls = _bowls(detail)
    request_id = detail.get("request_id", event.get("id"))
    if not isinstance(request_id, str) or not 0 < len(request_id) <= MAX_REQUEST_ID_CHARS:
        raise RefusedRequestError(f"request_id must be 1..{MAX_REQUEST_ID_CHARS} characters")
    requested_ms = _time_ms(event)
    message: dict[str, Any] = {
        "event": CLICK_FOR_BOWLS[bowls],
        "reportedTime": _rfc3339(requested_ms),
        "id": request_id,
        "bowls": list(bowls),
        "expires_at_ms": requested_ms + expiry_s * 1000,
    }
    if "portion_ms" in detail:
        portion = detail["portion_ms"]
        if type(portion) is not int or not 0 < portion <= MAX_PORTION_MS:
            raise RefusedRequestError(f"portion_ms must be a whole number 1..{MAX_PORTION_MS}")
        message["portion_ms"] = portion
    return message


def _bowls(detail: dict[str, Any]) -> tuple[str, ...]:
    if "bowls" not in detail:
        raise RefusedRequestError('missing "bowls": say which bowls to feed, e.g. ["left"]')
    bowls = detail["bowls"]
    if not isinstance(bowls, list) or not bowls:
        raise RefusedRequestError('"bowls" must be a non-empty list, e.g. ["left", "right"]')
    for bowl in bowls:
        if bowl not in BOWLS:
            raise RefusedRequestError(f"unknown bowl {bowl!r}: the bowls are {', '.join(BOWLS)}")
    if len(set(bowls)) != len(bowls):
        raise RefusedRequestError(f'"bowls" names a bowl twice: {bowls}')
    return tuple(sorted(bowls, key=BOWLS.index))


def _published_action(event: dict[str, Any], detail: dict[str, Any]) -> dict[str, Any] | None:
    click = detail.get("click-type")
    if click is None:
        return None
    if click not in CLICK_TYPES:
        raise RefusedRequestError(f"click-type {click!r}: one of {', '.join(sorted(CLICK_TYPES))}")
    time = event.get("time")
    if not isinstance(time, str):
        raise RefusedRequestError("the event has no time")
    # Exactly the published Lambda's message: no id, the event's own (whole-second) time.
    return {"event": click, "reportedTime": time}


def _time_ms(event: dict[str, Any]) -> int:
    text = event.get("time")
    if not isinstance(text, str):
        raise RefusedRequestError("the event has no time")
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise RefusedRequestError(f"time {text!r} is not RFC 3339") from None
    if when.tzinfo is None:
        raise RefusedRequestError(f"time {text!r} has no zone")
    return int(when.timestamp() * 1000)


def _rfc3339(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{ms % 1000:03d}Z"
    )
