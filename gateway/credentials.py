"""AWS credentials for the cloud sinks, with no long-lived keys needed on the Pi.

``aws_session(cloud)`` returns a boto3 Session. By default it uses boto3's standard chain
(environment, shared files, a named profile), with the EC2 instance-metadata lookup disabled:
a home gateway must never ask 169.254.169.254. When ``[cloud.credentials_provider]`` is set,
the gateway's X.509 certificate is traded for temporary credentials through the AWS IoT
credentials provider (a role alias), refreshed before they expire.

The credentials provider (AWS IoT developer guide, "Authorizing direct calls to AWS services"):
``GET https://<endpoint>:<port>/role-aliases/<alias>/credentials`` over mutual TLS with the
thing's certificate and the header ``x-amzn-iot-thingname``; the answer is
``{"credentials": {"accessKeyId", "secretAccessKey", "sessionToken", "expiration"}}``, and an
error is a status with ``{"message": "..."}``.

Refresh timing. The session's credentials are botocore ``DeferredRefreshableCredentials``: the
first fetch happens on first use (a session can be made while the network is still down), and
botocore checks the expiry every time it signs a request. With ``m = refresh_margin_s``:

* less than ``m`` seconds left (botocore's *advisory* window): the next signing thread fetches
  new credentials; if that fails botocore logs a warning and signs with the old, still-valid
  ones, and the next request tries again;
* less than ``m / 2`` seconds left (the *mandatory* window), or none yet: every signing thread
  waits for the fetch, and a failure is raised to the caller as :class:`CredentialsError`.

So no request is ever signed with credentials inside the last ``m / 2`` seconds of their life.
Nothing refreshes while no request is made, and nothing needs to: the next request refreshes
before it signs. The fetch runs in the thread that signs (the sinks call boto3 off the event
loop).

Time. The Pi has no real-time clock, and NTP may step the wall clock by years after boot. The
lifetime of a set of credentials is measured on the provider's clock (``expiration`` minus its
``Date`` header; our wall clock only when that header is missing), and their expiry is then
tracked on the monotonic clock, so a wrong or stepping wall clock neither hides an expiry nor
causes needless refreshes.

boto3 is imported here, and this module only when a cloud sink is configured.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import logging
import os
import socket
import ssl
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from gateway.clock import Clock, SystemClock
from gateway.config import CloudConfig, CredentialsProviderConfig
from gateway.errors import CredentialsError
from gateway.redact import register_secret

log = logging.getLogger(__name__)

THING_NAME_HEADER = "x-amzn-iot-thingname"
# botocore: a credential provider that is not part of botocore names itself "custom-...".
PROVIDER_METHOD = "custom-iot-credentials-provider"
_MAX_BODY = 64 * 1024  # a real answer is about 1.5 KB
_FIELDS = ("accessKeyId", "secretAccessKey", "sessionToken", "expiration")

# What the provider's known messages mean (seen from AWS; the message is always quoted too).
_KNOWN_MESSAGES = {
    "invalid thing name passed": "thing {thing!r} is not attached to this certificate",
    "access denied": (
        "the certificate's IoT policy does not allow iot:AssumeRoleWithCertificate"
        " on role alias {alias!r}"
    ),
    "certificate is invalid on this endpoint": (
        "the certificate is not registered, or not active, in this account and region"
    ),
    "role alias does not exist": "no role alias {alias!r} in this account and region",
}
_STATUS_HINTS = {
    400: (
        "the provider could not assume the role behind role alias {alias!r} (the IAM role is"
        " missing, does not trust credentials.iot.amazonaws.com, or the alias asks for a longer"
        " duration than the role's maximum session)"
    ),
    401: "the provider did not accept the gateway's certificate",
    403: (
        "forbidden: the certificate is not registered or not active, thing {thing!r} is not"
        " attached to it, or its IoT policy does not allow iot:AssumeRoleWithCertificate on"
        " role alias {alias!r}"
    ),
    404: (
        "unknown role alias {alias!r} (or {endpoint} is not this account's"
        " iot:CredentialProvider endpoint)"
    ),
    429: "throttled by the provider: too many requests for credentials",
}


@dataclass(frozen=True)
class TemporaryCredentials:
    """One set of temporary AWS credentials from the provider (secrets kept out of repr)."""

    access_key: str
    secret_key: str = field(repr=False)
    token: str = field(repr=False)
    expiration: dt.datetime  # as the provider stated it (aware, UTC)
    # How long they were valid when issued, on the provider's own clock.
    lifetime_s: float = 0.0
    # Our monotonic clock when they arrived: with lifetime_s, when they expire here.
    received_mono_ms: int = 0

    def seconds_left(self, clock: Clock) -> float:
        """Seconds of validity left, measured on ``clock``'s monotonic time."""
        return self.lifetime_s - (clock.monotonic_ms() - self.received_mono_ms) / 1000


