terraform {
  required_version = ">= 1.6"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 5.100 is the version the tests apply (and the one in this machine image's mirror).
      version = "~> 5.100"
    }
  }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = {
      Project = "feedmyfurbabies"
      # So a person can find (and price) everything this module made, in the console.
      ManagedBy = "terraform:feedmyfurbabies-gateway/infra"
    }
  }
}
