"""EventBridge's delivery to Lambda targets, for moto's server in this process.

moto's EventBridge delivers to log groups, archives, SQS and buses, but a Lambda target makes
``PutEvents`` raise NotImplementedError (and moto would need Docker to run a function). While
installed, ``LambdaTargets`` stands in for that one step: for every rule whose pattern matches
and that has a Lambda target, it invokes the function as EventBridge does — asynchronously,
with the event envelope — by running the function's configured handler (``Handler``, read from
moto's Lambda API: the one Terraform created) from the package Terraform uploaded, in a fresh
Python process with the function's own environment variables (also as Terraform set them).
Only the endpoints a local machine cannot reach are overridden (``env_overrides``).

Everything else moto delivers as it does. ``invocations`` records each delivery and its outcome.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.devstack.aws import AWS_TEST_ENV, MotoServer


@dataclass
class Invocation:
    function_arn: str
    event: dict[str, Any]
    done: threading.Event = field(default_factory=threading.Event)
    returncode: int | None = None
    result: Any = None
    stderr: str = ""


class LambdaTargets:
    def __init__(
        self, moto: MotoServer, package: Path, env_overrides: Mapping[str, str] | None = None
    ) -> None:
        self.moto = moto
        self.package = package
        self.env_overrides = dict(env_overrides or {})
        self.invocations: list[Invocation] = []
        self._lock = threading.Lock()
        self._original: Any = None

    # -- installing ---------------------------------------------------------------------------

    def __enter__(self) -> LambdaTargets:
        from moto.events.models import Rule  # noqa: PLC0415 - moto's in-process EventBridge

        owner = self
        original = Rule.send_to_targets
        self._original = original

        def send_to_targets(rule: Any, event: Any, transform_input: bool = True) -> None:
            lambdas = [t for t in rule.targets if ":lambda:" in t["Arn"]]
            if lambdas and rule.event_pattern.matches_event(event):
                for target in lambdas:
                    owner.deliver(target["Arn"], event)
            others = [t for t in rule.targets if t not in lambdas]
            if others:
                shadow = copy.copy(rule)
                shadow.targets = others
                original(shadow, event, transform_input)

        Rule.send_to_targets = send_to_targets
        return self

    def __exit__(self, *exc: object) -> None:
        from moto.events.models import Rule  # noqa: PLC0415

        Rule.send_to_targets = self._original

    # -- delivering ---------------------------------------------------------------------------

    def deliver(self, function_arn: str, event: Mapping[str, Any]) -> Invocation:
        """Invoke asynchronously (EventBridge does not wait for a Lambda target)."""
        invocation = Invocation(function_arn, envelope(event, function_arn))
        with self._lock:
            self.invocations.append(invocation)
        threading.Thread(
            target=self._invoke, args=(invocation,), name="lambda-target", daemon=True
        ).start()
        return invocation

    def _invoke(self, invocation: Invocation) -> None:
        try:
            config = self.moto.client("lambda").get_function_configuration(
                FunctionName=invocation.function_arn
            )
            module, function = config["Handler"].rsplit(".", 1)
            env = {
                "PATH": "/usr/bin:/bin",
                **AWS_TEST_ENV,
                **config.get("Environment", {}).get("Variables", {}),
                **self.env_overrides,
            }
            code = (
                "import json, sys\n"
                f"sys.path.insert(0, {str(self.package)!r})\n"
                f"from {module} import {function} as handler\n"
                "print(json.dumps(handler(json.load(sys.stdin), None)))\n"
            )
            done = subprocess.run(
                [sys.executable, "-c", code],
                input=json.dumps(invocation.event),
                capture_output=True,
                text=True,
                env=env,
                timeout=int(config.get("Timeout", 10)) + 20,
                check=False,
            )
            invocation.returncode = done.returncode
            invocation.stderr = done.stderr
            if done.returncode == 0:
                invocation.result = json.loads(done.stdout.strip().splitlines()[-1])
        except Exception as e:  # recorded for the test to see, as Lambda would log it
            invocation.returncode = -1
            invocation.stderr = repr(e)
        finally:
            invocation.done.set()

    def finished(self) -> list[Invocation]:
        with self._lock:
            return [i for i in self.invocations if i.done.is_set()]


def envelope(event: Mapping[str, Any], function_arn: str) -> dict[str, Any]:
    """The event as EventBridge hands it to a function: moto keeps ``time`` as epoch seconds
    internally and adds its own ``ingestion-time``; the real envelope has an RFC 3339 time and
    the account."""
    from datetime import UTC, datetime  # noqa: PLC0415

    out = {k: v for k, v in event.items() if k != "ingestion-time"}
    when = out.get("time")
    if isinstance(when, int | float):
        out["time"] = datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    elif isinstance(when, datetime):
        out["time"] = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    out.setdefault("account", function_arn.split(":")[4])
    return out
