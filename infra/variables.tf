variable "region" {
  description = "The AWS region everything is created in (the gateway's [cloud.aws] region)."
  type        = string
  default     = "us-east-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.region))
    error_message = "region must be an AWS region name such as us-east-1 or eu-west-2."
  }
}

variable "name_prefix" {
  description = "Prefix of every name this module makes (Lambda, queues, roles, log groups), so two deployments can share an account."
  type        = string
  default     = "fmfb"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,19}$", var.name_prefix))
    error_message = "name_prefix: 1-20 characters, lowercase letters, digits and '-', starting with a letter."
  }
}

variable "bus_name" {
  description = "The EventBridge bus the gateways send their journal to (the published design's bus)."
  type        = string
  default     = "feedmyfurbabies"

  validation {
    condition     = can(regex("^[A-Za-z0-9._-]{1,256}$", var.bus_name)) && var.bus_name != "default"
    error_message = "bus_name: a custom bus name (letters, digits, '.', '_', '-'), not 'default'."
  }
}

variable "event_source" {
  description = "The source of the events gateways put on the bus (the gateway's [sinks.eventbridge] source). The rule 'feeds' matches it."
  type        = string
  default     = "com.feedmyfurbabies"

  validation {
    condition     = can(regex("^[A-Za-z0-9._-]{1,256}$", var.event_source)) && !startswith(var.event_source, "aws.")
    error_message = "event_source: letters, digits, '.', '_', '-', and not starting with 'aws.'."
  }
}

variable "feed_request_source" {
  description = "The source of remote feed requests (the only events the Lambda turns into feed commands). Gateways may not put events with it."
  type        = string
  default     = "com.feedmyfurbabies.remote"

  validation {
    condition     = can(regex("^[A-Za-z0-9._-]{1,256}$", var.feed_request_source)) && !startswith(var.feed_request_source, "aws.")
    error_message = "feed_request_source: letters, digits, '.', '_', '-', and not starting with 'aws.'."
  }
}

variable "archive_retention_days" {
  description = "How long the bus's archive keeps events (0 = for ever). The archive is the cloud copy of every gateway's ledger; replays come from it."
  type        = number
  default     = 365

  validation {
    condition     = var.archive_retention_days >= 0 && floor(var.archive_retention_days) == var.archive_retention_days
    error_message = "archive_retention_days: a whole number of days, 0 (for ever) or more."
  }
}

variable "log_retention_days" {
  description = "Retention of the CloudWatch log groups (the feeds history and the Lambda's logs)."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days: one of CloudWatch's values (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, ... 3653)."
  }
}

variable "command_topic" {
  description = "The IoT Core topic feed commands are published on and gateways subscribe to (the published design's topic)."
  type        = string
  default     = "cat-feeder/action"

  validation {
    condition     = length(var.command_topic) > 0 && !can(regex("[#+$]", var.command_topic))
    error_message = "command_topic: one concrete topic (no MQTT wildcards, not a reserved $ topic)."
  }
}

variable "events_topic_prefix" {
  description = "Each gateway publishes its events to <prefix>/<thing name>/events on IoT Core."
  type        = string
  default     = "feedmyfurbabies"

  validation {
    condition     = length(var.events_topic_prefix) > 0 && !can(regex("[#+$]", var.events_topic_prefix))
    error_message = "events_topic_prefix: a topic prefix without MQTT wildcards."
  }
}

variable "gateways" {
  description = <<-EOT
    One entry per gateway (one IoT thing each; a second feeder is one more entry), keyed by its
    thing name. csr_file is the certificate signing request the gateway made with its own key
    (openssl req -new -key ... -subj /CN=<thing>): the private key never leaves the Pi. A relative
    path is relative to the directory terraform runs in (infra/ with -chdir=infra).
  EOT
  type = map(object({
    csr_file = string
  }))
  default = {}

  validation {
    condition     = alltrue([for name in keys(var.gateways) : can(regex("^[a-zA-Z0-9_-]{1,128}$", name))])
    error_message = "gateways: each key is a thing name of 1-128 letters, digits, '_' or '-' (no ':', no '/': it is part of topics and ARNs)."
  }
}

variable "publish_every_press" {
  description = <<-EOT
    The published design's behaviour, off by default: every event with a click type on the bus
    becomes an id-less feed command on the command topic. A gateway then receives each of its
    own presses back (it recognises and drops them as echoes, but each one costs a Lambda
    invocation and an IoT message), and a published-firmware feeder without a gateway feeds on
    every press. Turn on only for feeders without this gateway.
  EOT
  type        = bool
  default     = false
}

variable "feed_request_max_age_s" {
  description = "A remote feed request older than this is not delivered (EventBridge stops retrying) and the command it makes expires this long after the request."
  type        = number
  default     = 300

  validation {
    condition     = var.feed_request_max_age_s >= 60 && var.feed_request_max_age_s <= 86400
    error_message = "feed_request_max_age_s: 60 to 86400 seconds (EventBridge's limits on an event's age)."
  }
}

variable "lambda_runtime" {
  description = "The feed Lambda's Python runtime (3.12 or newer; it needs nothing but the runtime's boto3)."
  type        = string
  default     = "python3.12"

  validation {
    condition     = can(regex("^python3\\.(1[2-9]|[2-9][0-9])$", var.lambda_runtime))
    error_message = "lambda_runtime: python3.12 or newer."
  }
}

variable "lambda_zip" {
  description = "The feed Lambda's package, made by `python3 infra/lambdas/build.py` (null: infra/build/feed_command.zip)."
  type        = string
  default     = null
}

variable "role_alias_name" {
  description = "The IoT credentials provider's role alias the gateways trade their certificate at for temporary credentials."
  type        = string
  default     = "fmfb-gateway"

  validation {
    condition     = can(regex("^[\\w=,@-]{1,128}$", var.role_alias_name))
    error_message = "role_alias_name: 1-128 of letters, digits, '_', '=', ',', '@', '-'."
  }
}

variable "credential_duration_s" {
  description = "How long the gateways' temporary credentials live (the credentials provider's minimum is 900 s; the gateway refreshes them before they expire)."
  type        = number
  default     = 900

  validation {
    condition     = var.credential_duration_s >= 900 && var.credential_duration_s <= 3600
    error_message = "credential_duration_s: 900 to 3600 seconds (the role's maximum session is one hour)."
  }
}
