# The IoT credentials provider: a gateway trades its IoT certificate at the role alias for
# short-lived AWS credentials of this role, whose only permission is events:PutEvents on the
# bus, with the gateways' source. So no long-lived AWS keys live on the Pi, and a gateway cannot
# put a remote feed request (another source) on the bus.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["credentials.iot.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "gateway" {
  name                 = "${var.name_prefix}-gateway"
  description          = "Assumed by the gateways through the IoT credentials provider: events:PutEvents on ${var.bus_name} only."
  assume_role_policy   = data.aws_iam_policy_document.assume.json
  max_session_duration = 3600 # IAM's minimum; the alias asks for credential_duration_s of it
}

data "aws_iam_policy_document" "put_events" {
  statement {
    sid       = "PutGatewayEventsOnTheBus"
    actions   = ["events:PutEvents"]
    resources = [var.bus_arn]

    condition {
      test     = "StringEquals"
      variable = "events:source"
      values   = [var.event_source]
    }
  }
}

resource "aws_iam_role_policy" "put_events" {
  name   = "put-events"
  role   = aws_iam_role.gateway.id
  policy = data.aws_iam_policy_document.put_events.json
}

resource "aws_iot_role_alias" "gateway" {
  alias               = var.role_alias_name
  role_arn            = aws_iam_role.gateway.arn
  credential_duration = var.credential_duration_s
}

# The account's credentials provider endpoint: what the gateway's [cloud.credentials_provider]
# endpoint is.
data "aws_iot_endpoint" "credentials" {
  endpoint_type = "iot:CredentialProvider"
}