class IotCredentialsProvider:
    """Trades the gateway's certificate for temporary credentials (blocking: call off-loop).

    The certificate, key and CA files are read at every fetch, so a rotated certificate is
    picked up by the next refresh without a restart.
    """

    def __init__(
        self,
        cfg: CredentialsProviderConfig,
        clock: Clock | None = None,
        *,
        timeout_s: float = 10.0,
    ) -> None:
        self.cfg = cfg
        self.clock: Clock = clock or SystemClock()
        self.timeout_s = timeout_s
        self.path = f"/role-aliases/{quote(cfg.role_alias, safe='')}/credentials"
        self.url = f"https://{cfg.endpoint}:{cfg.port}{self.path}"

    def fetch(self) -> TemporaryCredentials:
        """New credentials, or :class:`CredentialsError` saying what went wrong."""
        context = self._ssl_context()
        conn = http.client.HTTPSConnection(
            self.cfg.endpoint, self.cfg.port, timeout=self.timeout_s, context=context
        )
        try:
            conn.request(
                "GET",
                self.path,
                headers={THING_NAME_HEADER: self.cfg.thing_name, "Accept": "application/json"},
            )
            response = conn.getresponse()
            body = response.read(_MAX_BODY + 1)
            received_mono_ms = self.clock.monotonic_ms()
            received_wall_ms = self.clock.now_ms()
            status, reason, date = response.status, response.reason, response.getheader("Date")
        except (OSError, http.client.HTTPException) as e:
            raise CredentialsError(f"{self.url}: {self._describe_failure(e)}") from e
        finally:
            conn.close()
        if status != 200:
            raise CredentialsError(
                f"{self.url}: HTTP {status} {reason}: {self._hint(status, body)}"
            )
        creds = self._parse(body, date, received_wall_ms, received_mono_ms)
        log.info(
            "temporary AWS credentials %s from role alias %s (thing %s): valid %.0f s",
            creds.access_key,
            self.cfg.role_alias,
            self.cfg.thing_name,
            creds.lifetime_s,
        )
        if creds.lifetime_s <= self.cfg.refresh_margin_s:
            log.warning(
                "credentials from role alias %s live %.0f s, not more than refresh_margin_s"
                " (%d s): every request will fetch new ones; lower refresh_margin_s or raise"
                " the alias's credentialDurationSeconds",
                self.cfg.role_alias,
                creds.lifetime_s,
                self.cfg.refresh_margin_s,
            )
        return creds

    # -- TLS --------------------------------------------------------------------------------

    def _ssl_context(self) -> ssl.SSLContext:
        cfg = self.cfg
        try:
            if cfg.ca_file is None:
                context = ssl.create_default_context()  # the system trust store
            else:
                context = ssl.create_default_context(cafile=_readable(cfg.ca_file, "ca_file"))
        except ssl.SSLError as e:
            raise CredentialsError(f"ca_file {cfg.ca_file}: not a PEM CA certificate ({e})") from e
        try:
            context.load_cert_chain(
                _readable(cfg.cert_file, "cert_file"), _readable(cfg.key_file, "key_file")
            )
        except ssl.SSLError as e:
            raise CredentialsError(
                f"cert_file {cfg.cert_file} / key_file {cfg.key_file}: not a matching PEM"
                f" certificate and private key ({e.reason or e})"
            ) from e
        return context

    def _describe_failure(self, e: BaseException) -> str:
        if isinstance(e, ssl.SSLError | ConnectionResetError | BrokenPipeError):
            return self._describe_tls_failure(e)
        cfg = self.cfg
        if isinstance(e, TimeoutError):
            return f"no answer within {self.timeout_s:g} s"
        if isinstance(e, ConnectionRefusedError):
            return "connection refused (nothing listens there: check endpoint and port)"
        if isinstance(e, socket.gaierror):
            return f"cannot resolve {cfg.endpoint!r}: {e.strerror or e}"
        if isinstance(e, OSError):
            return f"cannot reach the provider: {e.strerror or e}"
        return f"not a valid HTTP answer: {e!r}"

    def _describe_tls_failure(self, e: OSError) -> str:
        cfg = self.cfg
        refused_cert = (
            f"the provider refused the gateway's certificate {cfg.cert_file} (not issued by a"
            " CA it trusts, not registered, or revoked)"
        )
        if isinstance(e, ssl.SSLCertVerificationError):
            where = f"ca_file {cfg.ca_file}" if cfg.ca_file else "the system trust store"
            return (
                f"the provider's TLS certificate did not verify against {where}:"
                f" {e.verify_message or e.reason}"
            )
        reason = str(getattr(e, "reason", None) or "")
        if "ALERT" in reason:
            return f"TLS handshake refused ({reason}): {refused_cert}"
        if isinstance(e, ssl.SSLEOFError | ConnectionResetError | BrokenPipeError):
            # http.client's RemoteDisconnected is a ConnectionResetError.
            return f"the provider closed the connection without answering; perhaps {refused_cert}"
        return f"TLS failed: {reason or e}"

    # -- the answer -------------------------------------------------------------------------

    def _hint(self, status: int, body: bytes) -> str:
        message = _provider_message(body)
        fmt = {"thing": self.cfg.thing_name, "alias": self.cfg.role_alias}
        hint = _KNOWN_MESSAGES.get((message or "").strip().rstrip(".").lower())
        if hint is None:
            hint = _STATUS_HINTS.get(status)
        if hint is None:
            hint = (
                "the provider failed; it will be asked again"
                if status >= 500
                else "unexpected answer from the provider"
            )
        text = hint.format(**fmt, endpoint=self.cfg.endpoint)
        return f"{text} (provider says: {message!r})" if message else text

    def _parse(
        self, body: bytes, date: str | None, received_wall_ms: int, received_mono_ms: int
    ) -> TemporaryCredentials:
        def bad(why: str) -> CredentialsError:
            return CredentialsError(f"{self.url}: malformed answer from the provider: {why}")

        if len(body) > _MAX_BODY:
            raise bad(f"more than {_MAX_BODY} bytes")
        try:
            doc = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise bad(f"not JSON ({len(body)} bytes, starting {body[:40]!r})") from e
        creds = doc.get("credentials") if isinstance(doc, dict) else None
        if not isinstance(creds, dict):
            raise bad('no "credentials" object')
        missing = [k for k in _FIELDS if not isinstance(creds.get(k), str) or not creds[k]]
        if missing:
            raise bad(f"credentials lack {', '.join(missing)}")
        try:
            expiration = _utc(dt.datetime.fromisoformat(creds["expiration"]))
        except ValueError as e:
            raise bad(f"expiration {creds['expiration']!r} is not an ISO 8601 time") from e
        issued, clock_name = _provider_time(date), "the provider's clock (its Date header)"
        if issued is None:
            issued = dt.datetime.fromtimestamp(received_wall_ms / 1000, dt.UTC)
            clock_name = "the gateway's clock (the provider sent no Date header)"
        lifetime_s = (expiration - issued).total_seconds()
        if lifetime_s <= 0:
            raise CredentialsError(
                f"{self.url}: the provider's credentials are already expired: expiration"
                f" {expiration.isoformat()} is not after {issued.isoformat()} on {clock_name}"
            )
        return TemporaryCredentials(
            access_key=creds["accessKeyId"],
            secret_key=creds["secretAccessKey"],
            token=creds["sessionToken"],
            expiration=expiration,
            lifetime_s=lifetime_s,
            received_mono_ms=received_mono_ms,
        )


