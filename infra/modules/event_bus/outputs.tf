output "bus_name" {
  description = "The bus's name."
  value       = aws_cloudwatch_event_bus.this.name
}

output "bus_arn" {
  description = "The bus's ARN."
  value       = local.bus_arn
}

output "archive_name" {
  description = "The archive's name (for `aws events start-replay`)."
  value       = aws_cloudwatch_event_archive.this.name
}

output "feeds_rule_name" {
  description = "The published rule's name."
  value       = aws_cloudwatch_event_rule.feeds.name
}

output "history_log_group" {
  description = "The log group the rule `feeds` writes every event to."
  value       = aws_cloudwatch_log_group.history.name
}

output "dead_letter_queue_arn" {
  description = "The dead-letter queue's ARN."
  value       = local.dead_letters_arn
  # Known at plan time (spelt out), yet nothing that names it is made before the queue exists.
  depends_on = [aws_sqs_queue.dead_letters]
}

output "dead_letter_queue_url" {
  description = "The dead-letter queue's URL."
  value       = aws_sqs_queue.dead_letters.url
}
