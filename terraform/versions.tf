terraform {
  required_version = ">= 1.5"

  # Pinned to the releases the schema check checks against (tests/deploy/test_provider_schema.py,
  # schemas from `make provider-schema`): moving a pin means moving PROVIDER_SCHEMAS in the Makefile.
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.50.0"
    }
    # Only for google_project_service_identity, which google 6.x does not have (iam.tf).
    google-beta = {
      source  = "hashicorp/google-beta"
      version = "~> 6.50.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = "~> 2.7.1"
    }
  }
}

provider "google" {
  project = var.project
  region  = var.region
  # Every labellable resource (buckets, topics, functions, job, repository) gets these.
  default_labels = local.labels
}

provider "google-beta" {
  project        = var.project
  region         = var.region
  default_labels = local.labels
}
