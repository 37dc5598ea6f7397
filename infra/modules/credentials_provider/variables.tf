variable "name_prefix" {
  description = "Prefix of the names this module makes."
  type        = string
}

variable "bus_name" {
  description = "The bus the role may put events on."
  type        = string
}

variable "bus_arn" {
  description = "The bus's ARN (the only resource of the role's policy)."
  type        = string
}

variable "event_source" {
  description = "The only source the role may put events with."
  type        = string
}

variable "role_alias_name" {
  description = "The role alias's name."
  type        = string
}

variable "credential_duration_s" {
  description = "How long the temporary credentials live."
  type        = number
}
