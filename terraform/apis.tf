locals {
  services = toset([
    "artifactregistry.googleapis.com", # renderer image
    "cloudbuild.googleapis.com",       # builds the gen2 functions (and `make image`)
    "cloudfunctions.googleapis.com",   # the functions
    "cloudscheduler.googleapis.com",   # the sweep_pending tick
    "eventarc.googleapis.com",         # GCS triggers of the functions
    "iam.googleapis.com",              # service accounts
    "logging.googleapis.com",          # structured logs
    "pubsub.googleapis.com",           # render-requests and dead-letter topics
    "run.googleapis.com",              # renderer job, and the services behind gen2 functions
    "storage.googleapis.com",          # buckets
  ])
}

resource "google_project_service" "this" {
  for_each = local.services

  project = var.project
  service = each.value
  # Other workloads in the project may use these APIs: never disable them on destroy.
  disable_on_destroy = false
}
