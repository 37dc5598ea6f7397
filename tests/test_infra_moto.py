"""infra/ planned, applied and destroyed against moto's server, and the gateway run against it.

One moto server and one ``terraform apply`` for the module (the commands of README, "Deploy
the cloud side", with ``AWS_ENDPOINT_URL`` pointing every AWS API at moto):

- **Plan assertions** (``terraform plan`` + ``terraform show -json``) cover every resource,
  and alone cover those moto cannot apply (``NOT_APPLIED_ON_MOTO``: the IoT policy, its
  attachments and the role alias — the provider reads their tags back, moto answers IoT's
  ListTagsForResource "not implemented", and the provider retries for minutes). Every policy
  document is asserted as planned: least privilege, no "*" action or resource.
- **Apply** creates everything else (``-target`` each planned resource except those, then a
  refresh-only apply so that every output is recorded), and the test reads each resource back
  through the AWS APIs.
- **End to end**: ``terraform output -json | fmfb config from-terraform`` renders the gateway's
  config; the daemon runs with it against moto (EventBridge, with temporary credentials from a
  stand-in credentials provider at the rendered role alias) and a TLS Mosquitto standing in for
  IoT Core. A press reaches the bus, its history log group and its archive and is never sent
  back as a command; a remote feed request put on the bus goes through the rule Terraform made
  to the Lambda handler Terraform deployed (``tests/lambda_targets.py`` runs it, as moto
  cannot) and over IoT Core to the feeder, once.
- **Destroy** removes it all (the last test: the others use the applied deployment).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from credentials_server import CredentialsServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from daemon_process import FMFB, HIGH_CAPS, DaemonProcess, fmfb_env
from e2e_probe import Probe
from iot_data_standin import IotDataStandIn
from lambda_targets import LambdaTargets
from terraform_fixture import (
    NOT_APPLIED_ON_MOTO,
    Terraform,
    addresses,
    one_of_type,
    planned_resources,
    resource_type,
    targets_moto_can_apply,
    write_tfvars,
)
from test_from_terraform import table_of
from test_iot_core_sink import Cloud, tls_of
from waiting import wait_for

from gateway.devstack.aws import AWS_TEST_ENV, REGION, MotoServer
from gateway.devstack.mosquitto import Mosquitto
from gateway.devstack.pki import Pki, make_pki

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

THING = "kitchen-pi"
BUS = "feedmyfurbabies"
SOURCE = "com.feedmyfurbabies"
REMOTE = "com.feedmyfurbabies.remote"
COMMANDS = "cat-feeder/action"
THING_VARIABLE = "${iot:Connection.Thing.ThingName}"
TIMEOUT = 30.0

# Every resource infra/ makes for one gateway, by type (and how many).
EXPECTED_TYPES = {
    "aws_cloudwatch_event_bus": 1,
    "aws_cloudwatch_event_archive": 1,
    "aws_cloudwatch_event_rule": 2,  # feeds (published), feed-requests
    "aws_cloudwatch_event_target": 2,  # history log group, feed Lambda
    "aws_cloudwatch_log_group": 2,  # the history, the Lambda's logs
    "aws_cloudwatch_log_resource_policy": 1,
    "aws_sqs_queue": 1,  # the dead-letter queue (its policy inline)
    "aws_iam_role": 2,  # the Lambda's, the credentials provider's
    "aws_iam_role_policy": 2,
    "aws_lambda_function": 1,
    "aws_lambda_permission": 1,
    "aws_iot_thing": 1,
    "aws_iot_certificate": 1,
    "aws_iot_thing_principal_attachment": 1,
    "aws_iot_policy": 1,
    "aws_iot_policy_attachment": 1,
    "aws_iot_role_alias": 1,
}


@dataclass
class Deployment:
    terraform: Terraform
    var_file: Path
    plan: dict[str, Any]
    outputs_json: str
    destroyed: bool = False

    @property
    def outputs(self) -> dict[str, Any]:
        return {k: v["value"] for k, v in json.loads(self.outputs_json).items()}


def make_csr(key_file: Path, thing: str, out: Path) -> Path:
    """The CSR a gateway makes with its own key (README: openssl req -new -key ...)."""
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, thing)]))
        .sign(key, hashes.SHA256())  # type: ignore[arg-type]
    )
    out.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    return out


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"), client_id=THING)


@pytest.fixture(scope="module")
def on_moto(terraform_infra: Terraform, moto: MotoServer) -> Terraform:
    return terraform_infra.with_env(**AWS_TEST_ENV, AWS_REGION=REGION, AWS_ENDPOINT_URL=moto.url)


@pytest.fixture(scope="module")
def deployment(
    on_moto: Terraform, moto: MotoServer, pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    moto.reset()
    work = tmp_path_factory.mktemp("home")
    csr = make_csr(pki.client_key, THING, work / f"{THING}.csr")
    var_file = write_tfvars(
        work / "home.tfvars.json", {"gateways": {THING: {"csr_file": str(csr)}}}
    )
    plan_file = work / "home.tfplan"
    on_moto.run("plan", "-input=false", "-no-color", f"-var-file={var_file}", f"-out={plan_file}")
    plan = on_moto.show_json(plan_file)
    targets = [f"-target={a}" for a in targets_moto_can_apply(plan)]
    on_moto.run(
        "apply", "-auto-approve", "-input=false", "-no-color", f"-var-file={var_file}", *targets
    )
    # A targeted apply records only the outputs of what it targeted: record them all.
    on_moto.run(
        "apply",
        "-refresh-only",
        "-auto-approve",
        "-input=false",
        "-no-color",
        f"-var-file={var_file}",
    )
    deployed = Deployment(on_moto, var_file, plan, on_moto.outputs_json())
    yield deployed
    if not deployed.destroyed:
        on_moto.run(
            "destroy",
            "-auto-approve",
            "-input=false",
            "-no-color",
            f"-var-file={var_file}",
            check=False,
        )


def policy(values: dict[str, Any], key: str = "policy") -> dict[str, Any]:
    document: dict[str, Any] = json.loads(values[key])
    return document


def statements(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["Sid"]: s for s in document["Statement"]}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def assert_no_wildcards(document: dict[str, Any]) -> None:
    for statement in document["Statement"]:
        assert statement["Effect"] == "Allow"
        for action in as_list(statement["Action"]):
            assert "*" not in action, statement
        for resource in as_list(statement.get("Resource", [])):
            assert resource != "*", statement
            # A wildcard only inside a log-stream name or a rule name of this bus.
            assert "*" not in resource or re.search(
                r"(log-stream:|rule/feedmyfurbabies/|log-group:/aws/events/feedmyfurbabies:)\*$",
                resource,
            ), resource


# --- the plan: every resource, every policy document ---------------------------------------


def test_the_plan_creates_every_resource(deployment: Deployment) -> None:
    planned = [resource_type(a) for a in addresses(deployment.plan)]
    assert {t: planned.count(t) for t in set(planned)} == EXPECTED_TYPES


def test_the_iot_policy_is_least_privilege_with_policy_variables(deployment: Deployment) -> None:
    document = policy(one_of_type(deployment.plan, "aws_iot_policy"))
    assert_no_wildcards(document)
    iot = f"arn:aws:iot:{REGION}:123456789012"
    by_sid = statements(document)
    assert {s: (by_sid[s]["Action"], by_sid[s]["Resource"]) for s in by_sid} == {
        "ConnectAsItsOwnThing": ("iot:Connect", f"{iot}:client/{THING_VARIABLE}"),
        "PublishItsEvents": ("iot:Publish", f"{iot}:topic/feedmyfurbabies/{THING_VARIABLE}/events"),
        "SubscribeToCommands": ("iot:Subscribe", f"{iot}:topicfilter/{COMMANDS}"),
        "ReceiveCommands": ("iot:Receive", f"{iot}:topic/{COMMANDS}"),
        "TemporaryCredentials": ("iot:AssumeRoleWithCertificate", f"{iot}:rolealias/fmfb-gateway"),
    }
    assert by_sid["ConnectAsItsOwnThing"]["Condition"] == {
        "Bool": {"iot:Connection.Thing.IsAttached": "true"}
    }
    attachment = one_of_type(deployment.plan, "aws_iot_policy_attachment")
    assert attachment["policy"] == "fmfb-gateway"


def test_the_credentials_role_may_only_put_gateway_events_on_the_bus(
    deployment: Deployment,
) -> None:
    resources = planned_resources(deployment.plan)
    role = resources["module.credentials_provider.aws_iam_role.gateway"]
    trust = policy(role, "assume_role_policy")
    [statement] = trust["Statement"]
    assert statement["Principal"] == {"Service": "credentials.iot.amazonaws.com"}
    assert statement["Action"] == "sts:AssumeRole"
    assert role["max_session_duration"] == 3600
    document = policy(resources["module.credentials_provider.aws_iam_role_policy.put_events"])
    assert_no_wildcards(document)
    [only] = document["Statement"]
    assert only["Action"] == "events:PutEvents"
    assert only["Resource"] == f"arn:aws:events:{REGION}:123456789012:event-bus/{BUS}"
    assert only["Condition"] == {"StringEquals": {"events:source": SOURCE}}
    alias = one_of_type(deployment.plan, "aws_iot_role_alias")
    assert alias["alias"] == "fmfb-gateway"
    assert alias["credential_duration"] == 900


def test_the_lambda_may_only_publish_commands_and_write_its_logs(deployment: Deployment) -> None:
    resources = planned_resources(deployment.plan)
    document = policy(resources["module.feed_command.aws_iam_role_policy.lambda"])
    assert_no_wildcards(document)
    by_sid = statements(document)
    assert by_sid["PublishFeedCommands"]["Action"] == "iot:Publish"
    assert (
        by_sid["PublishFeedCommands"]["Resource"]
        == f"arn:aws:iot:{REGION}:123456789012:topic/{COMMANDS}"
    )
    assert sorted(by_sid["WriteItsLogs"]["Action"]) == ["logs:CreateLogStream", "logs:PutLogEvents"]
    assert by_sid["DeadLetterFailedInvocations"]["Action"] == "sqs:SendMessage"
    assert set(by_sid) == {"PublishFeedCommands", "WriteItsLogs", "DeadLetterFailedInvocations"}
    function = one_of_type(deployment.plan, "aws_lambda_function")
    assert function["runtime"] == "python3.12"
    assert function["architectures"] == ["arm64"]
    variables = function["environment"][0]["variables"]
    assert variables["PUBLISH_EVERY_PRESS"] == "false"
    assert variables["COMMAND_TOPIC"] == COMMANDS
    assert function["dead_letter_config"][0]["target_arn"].endswith(":fmfb-dead-letters")


def test_the_rules_keep_a_gateways_presses_away_from_the_feed_lambda(
    deployment: Deployment,
) -> None:
    resources = planned_resources(deployment.plan)
    feeds = resources["module.event_bus.aws_cloudwatch_event_rule.feeds"]
    assert json.loads(feeds["event_pattern"]) == {"source": [SOURCE]}  # as published
    requests = resources["module.feed_command.aws_cloudwatch_event_rule.feed_requests"]
    assert json.loads(requests["event_pattern"]) == {
        "source": [REMOTE],
        "detail-type": ["Feed Request"],
    }
    targets = [v for a, v in resources.items() if resource_type(a) == "aws_cloudwatch_event_target"]
    assert {t["rule"]: t["target_id"] for t in targets} == {
        "feeds": "history",
        "feed-requests": "feed-command",
    }
    for target in targets:  # every target: a retry policy and a dead-letter queue
        assert target["retry_policy"][0]["maximum_retry_attempts"] >= 1
        assert target["dead_letter_config"][0]["arn"].endswith(":fmfb-dead-letters")
    history = policy(
        resources["module.event_bus.aws_cloudwatch_log_resource_policy.history"], "policy_document"
    )
    assert_no_wildcards(history)
    [writes] = history["Statement"]
    assert sorted(writes["Action"]) == ["logs:CreateLogStream", "logs:PutLogEvents"]
    assert writes["Resource"].endswith(":log-group:/aws/events/feedmyfurbabies:*")
    assert writes["Condition"] == {
        "ArnEquals": {"aws:SourceArn": f"arn:aws:events:{REGION}:123456789012:rule/{BUS}/feeds"}
    }
    dlq = policy(resources["module.event_bus.aws_sqs_queue.dead_letters"])
    assert_no_wildcards(dlq)
    [statement] = dlq["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}


def test_logs_and_the_archive_have_a_retention(deployment: Deployment) -> None:
    resources = planned_resources(deployment.plan)
    groups = [v for a, v in resources.items() if resource_type(a) == "aws_cloudwatch_log_group"]
    assert sorted(g["name"] for g in groups) == [
        "/aws/events/feedmyfurbabies",
        "/aws/lambda/fmfb-feed-command",
    ]
    assert all(g["retention_in_days"] == 365 for g in groups)
    assert one_of_type(deployment.plan, "aws_cloudwatch_event_archive")["retention_days"] == 365


def test_publish_every_press_is_an_opt_in_target_on_the_published_rule(
    on_moto: Terraform, deployment: Deployment, tmp_path: Path
) -> None:
    plan_file = tmp_path / "every-press.tfplan"
    on_moto.run(
        "plan",
        "-input=false",
        "-no-color",
        f"-var-file={deployment.var_file}",
        "-var=publish_every_press=true",
        f"-out={plan_file}",
    )
    plan = on_moto.show_json(plan_file)
    resources = planned_resources(plan)
    target = resources["module.feed_command.aws_cloudwatch_event_target.every_press[0]"]
    assert target["rule"] == "feeds"
    assert "module.feed_command.aws_lambda_permission.every_press[0]" in resources
    function = one_of_type(plan, "aws_lambda_function")
    assert function["environment"][0]["variables"]["PUBLISH_EVERY_PRESS"] == "true"


@pytest.mark.parametrize(
    ("variable", "says"),
    [
        ("lambda_runtime=python3.8", "python3.12 or newer"),
        ('gateways={"a/b"={csr_file="x"}}', "thing name"),
        ("command_topic=cat-feeder/#", "no MQTT wildcards"),
        ("credential_duration_s=60", "900 to 3600"),
    ],
)
def test_bad_variables_are_refused_by_their_validation(
    on_moto: Terraform, variable: str, says: str
) -> None:
    result = on_moto.run("plan", "-input=false", "-no-color", f"-var={variable}", check=False)
    assert result.returncode != 0
    assert says in " ".join(result.stderr.split()), result.stderr


# --- the apply: read back through the AWS APIs ----------------------------------------------


def test_apply_created_what_moto_can_serve(deployment: Deployment, moto: MotoServer) -> None:
    events = moto.client("events")
    assert events.describe_event_bus(Name=BUS)["Name"] == BUS
    rules = {r["Name"]: r for r in events.list_rules(EventBusName=BUS)["Rules"]}
    assert {"feeds", "feed-requests"} <= set(rules)
    for rule in ("feeds", "feed-requests"):
        [target] = events.list_targets_by_rule(Rule=rule, EventBusName=BUS)["Targets"]
        assert target["DeadLetterConfig"]["Arn"].endswith(":fmfb-dead-letters")
        assert target["RetryPolicy"]["MaximumRetryAttempts"] >= 1
    archive = events.describe_archive(ArchiveName=f"{BUS}-archive")
    assert archive["RetentionDays"] == 365
    assert moto.client("sqs").get_queue_url(QueueName="fmfb-dead-letters")["QueueUrl"]
    function = moto.client("lambda").get_function_configuration(FunctionName="fmfb-feed-command")
    assert function["Runtime"] == "python3.12"
    assert function["Architectures"] == ["arm64"]
    iam = moto.client("iam")
    for role in ("fmfb-feed-command", "fmfb-gateway"):
        assert iam.get_role(RoleName=role)["Role"]["RoleName"] == role
    iot = moto.client("iot")
    assert iot.describe_thing(thingName=THING)["thingName"] == THING
    [principal] = iot.list_thing_principals(thingName=THING)["principals"]
    cert_id = principal.rsplit("/", 1)[-1]
    assert (
        iot.describe_certificate(certificateId=cert_id)["certificateDescription"]["status"]
        == "ACTIVE"
    )
    groups = moto.client("logs").describe_log_groups(logGroupNamePrefix="/aws/")["logGroups"]
    assert {g["logGroupName"]: g.get("retentionInDays") for g in groups} == {
        "/aws/events/feedmyfurbabies": 365,
        "/aws/lambda/fmfb-feed-command": 365,
    }
    outputs = deployment.outputs
    assert outputs["gateways"][THING]["certificate_arn"] == principal
    assert outputs["role_alias"] == "fmfb-gateway"
    assert outputs["credentials_endpoint"].endswith(f".credentials.iot.{REGION}.amazonaws.com")


# --- end to end -----------------------------------------------------------------------------


def render_config(deployment: Deployment, moto: MotoServer, pki: Pki, work: Path) -> dict[str, Any]:
    """``terraform output -json | fmfb config from-terraform ...``, as the README says."""
    import tomllib  # noqa: PLC0415

    issued = work / "iot" / "certificate.pem"
    result = subprocess.run(
        [
            *FMFB,
            "config",
            "from-terraform",
            "--thing",
            THING,
            "--cert-file",
            str(issued),
            "--key-file",
            str(pki.client_key),
            "--ca-file",
            str(pki.ca),
            "--write-cert",
            "--eventbridge-endpoint-url",
            moto.url,
        ],
        input=deployment.outputs_json,
        capture_output=True,
        text=True,
        env=fmfb_env(),
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # The certificate IoT issued for the gateway's CSR, written where the config says. (AWS
    # signs the CSR's own key; moto issues a certificate for a key of its own, with the CSR's
    # subject, so only the subject is compared here.)
    certificate = x509.load_pem_x509_certificate(issued.read_bytes())
    [cn] = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert cn.value == THING
    rendered: dict[str, Any] = tomllib.loads(result.stdout)
    return rendered


def test_end_to_end_a_press_reaches_the_bus_and_a_remote_request_feeds_once(  # noqa: PLR0917
    deployment: Deployment,
    moto: MotoServer,
    pki: Pki,
    broker: Mosquitto,
    tmp_path: Path,
    terraform_infra: Terraform,
) -> None:
    rendered = render_config(deployment, moto, pki, tmp_path)
    outputs = deployment.outputs
    eventbridge, iot_core, provider_section = (
        table_of(rendered, name) for name in ("eventbridge", "iot_core", "credentials_provider")
    )
    assert eventbridge == {"bus": BUS, "source": SOURCE, "endpoint_url": moto.url}
    assert iot_core["client_id"] == THING
    assert iot_core["topic"] == f"feedmyfurbabies/{THING}/events"
    assert provider_section["role_alias"] == outputs["role_alias"]
    events_topic = iot_core["topic"]

    with (
        Mosquitto(tls=tls_of(pki)) as iot_broker,
        CredentialsServer(pki, role_alias=outputs["role_alias"], thing_name=THING) as provider,
        Cloud(iot_broker, pki, [COMMANDS, events_topic]).start() as iot_cloud,
        IotDataStandIn(iot_cloud.publish) as iot_data,
        LambdaTargets(
            moto,
            terraform_infra.root / "build" / "feed_command.zip",
            # moto's made-up IoT endpoint cannot be reached: the function publishes to the
            # stand-in in front of the TLS broker instead.
            env_overrides={"IOT_DATA_ENDPOINT": iot_data.url},
        ) as lambdas,
    ):
        # Only the addresses change: moto's endpoints are made up, the stand-ins are local and
        # trust the tests' CA (not moto's, which signed the certificate above).
        iot_core.update(
            endpoint="localhost",
            port=iot_broker.port,
            cert_file=str(pki.client_cert),
            metrics=False,
        )
        provider_section.update(
            endpoint="localhost", port=provider.port, cert_file=str(pki.client_cert)
        )
        with (
            DaemonProcess(
                broker.port,
                workdir=tmp_path / "gw",
                gateway_id=THING,
                policy=HIGH_CAPS,
                extra_config=rendered,
            ) as daemon,
            Probe(broker.host, broker.port, subscribe=[COMMANDS]) as feeder,
        ):
            daemon.start()
            daemon.wait_feeder_connected()
            wait_for(
                lambda: daemon.sink_status("iot-core")["connected"],
                timeout=TIMEOUT,
                what="IoT Core",
            )
            wait_for(
                lambda: daemon.sink_status("eventbridge")["cursor"] >= 1,
                timeout=TIMEOUT,
                what="EventBridge",
            )
            assert provider.requests, "EventBridge was reached with the provider's credentials"

            # 1. A local press: journaled, fed locally, on the bus, in the history and archive.
            feeder_seen = len(feeder.messages())
            daemon.cli("press", daemon.button_name, "SINGLE").check_returncode()
            [press] = daemon.events(["FeedRequested"])
            wait_for(
                lambda: len(feeder.messages()) > feeder_seen, timeout=TIMEOUT, what="the local feed"
            )
            history = wait_for(
                lambda: history_events(moto, press.event_id),
                timeout=TIMEOUT,
                what="the press in the history",
            )
            assert history[0]["source"] == SOURCE
            assert history[0]["detail"]["click-type"] == "SINGLE"
            assert archived(moto, press.event_id), "the press is in the archive"
            # ... and went up to IoT Core on the gateway's own events topic.
            wait_for(
                lambda: any(
                    b.get("event-id") == press.event_id for b in iot_cloud.bodies(events_topic)
                ),
                timeout=TIMEOUT,
                what="the press on IoT Core",
            )

            # 2. A remote feed request on the bus: rule -> the Lambda -> IoT Core -> the feeder.
            answer = moto.client("events").put_events(
                Entries=[
                    {
                        "EventBusName": BUS,
                        "Source": REMOTE,
                        "DetailType": "Feed Request",
                        "Detail": json.dumps({"bowls": ["right"]}),
                    }
                ]
            )
            assert answer["FailedEntryCount"] == 0
            request_id = answer["Entries"][0]["EventId"]
            [invocation] = wait_for(lambdas.finished, timeout=TIMEOUT, what="the Lambda")
            assert invocation.returncode == 0, invocation.stderr
            assert invocation.result == {"published": True, "topic": COMMANDS, "id": request_id}

            def fed(rid: str) -> list[Any]:
                return [m for m in feeder.messages() if m.json().get("id") == rid]

            [action] = wait_for(lambda: fed(request_id), timeout=TIMEOUT, what="the remote feed")
            assert action.json()["bowls"] == ["right"]
            assert action.json()["event"] == "DOUBLE"

            # 3. EventBridge delivers at least once: the same envelope again is the same id; it
            # reaches the gateway (journaled as a duplicate) and does not feed a second time.
            lambdas.deliver(invocation.function_arn, invocation.event)
            wait_for(
                lambda: [
                    e
                    for e in daemon.events(["FeedRejected"])
                    if e.payload.to_dict().get("reason") == "duplicate"
                ],
                timeout=TIMEOUT,
                what="the redelivered request to arrive and be refused as a duplicate",
            )
            assert [b["id"] for b in iot_cloud.bodies(COMMANDS)] == [request_id, request_id]
            assert len(fed(request_id)) == 1

            # 4. The gateway's own press never came back as a command: the Lambda ran only for
            # the remote request, the command topic carried only that, no echo was journaled.
            assert [i.event["source"] for i in lambdas.invocations] == [REMOTE, REMOTE]
            cloud_requests = [
                e for e in daemon.events(["FeedRequested"]) if e.origin.value == "cloud"
            ]
            assert [e.payload.to_dict()["request_id"] for e in cloud_requests] == [request_id]
            rejected = [e.payload.to_dict()["reason"] for e in daemon.events(["FeedRejected"])]
            assert rejected == ["duplicate"]
            assert daemon.stop() == 0


def history_events(moto: MotoServer, event_id: str) -> list[dict[str, Any]]:
    found = moto.client("logs").filter_log_events(logGroupName="/aws/events/feedmyfurbabies")[
        "events"
    ]
    bodies = [json.loads(e["message"]) for e in found]
    return [b for b in bodies if b["detail"].get("event-id") == event_id]


def archived(moto: MotoServer, event_id: str) -> bool:
    """moto keeps an archive's events in its process (this one); AWS shows them by replay."""
    from moto.events.models import events_backends  # noqa: PLC0415

    archive = events_backends["123456789012"][REGION].archives[f"{BUS}-archive"]
    return any(e["detail"].get("event-id") == event_id for e in archive.events)


# --- destroy (last: the tests above use the deployment) -------------------------------------


def test_destroy_removes_everything(
    deployment: Deployment, on_moto: Terraform, moto: MotoServer
) -> None:
    on_moto.run(
        "destroy", "-auto-approve", "-input=false", "-no-color", f"-var-file={deployment.var_file}"
    )
    deployment.destroyed = True
    assert on_moto.run("state", "list", check=False).stdout.strip() == ""
    events = moto.client("events")
    assert [b["Name"] for b in events.list_event_buses()["EventBuses"]] == ["default"]
    assert events.list_archives()["Archives"] == []
    assert "QueueUrls" not in moto.client("sqs").list_queues()
    assert moto.client("lambda").list_functions()["Functions"] == []
    roles = [r["RoleName"] for r in moto.client("iam").list_roles()["Roles"]]
    assert not {"fmfb-feed-command", "fmfb-gateway"} & set(roles)
    assert moto.client("iot").list_things()["things"] == []
    assert moto.client("logs").describe_log_groups(logGroupNamePrefix="/aws/")["logGroups"] == []
    assert NOT_APPLIED_ON_MOTO  # (never created here; covered by the plan tests above)
