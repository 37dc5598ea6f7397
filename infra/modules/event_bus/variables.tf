variable "name_prefix" {
  description = "Prefix of the names this module makes."
  type        = string
}

variable "bus_name" {
  description = "The custom event bus's name."
  type        = string
}

variable "event_source" {
  description = "The gateways' event source: the rule `feeds` matches it."
  type        = string
}

variable "archive_retention_days" {
  description = "How long the archive keeps events (0 = for ever)."
  type        = number
}

variable "log_retention_days" {
  description = "Retention of the history log group."
  type        = number
}
