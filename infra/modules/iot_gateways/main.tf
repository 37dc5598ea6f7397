# IoT Core: one thing per gateway, its certificate issued from a CSR the gateway made (the
# private key never leaves the Pi), and one policy of least privilege shared by every gateway,
# scoped to each connection's own thing through policy variables:
#   connect   only as its own thing name, and only while that thing is attached to the cert;
#   publish   only to <prefix>/<its thing name>/events;
#   subscribe/receive only the command topic;
#   trade its certificate for credentials only at this deployment's role alias.
# No "*" action and no "*" resource.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  iot = "arn:${data.aws_partition.current.partition}:iot:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}"
  # "$${...}" is Terraform's escape for IoT's own "${...}" policy variable.
  thing = "$${iot:Connection.Thing.ThingName}"
}

resource "aws_iot_thing" "gateway" {
  for_each = var.gateways

  name = each.key
}

resource "aws_iot_certificate" "gateway" {
  for_each = var.gateways

  csr    = file(each.value.csr_file)
  active = true
}

resource "aws_iot_thing_principal_attachment" "gateway" {
  for_each = var.gateways

  thing     = aws_iot_thing.gateway[each.key].name
  principal = aws_iot_certificate.gateway[each.key].arn
}

data "aws_iam_policy_document" "gateway" {
  statement {
    sid       = "ConnectAsItsOwnThing"
    actions   = ["iot:Connect"]
    resources = ["${local.iot}:client/${local.thing}"]

    condition {
      test     = "Bool"
      variable = "iot:Connection.Thing.IsAttached"
      values   = ["true"]
    }
  }

  statement {
    sid       = "PublishItsEvents"
    actions   = ["iot:Publish"]
    resources = ["${local.iot}:topic/${var.events_topic_prefix}/${local.thing}/events"]
  }

  statement {
    sid       = "SubscribeToCommands"
    actions   = ["iot:Subscribe"]
    resources = ["${local.iot}:topicfilter/${var.command_topic}"]
  }

  statement {
    sid       = "ReceiveCommands"
    actions   = ["iot:Receive"]
    resources = ["${local.iot}:topic/${var.command_topic}"]
  }

  statement {
    sid       = "TemporaryCredentials"
    actions   = ["iot:AssumeRoleWithCertificate"]
    resources = [var.role_alias_arn]
  }
}

resource "aws_iot_policy" "gateway" {
  name   = "${var.name_prefix}-gateway"
  policy = data.aws_iam_policy_document.gateway.json
}

resource "aws_iot_policy_attachment" "gateway" {
  for_each = var.gateways

  policy = aws_iot_policy.gateway.name
  target = aws_iot_certificate.gateway[each.key].arn
}
