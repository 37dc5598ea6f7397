"""infra/ without any AWS: formatting, validation, checkov, and the Lambda's package.

checkov runs from its own virtualenv (scripts/install-deps makes .venv-checkov: it pins a
``packaging`` that the project's pytest refuses). Every check it skips is skipped inline, in
the resource, with the reason, and this test holds every skip to having one.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from terraform_fixture import CHECKOV, INFRA, Terraform, base_env, require_terraform

SKIP_COMMENT = re.compile(r"#\s*checkov:skip=(?P<id>[A-Z0-9_]+)(?::(?P<reason>.*))?")


def test_terraform_fmt_check() -> None:
    binary = require_terraform()
    result = subprocess.run(
        [binary, "fmt", "-check", "-recursive", "-diff", str(INFRA)],
        capture_output=True,
        text=True,
        env=base_env(),
        check=False,
    )
    assert result.returncode == 0, f"terraform fmt would change:\n{result.stdout}{result.stderr}"


def test_terraform_validate(terraform_infra: Terraform) -> None:
    result = terraform_infra.run("validate", "-json", "-no-color")
    verdict = json.loads(result.stdout)
    assert verdict["valid"], verdict
    assert verdict["warning_count"] == 0, verdict["diagnostics"]


def test_checkov_finds_no_failed_check() -> None:
    if not CHECKOV.exists():
        message = f"{CHECKOV} is missing: run scripts/install-deps"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    result = subprocess.run(
        [
            str(CHECKOV),
            "-d",
            str(INFRA),
            "--framework",
            "terraform",
            "--quiet",
            "--skip-download",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report = json.loads(result.stdout)
    report = report[0] if isinstance(report, list) else report
    summary = report["summary"]
    failed = [
        f"{c['check_id']} {c['resource']} ({c['check_name']}) {c['file_path']}"
        for c in report["results"].get("failed_checks", [])
    ]
    assert summary["failed"] == 0, "\n".join(failed)
    assert summary["parsing_errors"] == 0, report
    assert summary["passed"] > 50  # it really looked at the resources
    assert result.returncode == 0, result.stderr[-3000:]


def test_every_checkov_skip_is_inline_with_its_reason() -> None:
    skips = []
    for path in sorted(INFRA.rglob("*.tf")):
        if ".terraform" in path.parts:
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            match = SKIP_COMMENT.search(line)
            if match:
                skips.append((path.name, match["id"], (match["reason"] or "").strip()))
    assert skips, "expected the documented skips (VPC, KMS on logs, ...)"
    for name, check, reason in skips:
        assert len(reason) >= 30, f"{name}: skip of {check} without a reason"
    # No skip by configuration file or command line: only inline ones.
    assert not list(INFRA.rglob(".checkov.y*ml"))


def test_every_variable_and_output_is_described() -> None:
    block = re.compile(r'^(variable|output) "([^"]+)" \{\n(.*?)^\}', re.M | re.S)
    seen = 0
    for path in sorted(INFRA.rglob("*.tf")):
        if ".terraform" in path.parts:
            continue
        for kind, name, body in block.findall(path.read_text(encoding="utf-8")):
            seen += 1
            assert re.search(r"^\s+description\s+=", body, re.M), f"{path}: {kind} {name}"
    assert seen > 40


def test_the_lambda_package_is_reproducible(tmp_path: Path) -> None:
    build = INFRA / "lambdas" / "build.py"
    for out in ("a", "b"):
        subprocess.run([sys.executable, str(build), str(tmp_path / out)], check=True)
    first = (tmp_path / "a" / "feed_command.zip").read_bytes()
    assert first == (tmp_path / "b" / "feed_command.zip").read_bytes()
    import zipfile  # noqa: PLC0415

    with zipfile.ZipFile(tmp_path / "a" / "feed_command.zip") as archive:
        assert archive.namelist() == ["feed_command.py"]


def test_the_readme_deploys_with_the_commands_the_tests_run() -> None:
    """README, Deploy the cloud side: the commands tests/test_infra_moto.py runs (there with
    AWS_ENDPOINT_URL at moto, and -target around what moto cannot apply)."""
    readme = (INFRA.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Deploy the cloud side", 1)[1].split("\n## ", 1)[0]
    commands = " ".join(section.replace("\\\n", " ").split())
    for command in (
        "python3 infra/lambdas/build.py",
        "terraform -chdir=infra init",
        "terraform -chdir=infra apply -var-file=home.tfvars",
        "terraform -chdir=infra output -json | .venv/bin/fmfb config from-terraform --thing",
        "terraform -chdir=infra destroy -var-file=home.tfvars",
    ):
        assert command in commands, command
    from click.testing import CliRunner  # noqa: PLC0415

    from gateway.cli import main  # noqa: PLC0415

    usage = CliRunner().invoke(main, ["config", "from-terraform", "--help"]).output
    for option in ("--thing", "--cert-file", "--key-file", "--write-cert", "--out"):
        assert option in usage and option in section, option


def test_without_terraform_ci_fails_and_a_person_is_told(monkeypatch: pytest.MonkeyPatch) -> None:
    import terraform_fixture  # noqa: PLC0415

    monkeypatch.setattr(terraform_fixture.shutil, "which", lambda _name: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must have it"):
        require_terraform()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="not on PATH"):
        require_terraform()
