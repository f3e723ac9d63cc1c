# sweep_pending: recovers render requests that were lost (partybal/pipeline/sweeper.py). Cloud Scheduler
# publishes to a small topic every var.sweep_interval_minutes; the function takes over pending/<slug>
# markers older than COALESCE_STALE_SECONDS whose recorded execution is not queued or running (their
# request was lost, or the job died before consuming the marker) and re-publishes them, and
# re-requests experiments whose results are newer than their status record (a lost notification).
# Everything it does is idempotent (generation preconditions), so a late or doubled tick is harmless.
# The function itself is the sweep_pending entry of local.functions (functions.tf).

resource "google_pubsub_topic" "sweep" {
  # checkov:skip=CKV_GCP_83: the messages carry no data (a tick); Google-managed encryption is enough.
  name                       = "${var.name_prefix}-sweep-pending"
  message_retention_duration = "3600s"

  depends_on = [google_project_service.this]
}

# The Cloud Scheduler service agent publishes the tick (its service-agent role includes
# pubsub.topics.publish); the job itself has no identity to grant.
resource "google_cloud_scheduler_job" "sweep" {
  name        = "${var.name_prefix}-sweep-pending"
  region      = var.region
  description = "Tick for sweep_pending: re-request renders whose request was lost."
  schedule    = "*/${var.sweep_interval_minutes} * * * *"
  time_zone   = "Etc/UTC"

  pubsub_target {
    topic_name = google_pubsub_topic.sweep.id
    data       = base64encode("sweep")
  }

  depends_on = [google_project_service.this]
}

resource "google_service_account" "sweeper" {
  account_id   = "${var.name_prefix}-sweeper"
  display_name = "partybal sweep_pending"
  description  = "Runs sweep_pending: lists state and results, takes over stale pending markers, publishes render requests."
}

# Lists pending markers and status records (with their metadata) to find lost requests.
resource "google_storage_bucket_iam_member" "sweeper_reads_state" {
  bucket = google_storage_bucket.state.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.sweeper.member
}

# Takes over (overwrites) stale markers and creates markers for reconciled experiments, and
# writes nothing else in the state bucket: the condition limits it to [preview/]pending/.
resource "google_storage_bucket_iam_member" "sweeper_markers" {
  bucket = google_storage_bucket.state.name
  role   = "roles/storage.objectUser"
  member = google_service_account.sweeper.member

  condition {
    title       = "pending-markers-only"
    description = "Only pending/ and preview/pending/ coalescing markers."
    expression  = local.pending_markers_only
  }
}

# Lists the results bucket (names, generations, update times) to compare with status records.
resource "google_storage_bucket_iam_member" "sweeper_reads_results" {
  bucket = local.results_bucket
  role   = "roles/storage.objectViewer"
  member = google_service_account.sweeper.member
}

# Reads the state of the execution recorded on a marker (run.executions.get): a queued or running
# render is not requested again. Granted on the renderer job only (its executions inherit it).
resource "google_cloud_run_v2_job_iam_member" "sweeper_views_executions" {
  project  = var.project
  location = google_cloud_run_v2_job.renderer.location
  name     = google_cloud_run_v2_job.renderer.name
  role     = "roles/run.viewer"
  member   = google_service_account.sweeper.member
}

# Re-publishes render requests.
resource "google_pubsub_topic_iam_member" "sweeper_publishes_requests" {
  topic  = google_pubsub_topic.render_requests.id
  role   = "roles/pubsub.publisher"
  member = google_service_account.sweeper.member
}
