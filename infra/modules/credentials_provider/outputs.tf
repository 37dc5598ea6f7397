output "role_alias_name" {
  description = "The role alias the gateways trade their certificate at."
  value       = aws_iot_role_alias.gateway.alias
}

output "role_alias_arn" {
  description = "The role alias's ARN (the gateways' IoT policy allows it)."
  value       = aws_iot_role_alias.gateway.arn
}

output "role_arn" {
  description = "The role behind the alias."
  value       = aws_iam_role.gateway.arn
}

output "endpoint" {
  description = "The account's IoT credentials provider endpoint."
  value       = data.aws_iot_endpoint.credentials.endpoint_address
}
