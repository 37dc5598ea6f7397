"""Home Assistant's MQTT discovery schemas, written key by key from its documentation
(home-assistant.io/integrations/{button,number,sensor,binary_sensor,device_trigger}.mqtt and
"MQTT Discovery"): the ``homeassistant`` package itself does not install here (its releases
need Python 3.13; the last for 3.11, 2024.3, is a 35 MB wheel with well over a hundred
dependencies), so these models stand in for its voluptuous validators.

Strict: a key Home Assistant does not know is an error (as it is for HA, which rejects the
whole config), required keys are required, and enumerations are HA's own lists.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Device(_Strict):
    configuration_url: str | None = None
    connections: list[list[str]] | None = None
    hw_version: str | None = None
    identifiers: list[str] | str | None = None
    manufacturer: str | None = None
    model: str | None = None
    model_id: str | None = None
    name: str | None = None
    serial_number: str | None = None
    suggested_area: str | None = None
    sw_version: str | None = None
    via_device: str | None = None

    @model_validator(mode="after")
    def _identified(self) -> Device:
        # HA: "A list of IDs that uniquely identify the device" — identifiers or connections.
        if not self.identifiers and not self.connections:
            raise ValueError("device needs identifiers or connections")
        return self


class Origin(_Strict):
    name: str
    sw_version: str | None = None
    support_url: str | None = None


class Availability(_Strict):
    topic: str
    payload_available: str | None = None
    payload_not_available: str | None = None
    value_template: str | None = None


EntityCategory = Literal["config", "diagnostic"]
Qos = Annotated[int, Field(ge=0, le=2)]


class _Entity(_Strict):
    """Keys every MQTT entity platform accepts."""

    availability: list[Availability] | None = None
    availability_mode: Literal["all", "any", "latest"] | None = None
    availability_template: str | None = None
    availability_topic: str | None = None
    default_entity_id: str | None = None
    device: Device | None = None
    enabled_by_default: bool | None = None
    encoding: str | None = None
    entity_category: EntityCategory | None = None
    entity_picture: str | None = None
    icon: str | None = None
    json_attributes_template: str | None = None
    json_attributes_topic: str | None = None
    name: str | None = None
    object_id: str | None = None
    origin: Origin | None = None
    payload_available: str | None = None
    payload_not_available: str | None = None
    platform: Literal["mqtt"] | None = None
    qos: Qos | None = None
    unique_id: str | None = None

    @model_validator(mode="after")
    def _one_availability(self) -> _Entity:
        # HA: availability and availability_topic are mutually exclusive.
        if self.availability is not None and self.availability_topic is not None:
            raise ValueError("availability and availability_topic are exclusive")
        return self


class Button(_Entity):
    command_template: str | None = None
    command_topic: str
    device_class: Literal["identify", "restart", "update"] | None = None
    payload_press: str | None = None
    retain: bool | None = None


class Number(_Entity):
    command_template: str | None = None
    command_topic: str
    device_class: str | None = None
    max: float | int | None = None
    min: float | int | None = None
    mode: Literal["auto", "box", "slider"] | None = None
    optimistic: bool | None = None
    payload_reset: str | None = None
    retain: bool | None = None
    state_topic: str | None = None
    step: float | int | None = Field(default=None, gt=0)
    unit_of_measurement: str | None = None
    value_template: str | None = None

    @model_validator(mode="after")
    def _range(self) -> Number:
        if self.min is not None and self.max is not None and self.min >= self.max:
            raise ValueError("min must be below max")
        return self


SensorDeviceClass = Literal[
    "apparent_power", "aqi", "atmospheric_pressure", "battery", "carbon_dioxide",
    "carbon_monoxide", "current", "data_rate", "data_size", "date", "distance", "duration",
    "energy", "energy_storage", "enum", "frequency", "gas", "humidity", "illuminance",
    "irradiance", "moisture", "monetary", "nitrogen_dioxide", "nitrogen_monoxide",
    "nitrous_oxide", "ozone", "ph", "pm1", "pm10", "pm25", "power", "power_factor",
    "precipitation", "precipitation_intensity", "pressure", "reactive_power",
    "signal_strength", "sound_pressure", "speed", "sulphur_dioxide", "temperature",
    "timestamp", "volatile_organic_compounds", "volatile_organic_compounds_parts", "voltage",
    "volume", "volume_flow_rate", "volume_storage", "water", "weight", "wind_speed",
]  # fmt: skip


class Sensor(_Entity):
    device_class: SensorDeviceClass | None = None
    expire_after: int | None = None
    force_update: bool | None = None
    last_reset_value_template: str | None = None
    options: list[str] | None = None
    suggested_display_precision: int | None = None
    state_class: Literal["measurement", "measurement_angle", "total", "total_increasing"] | None = (
        None
    )
    state_topic: str
    unit_of_measurement: str | None = None
    value_template: str | None = None

    @model_validator(mode="after")
    def _timestamp(self) -> Sensor:
        # HA refuses a unit or a state class on a timestamp sensor.
        if self.device_class == "timestamp" and (self.unit_of_measurement or self.state_class):
            raise ValueError("a timestamp sensor has no unit and no state_class")
        return self


BinarySensorDeviceClass = Literal[
    "battery", "battery_charging", "carbon_monoxide", "cold", "connectivity", "door",
    "garage_door", "gas", "heat", "light", "lock", "moisture", "motion", "moving", "occupancy",
    "opening", "plug", "power", "presence", "problem", "running", "safety", "smoke", "sound",
    "tamper", "update", "vibration", "window",
]  # fmt: skip


class BinarySensor(_Entity):
    device_class: BinarySensorDeviceClass | None = None
    expire_after: int | None = None
    force_update: bool | None = None
    off_delay: int | None = None
    payload_off: str | None = None
    payload_on: str | None = None
    state_topic: str
    value_template: str | None = None


class DeviceTrigger(_Strict):
    automation_type: Literal["trigger"]
    payload: str | None = None
    qos: Qos | None = None
    topic: str
    type: str
    subtype: str
    device: Device
    origin: Origin | None = None
    value_template: str | None = None


SCHEMAS: dict[str, type[BaseModel]] = {
    "button": Button,
    "number": Number,
    "sensor": Sensor,
    "binary_sensor": BinarySensor,
    "device_automation": DeviceTrigger,
}

# HA: <discovery_prefix>/<component>/[<node_id>/]<object_id>/config, ids of [a-zA-Z0-9_-].
TOPIC = r"^homeassistant/(button|number|sensor|binary_sensor|device_automation)/[A-Za-z0-9_-]+/[A-Za-z0-9_-]+/config$"  # noqa: E501


def validate(topic: str, payload: dict[str, Any]) -> BaseModel:
    """The payload parsed by its component's schema (ValidationError if HA would refuse it)."""
    component = topic.split("/")[1]
    return SCHEMAS[component].model_validate(payload)
