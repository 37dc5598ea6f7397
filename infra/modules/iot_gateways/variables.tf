variable "name_prefix" {
  description = "Prefix of the names this module makes."
  type        = string
}

variable "gateways" {
  description = "Thing name -> { csr_file }: one IoT thing and certificate per gateway."
  type = map(object({
    csr_file = string
  }))
}

variable "events_topic_prefix" {
  description = "Each gateway publishes to <prefix>/<thing name>/events."
  type        = string
}

variable "command_topic" {
  description = "The topic the gateways receive feed commands on."
  type        = string
}

variable "role_alias_arn" {
  description = "The role alias the gateways may trade their certificate at."
  type        = string
}
