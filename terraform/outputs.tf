output "site_bucket" {
  description = "Bucket holding the rendered pages and index.html."
  value       = google_storage_bucket.site.name
}

output "state_bucket" {
  description = "Bucket holding pending/ markers and status/ records."
  value       = google_storage_bucket.state.name
}

output "source_bucket" {
  description = "Bucket holding the function source zips and the sources `make image` stages for Cloud Build (cloudbuild/)."
  value       = google_storage_bucket.source.name
}

output "build_service_account" {
  description = "Service account the builds run as (projects/P/serviceAccounts/EMAIL): `gcloud builds submit --service-account`."
  value       = google_service_account.build.id
}

output "results_bucket" {
  description = "Bucket whose results objects trigger renders."
  value       = local.results_bucket
}

output "render_topic" {
  description = "Pub/Sub topic of render requests (projects/P/topics/T)."
  value       = google_pubsub_topic.render_requests.id
}

output "dead_letter_subscription" {
  description = "Subscription keeping render requests that could not be dispatched."
  value       = google_pubsub_subscription.render_dead_letter.id
}

output "job_name" {
  description = "Cloud Run job that renders one experiment per execution."
  value       = google_cloud_run_v2_job.renderer.name
}

output "run_job" {
  description = "Full name of the renderer job (projects/P/locations/L/jobs/J): RUN_JOB for `make backfill`."
  value       = google_cloud_run_v2_job.renderer.id
}

output "site_url" {
  description = "Table of contents of the site: public URL with public_site, otherwise the authenticated browser URL (needs objectViewer)."
  value = var.public_site ? (
    "https://storage.googleapis.com/${google_storage_bucket.site.name}/index.html"
    ) : (
    "https://storage.cloud.google.com/${google_storage_bucket.site.name}/index.html"
  )
}

output "renderer_repository" {
  description = "Artifact Registry path to push renderer images to."
  value       = "${var.region}-docker.pkg.dev/${var.project}/${google_artifact_registry_repository.renderer.repository_id}"
}

output "rerender_command" {
  description = "Re-render one experiment: replace <slug> with its (file-)slug."
  value       = "gcloud pubsub topics publish ${google_pubsub_topic.render_requests.name} --message=<slug> --project=${var.project}"
}
