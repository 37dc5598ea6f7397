# What a gateway needs: `terraform -chdir=infra output -json | fmfb config from-terraform ...`
# renders these into its config (gateway/commands/from_terraform.py reads them by name).

output "region" {
  description = "The region everything is in ([cloud.aws] region)."
  value       = var.region
}

output "bus_name" {
  description = "The EventBridge bus ([sinks.eventbridge] bus)."
  value       = module.event_bus.bus_name
}

output "event_source" {
  description = "The gateways' event source ([sinks.eventbridge] source)."
  value       = var.event_source
}

output "feed_request_source" {
  description = "The source of a remote feed request (README: asking for a feed from the cloud)."
  value       = var.feed_request_source
}

output "archive_name" {
  description = "The bus's archive."
  value       = module.event_bus.archive_name
}

output "history_log_group" {
  description = "The log group the rule `feeds` writes every event to."
  value       = module.event_bus.history_log_group
}

output "dead_letter_queue_url" {
  description = "Where undeliverable events and failed feed invocations go."
  value       = module.event_bus.dead_letter_queue_url
}

output "feed_function_name" {
  description = "The Lambda that turns remote feed requests into feed commands."
  value       = module.feed_command.function_name
}

output "command_topic" {
  description = "The IoT Core topic of feed commands ([sinks.iot_core] command_topic)."
  value       = var.command_topic
}

output "iot_data_endpoint" {
  description = "The account's IoT Core data endpoint ([sinks.iot_core] endpoint)."
  value       = module.feed_command.iot_data_endpoint
}

output "credentials_endpoint" {
  description = "The account's IoT credentials provider endpoint ([cloud.credentials_provider] endpoint)."
  value       = module.credentials_provider.endpoint
}

output "role_alias" {
  description = "The role alias gateways trade their certificate at ([cloud.credentials_provider] role_alias)."
  # The name as configured, not read back from the alias: known at plan time.
  value = var.role_alias_name
}

output "gateways" {
  description = "Per thing name: its certificate (ARN, id, PEM) and events topic."
  value       = module.iot_gateways.things
}
