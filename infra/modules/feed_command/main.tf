# The feed path from the cloud: a remote feed request on the bus -> rule `feed-requests` -> this
# Lambda -> a feed command with a request id and bowls on IoT Core's command topic.
#
# The rule matches the remote requests' own source only, never the gateways' source: a
# gateway's presses go to the archive and the history, and never come back to it as commands.
# The published behaviour (every press on the bus becomes an id-less command) is the opt-in
# `publish_every_press`, which adds this Lambda as a target of the rule `feeds`.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

# The account's IoT data endpoint: the Lambda publishes through it (its ATS certificate chain).
data "aws_iot_endpoint" "data" {
  endpoint_type = "iot:Data-ATS"
}

locals {
  function_name = "${var.name_prefix}-feed-command"
  arn_prefix    = "arn:${data.aws_partition.current.partition}"
  region        = data.aws_region.current.name
  account       = data.aws_caller_identity.current.account_id
}

resource "aws_cloudwatch_log_group" "lambda" {
  name              = "/aws/lambda/${local.function_name}"
  retention_in_days = var.log_retention_days
  #checkov:skip=CKV_AWS_158:CloudWatch Logs encrypts at rest already; a customer-managed KMS key costs $1/month, more than everything else here at a home's event rate.
}

data "aws_iam_policy_document" "assume_lambda" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "lambda" {
  name               = local.function_name
  description        = "The feed Lambda: publish feed commands on ${var.command_topic}, write its own logs."
  assume_role_policy = data.aws_iam_policy_document.assume_lambda.json
}

# Least privilege: one topic, its own log group, the dead-letter queue. No wildcard action.
data "aws_iam_policy_document" "lambda" {
  statement {
    sid       = "PublishFeedCommands"
    actions   = ["iot:Publish"]
    resources = ["${local.arn_prefix}:iot:${local.region}:${local.account}:topic/${var.command_topic}"]
  }

  statement {
    sid       = "WriteItsLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${local.arn_prefix}:logs:${local.region}:${local.account}:log-group:/aws/lambda/${local.function_name}:log-stream:*"]
  }

  statement {
    sid       = "DeadLetterFailedInvocations"
    actions   = ["sqs:SendMessage"]
    resources = [var.dead_letter_queue_arn]
  }
}

resource "aws_iam_role_policy" "lambda" {
  name   = "feed-command"
  role   = aws_iam_role.lambda.id
  policy = data.aws_iam_policy_document.lambda.json
}

resource "aws_lambda_function" "this" {
  function_name    = local.function_name
  description      = "Turns a remote feed request on ${var.bus_name} into a feed command on ${var.command_topic}."
  role             = aws_iam_role.lambda.arn
  runtime          = var.runtime
  architectures    = ["arm64"] # Graviton: 20 % cheaper per GB-second than x86_64
  handler          = "feed_command.handler"
  filename         = var.zip_file
  source_code_hash = filebase64sha256(var.zip_file)
  memory_size      = 128
  timeout          = 10

  environment {
    variables = {
      IOT_DATA_ENDPOINT   = data.aws_iot_endpoint.data.endpoint_address
      COMMAND_TOPIC       = var.command_topic
      FEED_REQUEST_SOURCE = var.feed_request_source
      EVENT_SOURCE        = var.event_source
      PUBLISH_EVERY_PRESS = var.publish_every_press ? "true" : "false"
      COMMAND_EXPIRY_S    = tostring(var.feed_request_max_age_s)
    }
  }

  dead_letter_config {
    target_arn = var.dead_letter_queue_arn
  }

  tracing_config {
    mode = "PassThrough"
  }

  depends_on = [aws_cloudwatch_log_group.lambda, aws_iam_role_policy.lambda]

  #checkov:skip=CKV_AWS_117:The function reaches only public AWS endpoints (IoT data); a VPC would need a NAT gateway (~$32/month) or interface endpoints for nothing private.
  #checkov:skip=CKV_AWS_115:A reserved concurrency fails in new accounts (their quota is 10, all unreserved); EventBridge's retry policy and the DLQ bound what a burst can do.
  #checkov:skip=CKV_AWS_173:The environment holds no secrets (an endpoint, a topic, two sources); Lambda encrypts it at rest with an AWS-managed key.
  #checkov:skip=CKV_AWS_272:Code signing needs an AWS Signer profile per deployment; the package is built from this repository by infra/lambdas/build.py and deployed by its owner.
}

resource "aws_cloudwatch_event_rule" "feed_requests" {
  name           = "feed-requests"
  description    = "Remote feed requests only: never the gateways' own events."
  event_bus_name = var.bus_name
  event_pattern = jsonencode({
    source        = [var.feed_request_source]
    "detail-type" = ["Feed Request"]
  })
}

resource "aws_cloudwatch_event_target" "feed_requests" {
  rule           = aws_cloudwatch_event_rule.feed_requests.name
  event_bus_name = var.bus_name
  target_id      = "feed-command"
  arn            = aws_lambda_function.this.arn

  # A feed request is worth delivering only while it is fresh: the command expires as well.
  retry_policy {
    maximum_event_age_in_seconds = var.feed_request_max_age_s
    maximum_retry_attempts       = 3
  }

  dead_letter_config {
    arn = var.dead_letter_queue_arn
  }
}

resource "aws_lambda_permission" "feed_requests" {
  statement_id  = "feed-requests"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.this.function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.feed_requests.arn
}

# The opt-in published behaviour: every event of the gateways' source also goes to the Lambda,
# which turns each one with a click type into an id-less command.
resource "aws_cloudwatch_event_target" "every_press" {
  count = var.publish_every_press ? 1 : 0

  rule           = var.feeds_rule_name
  event_bus_name = var.bus_name
  target_id      = "every-press"
  arn            = aws_lambda_function.this.arn

  retry_policy {
    maximum_event_age_in_seconds = var.feed_request_max_age_s
    maximum_retry_attempts       = 3
  }

  dead_letter_config {
    arn = var.dead_letter_queue_arn
  }
}

resource "aws_lambda_permission" "every_press" {
  count = var.publish_every_press ? 1 : 0

  statement_id  = "every-press"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.this.function_name
  principal     = "events.amazonaws.com"
  source_arn    = "${local.arn_prefix}:events:${local.region}:${local.account}:rule/${var.bus_name}/${var.feeds_rule_name}"
}
