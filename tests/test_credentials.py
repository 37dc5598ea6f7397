"""gateway.credentials: the IoT credentials provider, refreshable botocore credentials, and the
standard chain. Everything runs against a local mutual-TLS stand-in on 127.0.0.1
(tests/credentials_server.py); a guard fails any test that tries to connect off loopback.
"""

from __future__ import annotations

import datetime
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from credentials_server import CredentialsServer
from waiting import wait_for

from gateway.clock import FixedClock
from gateway.config import CloudConfig, CredentialsProviderConfig
from gateway.credentials import (
    PROVIDER_METHOD,
    THING_NAME_HEADER,
    IotCredentialsProvider,
    aws_session,
)
from gateway.devstack.pki import Pki, make_pki
from gateway.errors import CloudError, CredentialsError

THING = "fmfb-test-gateway"
ALIAS = "fmfb-gateway"


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Refuse (and fail the test on) any connection that is not to loopback."""
    attempts: list[Any] = []
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def check(address: Any) -> None:
        if isinstance(address, tuple) and address[0] not in {"127.0.0.1", "::1", "localhost"}:
            attempts.append(address)
            raise OSError(f"test guard: no connections off loopback ({address!r})")

    def connect(self: socket.socket, address: Any) -> None:
        check(address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(address)
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    yield attempts
    assert attempts == [], f"tried to leave loopback: {attempts}"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"), client_id=THING)


@pytest.fixture
def server(pki: Pki) -> Iterator[CredentialsServer]:
    with CredentialsServer(pki, role_alias=ALIAS, thing_name=THING) as srv:
        yield srv


def provider_config(
    pki: Pki, server: CredentialsServer, **changes: Any
) -> CredentialsProviderConfig:
    fields: dict[str, Any] = {
        "endpoint": "127.0.0.1",
        "port": server.port,
        "role_alias": ALIAS,
        "thing_name": THING,
        "cert_file": pki.client_cert,
        "key_file": pki.client_key,
        "ca_file": pki.ca,
        "refresh_margin_s": 300,
    }
    fields.update(changes)
    return CredentialsProviderConfig(**fields)


def cloud(cfg: CredentialsProviderConfig | None) -> CloudConfig:
    return CloudConfig(credentials_provider=cfg)


def error_of(cfg: CredentialsProviderConfig, **kwargs: Any) -> str:
    with pytest.raises(CredentialsError) as info:
        IotCredentialsProvider(cfg, **kwargs).fetch()
    assert isinstance(info.value, CloudError)
    return str(info.value)


# -- fetching ---------------------------------------------------------------------------------


def test_fetch_sends_thing_name_with_client_certificate(pki: Pki, server: CredentialsServer):
    creds = IotCredentialsProvider(provider_config(pki, server)).fetch()

    [seen] = server.requests
    assert seen.path == f"/role-aliases/{ALIAS}/credentials"
    assert seen.thing_name == THING
    assert seen.client_cn == THING
    assert creds.access_key == seen.access_key
    assert creds.secret_key.startswith("secret-")
    assert creds.token.startswith("token-")
    assert creds.expiration.tzinfo == datetime.UTC
    assert creds.lifetime_s == 3600
    assert creds.secret_key not in repr(creds)
    assert creds.token not in repr(creds)
    assert THING_NAME_HEADER == "x-amzn-iot-thingname"


def test_lifetime_comes_from_the_providers_clock_not_a_wrong_wall_clock(
    pki: Pki, server: CredentialsServer
):
    # A Pi without a real-time clock may boot years off: the lifetime is expiration minus the
    # provider's Date header, and the expiry is tracked on the monotonic clock.
    for wall_ms in (0, 4_000_000_000_000):  # 1970 and 2096
        clock = FixedClock(now_ms=wall_ms)
        creds = IotCredentialsProvider(provider_config(pki, server), clock).fetch()
        assert creds.lifetime_s == 3600
        clock.advance(600_000)
        assert creds.seconds_left(clock) == 3000


def test_without_a_date_header_the_gateway_clock_judges_expiry(pki: Pki, server: CredentialsServer):
    server.send_date = False
    creds = IotCredentialsProvider(provider_config(pki, server)).fetch()
    assert 3590 < creds.lifetime_s <= 3600

    ahead = FixedClock(now_ms=4_000_000_000_000)
    message = error_of(provider_config(pki, server), clock=ahead)
    assert "already expired" in message
    assert "gateway's clock" in message


def test_already_expired_credentials_are_refused(pki: Pki, server: CredentialsServer):
    server.expiry_s = -5
    message = error_of(provider_config(pki, server))
    assert "already expired" in message
    assert "provider's clock" in message


# -- refusals and failures ------------------------------------------------------------------


def test_certificate_from_another_ca_is_refused(pki: Pki, server: CredentialsServer):
    cfg = provider_config(
        pki, server, cert_file=pki.other_client_cert, key_file=pki.other_client_key
    )
    message = error_of(cfg)
    assert "refused the gateway's certificate" in message
    assert str(pki.other_client_cert) in message
    wait_for(lambda: server.refused, what="the server to record the refused handshake")
    assert server.requests == []


def test_provider_certificate_not_in_the_trust_store(pki: Pki, server: CredentialsServer):
    message = error_of(provider_config(pki, server, ca_file=None))
    assert "did not verify against the system trust store" in message
    assert server.requests == []


def test_forbidden_carries_the_providers_message(pki: Pki, server: CredentialsServer):
    server.respond(403, {"message": "Access Denied"})
    message = error_of(provider_config(pki, server))
    assert "HTTP 403" in message
    assert "'Access Denied'" in message
    assert f"iot:AssumeRoleWithCertificate on role alias {ALIAS!r}" in message

    server.respond(403, {"message": "Something new from AWS"})
    message = error_of(provider_config(pki, server))
    assert "'Something new from AWS'" in message
    assert "forbidden" in message


def test_thing_not_attached_to_the_certificate(pki: Pki, server: CredentialsServer):
    message = error_of(provider_config(pki, server, thing_name="someone-else"))
    assert "HTTP 403" in message
    assert "thing 'someone-else' is not attached to this certificate" in message
    assert "'Invalid thing name passed'" in message
    [seen] = server.requests
    assert seen.thing_name == "someone-else"


def test_unknown_role_alias(pki: Pki, server: CredentialsServer):
    message = error_of(provider_config(pki, server, role_alias="no-such-alias"))
    assert "HTTP 404" in message
    assert "no role alias 'no-such-alias'" in message
    assert server.requests[0].path == "/role-aliases/no-such-alias/credentials"


def test_404_without_a_known_message_still_names_the_alias(pki: Pki, server: CredentialsServer):
    server.respond(404, b"")
    message = error_of(provider_config(pki, server))
    assert f"unknown role alias {ALIAS!r}" in message


def test_server_error_with_a_non_json_body(pki: Pki, server: CredentialsServer):
    server.respond(503, b"<html>Service Unavailable</html>")
    message = error_of(provider_config(pki, server))
    assert "HTTP 503" in message
    assert "Service Unavailable" in message


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"<html>not json</html>", "not JSON"),
        (b"", "not JSON"),
        (b"[1, 2]", 'no "credentials" object'),
        (b'{"Credentials": {}}', 'no "credentials" object'),
        (
            b'{"credentials": {"accessKeyId": "A", "secretAccessKey": "S"}}',
            "credentials lack sessionToken, expiration",
        ),
        (
            b'{"credentials": {"accessKeyId": "", "secretAccessKey": "S", "sessionToken": "T",'
            b' "expiration": "2099-01-01T00:00:00Z"}}',
            "credentials lack accessKeyId",
        ),
        (
            b'{"credentials": {"accessKeyId": "A", "secretAccessKey": "S", "sessionToken": "T",'
            b' "expiration": "tomorrow"}}',
            "'tomorrow' is not an ISO 8601 time",
        ),
        (b"x" * (64 * 1024 + 1), "more than 65536 bytes"),
    ],
)
def test_malformed_answers(pki: Pki, server: CredentialsServer, body: bytes, expected: str):
    server.respond(200, body)
    message = error_of(provider_config(pki, server))
    assert "malformed answer" in message
    assert expected in message


def test_connection_refused(pki: Pki, server: CredentialsServer):
    with socket.socket() as held:  # bound, never listening: connecting is refused
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        message = error_of(provider_config(pki, server, port=port))
    assert "connection refused" in message
    assert f"127.0.0.1:{port}" in message


def test_no_answer_times_out(pki: Pki, server: CredentialsServer):
    with socket.socket() as silent:  # listens, never accepts: the handshake never completes
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        message = error_of(provider_config(pki, server, port=port), timeout_s=0.2)
    assert "no answer within 0.2 s" in message


def test_missing_certificate_file(pki: Pki, server: CredentialsServer, tmp_path: Path):
    message = error_of(provider_config(pki, server, cert_file=tmp_path / "nope.pem"))
    assert f"cert_file {tmp_path / 'nope.pem'}: no such file" in message
    message = error_of(provider_config(pki, server, key_file=pki.other_client_key))
    assert "not a matching PEM certificate and private key" in message
    assert server.requests == []


# -- the boto3 session ------------------------------------------------------------------------


def frozen(session: Any) -> Any:
    return session.get_credentials().get_frozen_credentials()


def test_session_credentials_come_from_the_provider(pki: Pki, server: CredentialsServer):
    session = aws_session(cloud(provider_config(pki, server)))
    assert server.requests == []  # deferred: made while offline, fetched on first use
    assert session.region_name == "us-east-1"

    creds = frozen(session)
    [seen] = server.requests
    assert creds.access_key == seen.access_key
    assert creds.secret_key.startswith("secret-1-")
    assert creds.token.startswith("token-1-")
    assert session.get_credentials().method == PROVIDER_METHOD
    assert frozen(session).access_key == creds.access_key
    assert len(server.requests) == 1  # not due: no second request
    assert os.environ["AWS_EC2_METADATA_DISABLED"] == "true"


def test_refresh_happens_refresh_margin_before_expiry(pki: Pki, server: CredentialsServer):
    server.expiry_s = 900
    clock = FixedClock()
    session = aws_session(cloud(provider_config(pki, server, refresh_margin_s=300)), clock=clock)
    first = frozen(session)

    clock.advance((900 - 300 - 1) * 1000)  # 301 s left: not yet due
    assert frozen(session).access_key == first.access_key
    assert len(server.requests) == 1

    clock.advance(2000)  # 299 s left: due
    second = frozen(session)
    assert len(server.requests) == 2
    assert second.access_key == server.requests[1].access_key != first.access_key
    assert second.secret_key != first.secret_key
    assert second.token != first.token

    clock.advance((900 - 300 - 1) * 1000)  # the new ones are counted from their arrival
    assert frozen(session).access_key == second.access_key
    assert len(server.requests) == 2


def test_failed_refresh_keeps_valid_credentials_then_fails_when_mandatory(
    pki: Pki, server: CredentialsServer, caplog: pytest.LogCaptureFixture
):
    server.expiry_s = 900
    clock = FixedClock()
    session = aws_session(cloud(provider_config(pki, server, refresh_margin_s=300)), clock=clock)
    first = frozen(session)

    server.respond(503, {"message": "try later"})
    clock.advance((900 - 200) * 1000)  # 200 s left: advisory window (under 300, over 150)
    assert frozen(session).access_key == first.access_key  # old ones, still valid
    assert len(server.requests) == 2
    assert "advisory refresh period" in caplog.text

    clock.advance(60_000)  # 140 s left: mandatory window (under 150)
    with pytest.raises(CredentialsError, match=r"HTTP 503.*try later"):
        frozen(session)
    assert len(server.requests) == 3

    server.respond(None)  # the provider is back: the next use refreshes
    assert frozen(session).access_key == server.requests[3].access_key != first.access_key


def test_credentials_shorter_than_the_margin_refresh_on_every_use(
    pki: Pki, server: CredentialsServer, caplog: pytest.LogCaptureFixture
):
    # Real clocks: 5-second credentials with a 10-second margin are due at once.
    server.expiry_s = 5
    session = aws_session(cloud(provider_config(pki, server, refresh_margin_s=10)))
    first = frozen(session)
    second = frozen(session)
    assert len(server.requests) == 2
    assert second.access_key != first.access_key
    assert "not more than refresh_margin_s" in caplog.text


class _SentError(Exception):
    pass


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def test_client_signs_with_the_refreshed_credentials(pki: Pki, server: CredentialsServer):
    server.expiry_s = 900
    clock = FixedClock()
    session = aws_session(cloud(provider_config(pki, server, refresh_margin_s=300)), clock=clock)
    client = session.client("events", endpoint_url="http://127.0.0.1:9")
    assert server.requests == []
    signed: list[dict[str, str]] = []

    def capture(request: Any, **_: Any) -> None:
        signed.append({k: _text(v) for k, v in request.headers.items()})
        raise _SentError  # stop before any network

    client.meta.events.register("before-send.events.PutEvents", capture)
    entry = {"Source": "com.feedmyfurbabies", "DetailType": "t", "Detail": "{}"}
    for _ in range(2):
        with pytest.raises(_SentError):
            client.put_events(Entries=[entry])
        clock.advance(601_000)

    keys = [r.access_key for r in server.requests]
    assert len(keys) == 2
    for headers, key in zip(signed, keys, strict=True):
        assert f"Credential={key}/" in headers["Authorization"]
        assert headers["X-Amz-Security-Token"].startswith("token-")


def test_session_fetch_failure_is_a_credentials_error(pki: Pki, server: CredentialsServer):
    cfg = provider_config(
        pki, server, cert_file=pki.other_client_cert, key_file=pki.other_client_key
    )
    session = aws_session(cloud(cfg))
    with pytest.raises(CredentialsError, match="refused the gateway's certificate"):
        frozen(session)


# -- the standard chain -----------------------------------------------------------------------


@pytest.fixture
def bare_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No AWS variables, no shared files, and the metadata switch off."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    return monkeypatch


def test_standard_chain_uses_the_environment(bare_environment: pytest.MonkeyPatch):
    bare_environment.setenv("AWS_ACCESS_KEY_ID", "AKIAENVIRONMENT")
    bare_environment.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")

    session = aws_session(CloudConfig())

    assert os.environ["AWS_EC2_METADATA_DISABLED"] == "true"
    creds = frozen(session)
    assert (creds.access_key, creds.secret_key, creds.token) == (
        "AKIAENVIRONMENT",
        "env-secret",
        None,
    )
    assert session.get_credentials().method == "env"


def test_standard_chain_with_nothing_never_asks_instance_metadata(
    bare_environment: pytest.MonkeyPatch, loopback_only: list[Any]
):
    session = aws_session(CloudConfig())
    assert os.environ["AWS_EC2_METADATA_DISABLED"] == "true"
    assert session.get_credentials() is None
    assert loopback_only == []  # 169.254.169.254 was never tried


def test_the_loopback_guard_sees_an_instance_metadata_lookup(
    bare_environment: pytest.MonkeyPatch, loopback_only: list[Any]
):
    # Proves the guard above is what it claims: with the switch off, botocore's chain does
    # try 169.254.169.254 (refused here before anything leaves the machine).
    import botocore.session  # noqa: PLC0415

    bare_environment.setenv("AWS_EC2_METADATA_DISABLED", "false")
    assert botocore.session.get_session().get_credentials() is None
    assert any(address[0] == "169.254.169.254" for address in loopback_only)
    loopback_only.clear()


def test_importing_the_module_does_not_import_boto3():
    code = (
        "import sys, gateway.credentials; "
        "assert not {'boto3', 'botocore'} & set(sys.modules), sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
