# The cloud half of feedmyfurbabies: the published design's bus, rule and archive, the feed
# path from the cloud (remote feed request -> Lambda -> IoT Core command with an id and bowls),
# one IoT thing per gateway, and the credentials provider that gives gateways short-lived keys.
# README.md, "Deploy the cloud side", has the commands and the costs.

locals {
  lambda_zip = coalesce(var.lambda_zip, "${path.root}/build/feed_command.zip")
}

module "event_bus" {
  source = "./modules/event_bus"

  name_prefix            = var.name_prefix
  bus_name               = var.bus_name
  event_source           = var.event_source
  archive_retention_days = var.archive_retention_days
  log_retention_days     = var.log_retention_days
}

module "feed_command" {
  source = "./modules/feed_command"

  name_prefix            = var.name_prefix
  bus_name               = module.event_bus.bus_name
  feeds_rule_name        = module.event_bus.feeds_rule_name
  event_source           = var.event_source
  feed_request_source    = var.feed_request_source
  command_topic          = var.command_topic
  publish_every_press    = var.publish_every_press
  feed_request_max_age_s = var.feed_request_max_age_s
  dead_letter_queue_arn  = module.event_bus.dead_letter_queue_arn
  log_retention_days     = var.log_retention_days
  runtime                = var.lambda_runtime
  zip_file               = local.lambda_zip
}

module "credentials_provider" {
  source = "./modules/credentials_provider"

  name_prefix           = var.name_prefix
  bus_name              = module.event_bus.bus_name
  bus_arn               = module.event_bus.bus_arn
  event_source          = var.event_source
  role_alias_name       = var.role_alias_name
  credential_duration_s = var.credential_duration_s
}

module "iot_gateways" {
  source = "./modules/iot_gateways"

  name_prefix         = var.name_prefix
  gateways            = var.gateways
  events_topic_prefix = var.events_topic_prefix
  command_topic       = var.command_topic
  role_alias_arn      = module.credentials_provider.role_alias_arn
}