def _readable(path: Path, key: str) -> str:
    if not path.is_file():
        raise CredentialsError(f"{key} {path}: no such file")
    return str(path)


def _utc(when: dt.datetime) -> dt.datetime:
    # The provider writes UTC ("...Z"); a time without an offset is taken as UTC too.
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)


def _provider_time(date: str | None) -> dt.datetime | None:
    if not date:
        return None
    try:
        return _utc(parsedate_to_datetime(date))
    except (TypeError, ValueError):
        return None


def _provider_message(body: bytes) -> str | None:
    """The provider's ``{"message": ...}``, or a short excerpt of a non-JSON body."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        text = body[:200].decode("utf-8", "replace").strip()
        return text or None
    if isinstance(doc, dict):
        for key in ("message", "Message"):
            if isinstance(doc.get(key), str):
                return str(doc[key])
    return None


# -- botocore ---------------------------------------------------------------------------------


class _MonotonicTimeline:
    """Wall-clock-looking datetimes that advance with the monotonic clock.

    Anchored to the wall clock once, so that botocore's log lines show plausible times, but
    immune to the wall clock stepping afterwards.
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._wall_ms = clock.now_ms()
        self._mono_ms = clock.monotonic_ms()

    def at(self, mono_ms: float) -> dt.datetime:
        return dt.datetime.fromtimestamp((self._wall_ms + mono_ms - self._mono_ms) / 1000, dt.UTC)

    def now(self) -> dt.datetime:
        return self.at(self.clock.monotonic_ms())


