# The published design's bus, rule and archive, with what the design left out: a dead-letter
# queue and a retry policy on the rule's target, and a history log group with a retention.
#
# The rule `feeds` keeps the published pattern (every event of the gateways' source). Its target
# here is a CloudWatch log group, the history a person can query with Logs Insights; feed
# commands are made from remote feed requests only (modules/feed_command), so a gateway's own
# presses never come back to it.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

resource "aws_cloudwatch_event_bus" "this" {
  name = var.bus_name
}

resource "aws_cloudwatch_event_archive" "this" {
  name             = "${var.bus_name}-archive"
  description      = "Every event the gateways put on ${var.bus_name}: the cloud copy of their journals."
  event_source_arn = aws_cloudwatch_event_bus.this.arn
  retention_days   = var.archive_retention_days
}

resource "aws_cloudwatch_event_rule" "feeds" {
  name           = "feeds"
  description    = "The published rule: every event of the gateways' source."
  event_bus_name = aws_cloudwatch_event_bus.this.name
  event_pattern  = jsonencode({ source = [var.event_source] })
}

# One queue takes what no target could be given (after the retry policy gave up), from every
# target of every rule, and the feed Lambda's failed invocations. Its policy is inline (one
# apply step: the provider waits ~25 s for an SQS queue's attributes to settle, per call), so
# its own ARN is spelt out rather than referenced.
locals {
  # ARNs spelt out rather than read from the resources: known at plan time, so `terraform
  # plan` (and its tests) show every policy document whole.
  bus_arn           = "arn:${data.aws_partition.current.partition}:events:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:event-bus/${var.bus_name}"
  dead_letters_name = "${var.name_prefix}-dead-letters"
  dead_letters_arn  = "arn:${data.aws_partition.current.partition}:sqs:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:${local.dead_letters_name}"
  history_name      = "/aws/events/${var.bus_name}"
  history_arn       = "arn:${data.aws_partition.current.partition}:logs:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:log-group:${local.history_name}"
  feeds_rule_arn    = "arn:${data.aws_partition.current.partition}:events:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:rule/${var.bus_name}/feeds"
}

resource "aws_sqs_queue" "dead_letters" {
  name                      = local.dead_letters_name
  message_retention_seconds = 1209600 # 14 days, SQS's maximum: time to notice and look
  sqs_managed_sse_enabled   = true
  policy                    = data.aws_iam_policy_document.dead_letters.json
}

data "aws_iam_policy_document" "dead_letters" {
  statement {
    sid       = "EventBridgeRulesOfThisBus"
    actions   = ["sqs:SendMessage"]
    resources = [local.dead_letters_arn]

    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${data.aws_partition.current.partition}:events:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:rule/${var.bus_name}/*"]
    }
  }
}

resource "aws_cloudwatch_log_group" "history" {
  # EventBridge can write only to log groups whose name starts with /aws/events/.
  name              = local.history_name
  retention_in_days = var.log_retention_days
  #checkov:skip=CKV_AWS_158:CloudWatch Logs encrypts at rest already; a customer-managed KMS key costs $1/month, more than everything else here at a home's event rate.
}

data "aws_iam_policy_document" "history" {
  statement {
    sid       = "EventBridgeWritesTheHistory"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${local.history_arn}:*"]

    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com", "delivery.logs.amazonaws.com"]
    }

    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [local.feeds_rule_arn]
    }
  }
}

resource "aws_cloudwatch_log_resource_policy" "history" {
  policy_name     = "${var.name_prefix}-events-history"
  policy_document = data.aws_iam_policy_document.history.json
}

resource "aws_cloudwatch_event_target" "history" {
  rule           = aws_cloudwatch_event_rule.feeds.name
  event_bus_name = aws_cloudwatch_event_bus.this.name
  target_id      = "history"
  arn            = aws_cloudwatch_log_group.history.arn

  retry_policy {
    maximum_event_age_in_seconds = 86400
    maximum_retry_attempts       = 10
  }

  dead_letter_config {
    arn = local.dead_letters_arn
  }

  depends_on = [aws_cloudwatch_log_resource_policy.history, aws_sqs_queue.dead_letters]
}
