output "things" {
  description = "Per thing name: its certificate (ARN, id, PEM) and its topics."
  value = {
    for name, cert in aws_iot_certificate.gateway : name => {
      thing_name      = aws_iot_thing.gateway[name].name
      certificate_arn = cert.arn
      certificate_id  = cert.id
      # A certificate is public (the private key stays on the Pi); the provider marks the
      # attribute sensitive because without a CSR it comes with a key.
      certificate_pem = nonsensitive(cert.certificate_pem)
      events_topic    = "${var.events_topic_prefix}/${name}/events"
    }
  }
}

output "policy_name" {
  description = "The gateways' IoT policy."
  value       = aws_iot_policy.gateway.name
}
