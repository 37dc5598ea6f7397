"""Secrets never reach a log line or ``fmfb config show``.

The end-to-end test runs the real daemon at DEBUG with real-looking AWS keys, a session token
and a broker password, lets the EventBridge sink deliver to moto (so botocore logs its signed
request headers), and greps everything the daemon wrote.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from daemon_process import DaemonProcess, run_fmfb, toml_text
from waiting import wait_for

from gateway import redact
from gateway.devstack.mosquitto import Mosquitto

ACCESS_KEY_ID = "ASIAQWERTYUIOPASDFGH"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzzSECRETkey"  # noqa: S105 - a test value, the thing to hide
SESSION_TOKEN = "IQoJb3JpZ2luX2VjEXAMPLEsessionTOKENthatIsLong=="  # noqa: S105
BROKER_PASSWORD = "broker-pw-Xy7Qp2"  # noqa: S105


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        # botocore's request dict and its signing steps, as logged at DEBUG.
        (f"headers: {{'X-Amz-Security-Token': '{SESSION_TOKEN}'}}", SESSION_TOKEN),
        (f"x-amz-security-token:{SESSION_TOKEN}\n", SESSION_TOKEN),
        (
            f"'Authorization': b'AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/20261201/us-east-1/"
            "events/aws4_request, SignedHeaders=host, Signature=0123456789abcdef0123'",
            "0123456789abcdef0123",
        ),
        (f"Credential={ACCESS_KEY_ID}/20261201", ACCESS_KEY_ID),
        (f'{{"secretAccessKey": "{SECRET_KEY}"}}', SECRET_KEY),
        (f"aws_secret_access_key={SECRET_KEY}", SECRET_KEY),
        (f"password='{BROKER_PASSWORD}'", BROKER_PASSWORD),
    ],
)
def test_secret_looking_values_are_masked(line: str, secret: str) -> None:
    cleaned = redact.redact(line)
    assert secret not in cleaned
    assert redact.MASK in cleaned


def test_a_registered_secret_is_masked_in_any_format() -> None:
    redact.register_secret("Zq9-unlabelled-secret")
    assert redact.redact("connect (u, Zq9-unlabelled-secret) failed") == (
        f"connect (u, {redact.MASK}) failed"
    )
    # Ordinary text is left alone.
    assert redact.redact("the password file /etc/fmfb/mqtt") == "the password file /etc/fmfb/mqtt"


def test_the_filter_masks_arguments_and_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(redact.RedactingFilter())
    record = logging.LogRecord(
        "botocore",
        logging.DEBUG,
        __file__,
        1,
        "sent %s",
        ({"X-Amz-Security-Token": SESSION_TOKEN},),
        None,
    )
    assert handler.filter(record)
    assert SESSION_TOKEN not in record.getMessage()


def test_config_show_hides_the_broker_password(tmp_path: Any) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        toml_text({"broker": {"username": "gw", "password": BROKER_PASSWORD}}), encoding="utf-8"
    )
    shown = run_fmfb("config", "show", "--config", config)
    assert shown.returncode == 0, shown.stderr
    assert '"username": "gw"' in shown.stdout
    assert BROKER_PASSWORD not in shown.stdout + shown.stderr
    assert '"password": "**********"' in shown.stdout


@pytest.mark.e2e
@pytest.mark.timeout(90)
def test_the_daemon_at_debug_logs_no_secret(
    broker: Mosquitto, feeds: Any, moto: Any, tmp_path: Any
) -> None:
    env = {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_SESSION_TOKEN": SESSION_TOKEN,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    daemon = DaemonProcess(
        broker.port,
        workdir=tmp_path / "d",
        extra_config={
            "log_level": "DEBUG",
            "broker": {"username": "gateway", "password": BROKER_PASSWORD},
            "sinks": {"eventbridge": {"endpoint_url": moto.url, "max_attempts": 1}},
        },
        env=env,
    )
    with daemon:
        daemon.start()
        wait_for(
            lambda: daemon.sink_status("eventbridge")["cursor"] >= 1,
            timeout=30,
            what="EventBridge to take GatewayStarted",
        )
        wait_for(
            lambda: daemon.sink_status("feeder")["connected"], timeout=30, what="the broker link"
        )
        assert daemon.stop() == 0
    log = daemon.stderr_text()
    # botocore did log its signed request at DEBUG: the test looks at the lines that matter.
    assert "x-amz-security-token" in log.lower(), log[-2000:]
    assert "Authorization" in log
    for secret in (SECRET_KEY, SESSION_TOKEN, BROKER_PASSWORD, ACCESS_KEY_ID):
        assert secret not in log, secret
