"""Configuration: a TOML file validated by pydantic, with embedded defaults for every key.

``fmfb run`` with no ``--config`` runs on the defaults alone: a local state directory, the broker
on localhost, mock pins where there is no GPIO, no cloud sinks. An unknown key or a wrong type is
a :class:`~gateway.errors.ConfigError` that names the key (``policy.min_gap_s: ...``).
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)

from gateway.errors import ConfigError
from gateway.events import Bowl, ClickType, EventType, canonical_bowls
from gateway.home_config import (
    AlertsConfig,
    HomeAssistantConfig,
    ScheduleConfig,
    SchedulingConfig,
    unique_schedule_names,
)
from gateway.paths import StatePaths, default_state_dir, read_toml


class _Section(BaseModel):
    # Unknown keys are errors: a typo must not silently fall back to a default.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


PositiveInt = Annotated[int, Field(strict=True, gt=0)]
Port = Annotated[int, Field(strict=True, ge=1, le=65535)]


class TlsConfig(_Section):
    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None

    @model_validator(mode="after")
    def _pair(self) -> Self:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class BrokerConfig(_Section):
    """The local Mosquitto the feeder and MQTT buttons talk to.

    Credentials, two ways. A locked-down broker binds each client id to a user of the same
    name (gateway/broker_plan.py), and the gateway opens two connections (the feeder link and
    the buttons link), so each link needs its own user: ``credentials_dir`` names a folder
    holding one file per link, named for the link's client id, containing its password; the
    user is the client id. ``username``/``password`` is one user for every link: fine for a
    broker that does not bind client ids. The password is a SecretStr so that it is never
    printed (``fmfb config show``, a repr in a log line).
    """

    host: str = "127.0.0.1"
    port: Port = 1883
    username: str | None = None
    password: SecretStr | None = None
    credentials_dir: Path | None = None
    tls: TlsConfig | None = None
    keepalive_s: Annotated[int, Field(strict=True, ge=5, le=3600)] = 30
    client_id: str | None = None  # default: "fmfb-<gateway_id>-<role>"
    # Reconnect back-off (exponential with jitter, capped). Finite: TOML can spell inf and nan.
    reconnect_min_s: Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)] = 0.2
    reconnect_max_s: Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)] = 30.0

    @model_validator(mode="after")
    def _reconnect_order(self) -> Self:
        # Checked here so it names the keys, not later as the back-off's ValueError.
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s must not exceed reconnect_max_s")
        if self.credentials_dir is not None and (self.username or self.password):
            raise ValueError("credentials_dir or username/password, not both")
        return self

    def credentials(self, client_id: str) -> tuple[str | None, str | None]:
        """(user, password) for the link with ``client_id``, read now: a password changed on
        disk is used at the next connect. Raises ConfigError naming the file (never its
        content) if it cannot be read."""
        if self.credentials_dir is None:
            secret = self.password.get_secret_value() if self.password is not None else None
            return self.username, secret
        path = self.credentials_dir / client_id
        try:
            return client_id, path.read_text(encoding="utf-8").strip()
        except OSError as e:
            raise ConfigError(
                f"broker.credentials_dir: cannot read {path}: {e.strerror or e}"
            ) from e


class TopicsConfig(_Section):
    action: str = "cat-feeder/action"
    dispensed: str = "cat-feeder/dispensed"
    states: str = "cat-feeder/states"
    availability: str = "cat-feeder/availability"


class FeedingConfig(_Section):
    portion_ms: Annotated[int, Field(strict=True, gt=0, le=120_000)] = 10_000
    # How long a request stays valid: the broker drops it after this (MQTT 5 message expiry),
    # and a request still waiting in the journal after it is rejected as expired.
    expiry_s: Annotated[int, Field(strict=True, gt=0, le=86_400)] = 300
    # How long the feeder has to acknowledge before the request is journaled FeedUnconfirmed.
    ack_timeout_s: Annotated[int, Field(strict=True, gt=0, le=3600)] = 60
    clicks: dict[ClickType, list[Bowl]] = Field(
        default_factory=lambda: {
            ClickType.SINGLE: [Bowl.LEFT],
            ClickType.DOUBLE: [Bowl.RIGHT],
            ClickType.LONG: [Bowl.LEFT, Bowl.RIGHT],
        }
    )

    @field_validator("clicks")
    @classmethod
    def _all_clicks(cls, v: dict[ClickType, list[Bowl]]) -> dict[ClickType, list[Bowl]]:
        missing = [c.value for c in ClickType if c not in v]
        if missing:
            raise ValueError(f"every click type needs bowls; missing {', '.join(missing)}")
        for click, bowls in v.items():
            if not bowls or len(set(bowls)) != len(bowls):
                raise ValueError(f"{click.value}: a non-empty list of distinct bowls")
        return v

    def bowls_for(self, click: ClickType) -> tuple[Bowl, ...]:
        return canonical_bowls(self.clicks[click])

    def click_bowls(self) -> dict[ClickType, tuple[Bowl, ...]]:
        return {c: self.bowls_for(c) for c in ClickType}


class PolicyConfig(_Section):
    """Safety limits the gateway enforces before anything is journaled as requested."""

    cap_per_bowl: Annotated[int, Field(strict=True, gt=0, le=1000)] = 10
    cap_period_s: Annotated[int, Field(strict=True, gt=0, le=7 * 86_400)] = 86_400
    min_gap_s: Annotated[int, Field(strict=True, ge=0, le=86_400)] = 60


class ClassifierConfig(_Section):
    double_click_ms: Annotated[int, Field(strict=True, gt=0, le=5_000)] = 400
    hold_ms: Annotated[int, Field(strict=True, gt=0, le=30_000)] = 1_500


class GpioButtonConfig(_Section):
    name: Annotated[str, Field(min_length=1, max_length=64)]
    pin: str | int  # BCM number or a gpiozero pin name ("GPIO17", "BOARD11")
    pull_up: StrictBool = True
    bounce_ms: Annotated[int, Field(strict=True, ge=0, le=1_000)] = 30


class MqttButtonConfig(_Section):
    name: Annotated[str, Field(min_length=1, max_length=64)]
    topic: Annotated[str, Field(min_length=1)]

    @field_validator("topic")
    @classmethod
    def _no_wildcards(cls, v: str) -> str:
        if "#" in v or "+" in v:
            raise ValueError("a button topic names one button: no MQTT wildcards")
        return v


class ButtonsConfig(_Section):
    gpio: list[GpioButtonConfig] = Field(default_factory=list)
    mqtt: list[MqttButtonConfig] = Field(
        default_factory=lambda: [MqttButtonConfig(name="mqtt-button", topic="fmfb/button")]
    )
    # "auto": real pins on a Pi, gpiozero's MockFactory elsewhere; "mock": always mock.
    pin_factory: str = "auto"

    @model_validator(mode="after")
    def _unique_names(self) -> Self:
        names = [b.name for b in self.gpio] + [b.name for b in self.mqtt]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"button names must be unique; repeated: {', '.join(dupes)}")
        return self


class AwsConfig(_Section):
    """How the cloud sinks reach AWS (or a local emulator)."""

    region: str = "us-east-1"
    # A named profile of the standard boto3 chain; unset: environment, files, the usual order.
    profile: str | None = None


class CredentialsProviderConfig(_Section):
    """The AWS IoT credentials provider: the gateway's certificate traded for temporary keys
    through a role alias, so no long-lived AWS keys live on the Pi."""

    endpoint: Annotated[str, Field(min_length=1)]  # <prefix>.credentials.iot.<region>.amazonaws.com
    role_alias: Annotated[str, Field(min_length=1)]
    thing_name: Annotated[str, Field(min_length=1)]
    cert_file: Path
    key_file: Path
    ca_file: Path | None = None  # default: the system trust store
    port: Port = 443
    # Refresh this long before the temporary credentials expire.
    refresh_margin_s: Annotated[int, Field(strict=True, ge=10, le=3600)] = 300


EventTypeList = list[EventType] | None
Seconds = Annotated[float, Field(strict=True, gt=0, le=3600, allow_inf_nan=False)]


class SinkSettings(_Section):
    """What every sink section has: see docs/architecture.md, "Sinks"."""

    enabled: StrictBool = True
    # None: every event type. A list sends only those (the cursor passes over the rest).
    event_types: EventTypeList = None
    # "beginning": a new sink is hydrated with the whole history; "tail": only what comes next.
    start: Literal["beginning", "tail"] = "beginning"
    # The outage loop around deliveries: exponential back-off with jitter between these.
    retry_min_s: Seconds = 0.5
    retry_max_s: Seconds = 15.0

    @model_validator(mode="after")
    def _retry_order(self) -> Self:
        if self.retry_min_s > self.retry_max_s:
            raise ValueError("retry_min_s must not exceed retry_max_s")
        return self


class FeederSinkConfig(SinkSettings):
    """The local feeder: FeedRequested events to ``topics.action`` on the local broker."""

    # Old requests are history, not commands: a new feeder cursor starts at the tail.
    start: Literal["beginning", "tail"] = "tail"
    event_types: EventTypeList = Field(default_factory=lambda: [EventType.FEED_REQUESTED])


class EventBridgeConfig(SinkSettings):
    bus: str = "feedmyfurbabies"
    source: str = "com.feedmyfurbabies"
    endpoint_url: str | None = None  # a local emulator (moto) instead of AWS
    max_attempts: Annotated[int, Field(strict=True, ge=1, le=20)] = 5  # botocore retries/call
    timeout_s: Annotated[float, Field(strict=True, gt=0, le=120, allow_inf_nan=False)] = 10.0


class IotCoreConfig(SinkSettings):
    endpoint: Annotated[str, Field(min_length=1)]  # <prefix>-ats.iot.<region>.amazonaws.com
    port: Port = 8883
    cert_file: Path
    key_file: Path
    ca_file: Path | None = None  # default: the system trust store (slow to fail on a private CA)
    client_id: str | None = None  # default: the gateway id (the IoT thing name)
    # "{gateway_id}" is replaced by the gateway id.
    topic: str = "feedmyfurbabies/{gateway_id}/events"
    command_topic: str = "cat-feeder/action"  # remote feed commands from the cloud
    # AWS IoT Core allows about 100 publishes per second per connection.
    publish_rate_per_s: Annotated[float, Field(strict=True, gt=0, le=100, allow_inf_nan=False)] = (
        50.0
    )
    # awsiotsdk's SDK metrics (a username suffix): on for AWS, off for other brokers.
    metrics: StrictBool = True


class JsonlSinkConfig(SinkSettings):
    """Every event appended as one JSON line to a file, for log shippers (rotated by size)."""

    path: Path | None = None  # default: <state_dir>/events.jsonl
    max_bytes: Annotated[int, Field(strict=True, ge=4096)] = 16 * 1024 * 1024
    keep: Annotated[int, Field(strict=True, ge=0, le=1000)] = 5  # rotated files kept


class SinksConfig(_Section):
    """One section per sink, keyed by the sink's registry name (gateway/sinks/registry.py)."""

    feeder: FeederSinkConfig | None = Field(default_factory=FeederSinkConfig)
    eventbridge: EventBridgeConfig | None = None
    iot_core: IotCoreConfig | None = None
    jsonl: JsonlSinkConfig | None = None

    def configured(self) -> dict[str, SinkSettings]:
        """The enabled sinks' settings by name, in a stable order."""
        found: dict[str, SinkSettings] = {}
        for name in type(self).model_fields:
            section = getattr(self, name)
            if isinstance(section, SinkSettings) and section.enabled:
                found[name] = section
        return found


