output "function_name" {
  description = "The feed Lambda's name."
  value       = aws_lambda_function.this.function_name
}

output "function_arn" {
  description = "The feed Lambda's ARN."
  value       = aws_lambda_function.this.arn
}

output "feed_requests_rule_name" {
  description = "The rule that sends remote feed requests to the Lambda."
  value       = aws_cloudwatch_event_rule.feed_requests.name
}

output "iot_data_endpoint" {
  description = "The account's IoT Core data endpoint (ATS)."
  value       = data.aws_iot_endpoint.data.endpoint_address
}
