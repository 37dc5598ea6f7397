output "role_alias_name" {
  description = "The role alias the gateways trade their certificate at."
  value       = aws_iot_role_alias.gateway.alias
}

output "role_alias_arn" {
  description = "The role alias's ARN (the gateways' IoT policy allows it)."
  # Spelt out, not read from the alias: known at plan time, so the IoT policy is too.
  value = "arn:${data.aws_partition.current.partition}:iot:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:rolealias/${aws_iot_role_alias.gateway.alias}"
}

output "role_arn" {
  description = "The role behind the alias."
  value       = aws_iam_role.gateway.arn
}

output "endpoint" {
  description = "The account's IoT credentials provider endpoint."
  value       = data.aws_iot_endpoint.credentials.endpoint_address
}