class CloudConfig(_Section):
    aws: AwsConfig = Field(default_factory=AwsConfig)
    credentials_provider: CredentialsProviderConfig | None = None
    # An id-less command that echoes one of our own presses back through the published
    # rule and Lambda arrives within this long, or it is taken as a real command.
    echo_window_s: Annotated[int, Field(strict=True, gt=0, le=86_400)] = 600


class MetricsConfig(_Section):
    """Prometheus metrics (gateway/metrics.py): both off by default."""

    # An HTTP endpoint (GET /metrics) on this port; loopback only unless ``address`` says so.
    port: Port | None = None
    address: str = "127.0.0.1"
    # A node_exporter textfile collector file (e.g.
    # /var/lib/prometheus/node-exporter/fmfb.prom), rewritten atomically every ``every_s``.
    textfile: Path | None = None
    every_s: Annotated[float, Field(strict=True, ge=1, le=3600, allow_inf_nan=False)] = 15.0


class Config(_Section):
    gateway_id: Annotated[str, Field(min_length=1, max_length=128)] = Field(
        default_factory=socket.gethostname
    )
    state_dir: Path = Field(default_factory=default_state_dir)
    journal_path: Path | None = None  # default: <state_dir>/journal.db
    control_socket: Path | None = None  # default: <state_dir>/control.sock
    log_level: str = "INFO"
    broker: BrokerConfig = Field(default_factory=BrokerConfig)
    topics: TopicsConfig = Field(default_factory=TopicsConfig)
    feeding: FeedingConfig = Field(default_factory=FeedingConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    classifier: ClassifierConfig = Field(default_factory=ClassifierConfig)
    buttons: ButtonsConfig = Field(default_factory=ButtonsConfig)
    sinks: SinksConfig = Field(default_factory=SinksConfig)
    cloud: CloudConfig = Field(default_factory=CloudConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    # Smart-home features (gateway/home_config.py): meals, Home Assistant, alerts.
    scheduling: SchedulingConfig = Field(default_factory=SchedulingConfig)
    schedule: list[ScheduleConfig] = Field(default_factory=list)
    home_assistant: HomeAssistantConfig = Field(default_factory=HomeAssistantConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)

    # Sentences naming the keys of an older file that were moved (see MOVED_KEYS).
    _deprecated: list[str] = PrivateAttr(default_factory=list)

    @property
    def deprecated(self) -> list[str]:
        return list(self._deprecated)

    @model_validator(mode="before")
    @classmethod
    def _old_keys(cls, data: Any) -> Any:
        return migrate_old_keys(data)

    _unique_schedules = field_validator("schedule")(unique_schedule_names)

    @field_validator("log_level")
    @classmethod
    def _level(cls, v: str) -> str:
        if v.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return v.upper()

    @property
    def paths(self) -> StatePaths:
        return StatePaths(
            self.state_dir,
            self.journal_path or self.state_dir / "journal.db",
            self.control_socket or self.state_dir / "control.sock",
        )

    @property
    def journal_file(self) -> Path:
        return self.paths.journal_file

    @property
    def control_path(self) -> Path:
        return self.paths.control_path


# Where keys of older config files went: (old path, new path). Old files keep working; each
# old key found is named once by `deprecations` (logged at start-up, shown by `config check`).
MOVED_KEYS: tuple[tuple[str, str], ...] = (
    ("cloud.eventbridge", "sinks.eventbridge"),
    ("cloud.iot_core", "sinks.iot_core"),
)


def migrate_old_keys(data: Any) -> Any:
    """Rewrite the keys of older config files into today's shape (pure; see MOVED_KEYS)."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    sinks = data.get("sinks")
    if isinstance(sinks, dict):
        sinks = dict(sinks)
        if isinstance(sinks.get("feeder"), bool):  # `feeder = true` before sink sections
            sinks["feeder"] = {"enabled": sinks["feeder"]}
        data["sinks"] = sinks
    cloud = data.get("cloud")
    if isinstance(cloud, dict):
        cloud = dict(cloud)
        for old, new in MOVED_KEYS:
            name = old.split(".")[1]
            if name in cloud:
                section = cloud.pop(name)
                target = dict(data.get("sinks") or {})
                if name in target:
                    raise ValueError(f"both [{old}] and [{new}] are set: keep only [{new}]")
                target[name] = section
                data["sinks"] = target
        data["cloud"] = cloud
    return data


def deprecations(data: dict[str, Any]) -> list[str]:
    """A sentence for each key of an older config file that still works but has moved."""
    found = []
    sinks = data.get("sinks")
    if isinstance(sinks, dict) and isinstance(sinks.get("feeder"), bool):
        found.append(
            "sinks.feeder = true|false is deprecated: write [sinks.feeder] enabled = true|false"
        )
    cloud = data.get("cloud")
    if isinstance(cloud, dict):
        for old, new in MOVED_KEYS:
            if old.split(".")[1] in cloud:
                found.append(f"[{old}] is deprecated: the same keys now go under [{new}]")
    return found


def _describe(e: ValidationError) -> str:
    lines = []
    for err in e.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see systemd/config.example.toml)"
        lines.append(f"{key}: {msg}")
    return "; ".join(lines)


def parse_config(data: dict[str, Any], *, source: str = "config") -> Config:
    try:
        config = Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"{source}: {_describe(e)}") from e
    config._deprecated = [f"{source}: {d}" for d in deprecations(data)]
    return config


def load_config(path: Path | None) -> Config:
    """The config at ``path``, or the embedded defaults when ``path`` is None."""
    if path is None:
        return parse_config({}, source="defaults")
    return parse_config(read_toml(path), source=str(path))
