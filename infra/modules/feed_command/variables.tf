variable "name_prefix" {
  description = "Prefix of the names this module makes."
  type        = string
}

variable "bus_name" {
  description = "The bus the rules are on."
  type        = string
}

variable "feeds_rule_name" {
  description = "The published rule (used only with publish_every_press)."
  type        = string
}

variable "event_source" {
  description = "The gateways' event source."
  type        = string
}

variable "feed_request_source" {
  description = "The remote feed requests' source: the only events turned into commands by default."
  type        = string
}

variable "command_topic" {
  description = "The IoT Core topic feed commands are published on."
  type        = string
}

variable "publish_every_press" {
  description = "The published behaviour: every press becomes an id-less command."
  type        = bool
}

variable "feed_request_max_age_s" {
  description = "The oldest request still delivered; also how long a command stays valid."
  type        = number
}

variable "dead_letter_queue_arn" {
  description = "Where undeliverable events and failed invocations go."
  type        = string
}

variable "log_retention_days" {
  description = "Retention of the Lambda's log group."
  type        = number
}

variable "runtime" {
  description = "The Lambda's Python runtime."
  type        = string
}

variable "zip_file" {
  description = "The Lambda's package (infra/lambdas/build.py makes it)."
  type        = string
}