def refreshable_credentials(provider: IotCredentialsProvider) -> Any:
    """botocore credentials backed by ``provider`` (see the module docstring for timing)."""
    from botocore.credentials import DeferredRefreshableCredentials  # noqa: PLC0415

    timeline = _MonotonicTimeline(provider.clock)

    def refresh() -> dict[str, str]:
        creds = provider.fetch()
        # botocore logs request headers at DEBUG: the new keys must be masked there too.
        register_secret(creds.secret_key)
        register_secret(creds.token)
        expires = timeline.at(creds.received_mono_ms + creds.lifetime_s * 1000)
        return {
            "access_key": creds.access_key,
            "secret_key": creds.secret_key,
            "token": creds.token,
            "expiry_time": expires.isoformat(),
        }

    credentials = DeferredRefreshableCredentials(
        refresh_using=refresh, method=PROVIDER_METHOD, time_fetcher=timeline.now
    )
    # DeferredRefreshableCredentials does not pass RefreshableCredentials' advisory_timeout
    # and mandatory_timeout through; these are the attributes those arguments set (botocore's
    # defaults, 15 and 10 minutes, would refresh a 15-minute credential on every request).
    # tests/test_credentials.py checks that a refresh happens exactly at the margin.
    margin = provider.cfg.refresh_margin_s
    credentials._advisory_refresh_timeout = margin
    credentials._mandatory_refresh_timeout = margin / 2
    return credentials


class _BotocoreProvider:
    """A botocore credential provider (duck-typed: ``METHOD`` and ``load()``)."""

    METHOD = PROVIDER_METHOD
    CANONICAL_NAME = "custom-iot-credentials-provider"

    def __init__(self, provider: IotCredentialsProvider) -> None:
        self.provider = provider

    def load(self) -> Any:
        return refreshable_credentials(self.provider)


def aws_session(cloud: CloudConfig, *, clock: Clock | None = None) -> Any:
    """A boto3 Session for ``cloud`` (typed Any: boto3 ships no type information).

    With ``[cloud.credentials_provider]`` its only credential source is the IoT credentials
    provider (no silent fall back to other keys; ``aws.profile`` is not used); otherwise
    boto3's standard chain, which may use ``aws.profile``.
    """
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    import boto3  # noqa: PLC0415 - only with a cloud sink

    if cloud.credentials_provider is None:
        return boto3.Session(region_name=cloud.aws.region, profile_name=cloud.aws.profile)

    import botocore.session  # noqa: PLC0415
    from botocore.credentials import CredentialResolver  # noqa: PLC0415

    if cloud.aws.profile is not None:
        log.warning(
            "aws.profile %r is not used: credentials come from the IoT credentials provider",
            cloud.aws.profile,
        )
    provider = IotCredentialsProvider(cloud.credentials_provider, clock)
    core = botocore.session.get_session()
    # The supported hook: the session asks its "credential_provider" component (a resolver
    # over a list of providers) on first use; ours is the only provider in it.
    core.register_component(
        "credential_provider", CredentialResolver([_BotocoreProvider(provider)])
    )
    return boto3.Session(botocore_session=core, region_name=cloud.aws.region)
