"""Which sinks there are: a config section name → the class that delivers it.

Adding a sink is one module with a class taking ``(context, settings)``, one entry here and
its section in :class:`gateway.config.SinksConfig` (docs/architecture.md, "Adding a sink").
Modules are imported only when their section is configured and enabled, so boto3 and
awsiotsdk load only for the cloud sinks, and feeding works without them.
"""

from __future__ import annotations

import importlib
from typing import Any, Final

from gateway.sinks.base import Sink, SinkContext

SINKS: Final[dict[str, str]] = {
    "feeder": "gateway.sinks.local_feeder:LocalFeederSink",
    "eventbridge": "gateway.sinks.eventbridge:EventBridgeSink",
    "iot_core": "gateway.sinks.iot_core:IotCoreSink",
    "jsonl": "gateway.sinks.jsonl:JsonlSink",
}


def sink_class(section: str) -> Any:
    module, _, name = SINKS[section].partition(":")
    return getattr(importlib.import_module(module), name)


def build_sinks(context: SinkContext) -> list[Sink]:
    """Every configured and enabled sink, in the config's section order."""
    return [
        sink_class(section)(context, settings)
        for section, settings in context.config.sinks.configured().items()
    ]
