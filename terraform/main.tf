# partybal on GCP. The pipeline, one file per concern:
#
#   results bucket --finalize--> on_results_finalized  (functions.tf)  -- pending/<slug> in the state bucket
#                                   | publishes the file-slug
#                                   v
#                    render-requests topic              (pubsub.tf)
#                                   | push subscription, dead-letter after N attempts
#                                   v
#                    dispatch_render                    (functions.tf)
#                                   | run_job with PARTYBAL_SLUG / PARTYBAL_PREFIX overrides
#                                   v
#                    Cloud Run job (renderer image)      (run.tf)      -- page + figures to the site bucket,
#                                                                         status/<slug>.json, deletes pending/<slug>
#   state bucket --finalize/delete--> rebuild_toc       (functions.tf) -- index.html to the site bucket
#
# apis.tf enables services, buckets.tf holds the buckets, iam.tf every service account and grant.

# Jetstream's existing bucket, read for its real location: the finalize trigger must live where the
# bucket is ("us" for a US multi-region bucket, "us-central1" for a regional one).
data "google_storage_bucket" "results" {
  count = var.create_results_bucket ? 0 : 1

  name = var.results_bucket
}

locals {
  labels = merge({ app = "partybal" }, var.labels)

  bucket_location         = upper(var.bucket_location != "" ? var.bucket_location : var.region)
  results_bucket_location = lower(var.create_results_bucket ? google_storage_bucket.results[0].location : data.google_storage_bucket.results[0].location)

  site_bucket   = var.site_bucket != "" ? var.site_bucket : "${var.project}-partybal-site"
  state_bucket  = var.state_bucket != "" ? var.state_bucket : "${var.project}-partybal-state"
  source_bucket = var.source_bucket != "" ? var.source_bucket : "${var.project}-partybal-src"
  # When partybal creates the results bucket, reference the resource so grants and triggers wait for it.
  results_bucket = var.create_results_bucket ? google_storage_bucket.results[0].name : var.results_bucket

  # IAM condition of the grants that write coalescing markers: [preview/]pending/ objects only.
  pending_markers_only = "resource.name.startsWith(\"projects/_/buckets/${google_storage_bucket.state.name}/objects/pending/\") || resource.name.startsWith(\"projects/_/buckets/${google_storage_bucket.state.name}/objects/preview/pending/\")"

  job_name     = "${var.name_prefix}-render"
  render_topic = google_pubsub_topic.render_requests.id # projects/P/topics/T
  run_job      = google_cloud_run_v2_job.renderer.id    # projects/P/locations/L/jobs/J

  # Google-managed service agents. Neither is guaranteed to exist right after its API is enabled:
  # the data source and the service identity (iam.tf) create them before anything is granted to them.
  gcs_service_agent    = "serviceAccount:${data.google_storage_project_service_account.gcs.email_address}"
  pubsub_service_agent = "serviceAccount:${google_project_service_identity.pubsub.email}"
}
