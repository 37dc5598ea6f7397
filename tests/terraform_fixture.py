"""Terraform for the infra tests: the real ``terraform`` binary on a copy of ``infra/``.

``terraform_infra`` (session): ``infra/`` copied to a temporary directory (never the repository's
own, where a person's real state may live), the Lambda package built into it, and
``terraform init`` run once, with ``TF_CLI_CONFIG_FILE`` pointing at the CLI configuration
``scripts/install-deps`` wrote (a local provider mirror when the machine has one). Every later
command runs in that copy with ``Terraform.run``, and reaches AWS only through
``AWS_ENDPOINT_URL`` (a local moto server), with test credentials and the metadata lookup off.

Without terraform on PATH the infra tests are skipped, except under CI (``CI`` set), where a
missing terraform is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
INFRA = REPO / "infra"
CLI_CONFIG = REPO / ".terraform-cli.tfrc"
CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"
TERRAFORM_TIMEOUT = 240.0

# Resources whose apply moto cannot serve: the provider reads their tags back and moto answers
# IoT's ListTagsForResource "not implemented", which the provider retries for minutes. They are
# covered by assertions on `terraform plan` (tests/test_infra_moto.py) instead.
NOT_APPLIED_ON_MOTO = ("aws_iot_policy", "aws_iot_policy_attachment", "aws_iot_role_alias")


def require_terraform() -> str:
    """The terraform binary; a skip outside CI when there is none, a failure under CI."""
    binary = shutil.which("terraform")
    if binary is None:
        message = "terraform is not on PATH (README: Deploy the cloud side, prerequisites)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}: CI must have it", pytrace=False)
        pytest.skip(message)
    if not CLI_CONFIG.is_file():
        pytest.fail(f"{CLI_CONFIG} is missing: run scripts/install-deps", pytrace=False)
    return binary


def base_env() -> dict[str, str]:
    """What every terraform command here runs with: nothing that leaves loopback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TF_"))}
    env.update(
        {
            "TF_CLI_CONFIG_FILE": str(CLI_CONFIG),
            "TF_IN_AUTOMATION": "1",
            "TF_INPUT": "0",
            "CHECKPOINT_DISABLE": "1",  # no version check with HashiCorp
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )
    return env


class Terraform:
    """``terraform -chdir=<copy of infra/> ...`` with a fixed environment."""

    def __init__(self, binary: str, root: Path, env: Mapping[str, str]) -> None:
        self.binary = binary
        self.root = root
        self.env = dict(env)

    def with_env(self, **extra: str) -> Terraform:
        return Terraform(self.binary, self.root, {**self.env, **extra})

    def run(
        self,
        *args: str,
        check: bool = True,
        stdin: str | None = None,
        timeout: float = TERRAFORM_TIMEOUT,
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.binary, f"-chdir={self.root}", *args],
            capture_output=True,
            text=True,
            env=self.env,
            input=stdin,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"terraform {' '.join(args)} exited {result.returncode}\n"
                f"--- stdout ---\n{result.stdout[-6000:]}\n--- stderr ---\n{result.stderr[-6000:]}"
            )
        return result

    def show_json(self, plan_file: Path) -> dict[str, Any]:
        shown: dict[str, Any] = json.loads(self.run("show", "-json", str(plan_file)).stdout)
        return shown

    def outputs(self) -> dict[str, Any]:
        """``terraform output -json`` as name -> value (the raw text: ``outputs_json``)."""
        return {k: v["value"] for k, v in json.loads(self.outputs_json()).items()}

    def outputs_json(self) -> str:
        return self.run("output", "-json").stdout


def copy_infra(destination: Path) -> Path:
    """``infra/`` without anything a person's own use left in it (plugins, state, builds)."""
    ignore = shutil.ignore_patterns(".terraform", "build", "*.tfstate*", "*.tfplan")
    shutil.copytree(INFRA, destination, ignore=ignore)
    return destination


def build_lambdas(root: Path) -> None:
    """The README's build command, on the copy."""
    subprocess.run(
        [sys.executable, str(root / "lambdas" / "build.py")], check=True, capture_output=True
    )


def write_tfvars(path: Path, values: Mapping[str, Any]) -> Path:
    """A ``.tfvars.json`` file (terraform reads JSON variables files as they are)."""
    path.write_text(json.dumps(values, indent=2), encoding="utf-8")
    return path


def addresses(plan: Mapping[str, Any]) -> list[str]:
    """Every managed resource the plan creates, by address."""
    return [
        change["address"]
        for change in plan.get("resource_changes", [])
        if change["mode"] == "managed" and "create" in change["change"]["actions"]
    ]


def targets_moto_can_apply(plan: Mapping[str, Any]) -> list[str]:
    return [a for a in addresses(plan) if resource_type(a) not in NOT_APPLIED_ON_MOTO]


def resource_type(address: str) -> str:
    """``module.x.aws_iot_policy.gateway["k"]`` -> ``aws_iot_policy``."""
    parts = address.split("[", 1)[0].split(".")
    return parts[-2]


def planned_resources(plan: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Address -> planned values, over the root module and every child module."""
    found: dict[str, dict[str, Any]] = {}

    def walk(module: Mapping[str, Any]) -> None:
        for resource in module.get("resources", []):
            found[resource["address"]] = resource.get("values", {})
        for child in module.get("child_modules", []):
            walk(child)

    walk(plan["planned_values"]["root_module"])
    return found


def one_of_type(plan: Mapping[str, Any], type_: str, name: str | None = None) -> dict[str, Any]:
    """The planned values of the one resource of ``type_`` (and ``name``)."""
    matches = [
        values
        for address, values in planned_resources(plan).items()
        if resource_type(address) == type_
        and (name is None or address.split("[", 1)[0].endswith(f".{name}"))
    ]
    assert len(matches) == 1, f"{len(matches)} planned {type_} {name or ''}"
    return matches[0]


def terraform_args(*args: str, var_files: Sequence[Path] = ()) -> list[str]:
    return [*args, *(f"-var-file={f}" for f in var_files)]


@pytest.fixture(scope="session")
def terraform_infra(tmp_path_factory: pytest.TempPathFactory) -> Terraform:
    """A copy of infra/, its Lambda built, ``terraform init`` done: shared by the session."""
    binary = require_terraform()
    root = copy_infra(tmp_path_factory.mktemp("tf") / "infra")
    build_lambdas(root)
    terraform = Terraform(binary, root, base_env())
    terraform.run("init", "-input=false", "-no-color")
    return terraform
