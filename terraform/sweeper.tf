# sweep_pending: recovers render requests that were lost (partybal/sweeper.py). Cloud Scheduler
# publishes to a small topic every var.sweep_interval_minutes; the function takes over pending/<slug>
# markers older than COALESCE_STALE_SECONDS whose recorded execution is not queued or running (their
# request was lost, or the job died before consuming the marker) and re-publishes them, and
# re-requests experiments whose results are newer than their status record (a lost notification).
# Everything it does is idempotent (generation preconditions), so a late or doubled tick is harmless.

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

resource "google_cloudfunctions2_function" "sweep_pending" {
  name        = "${var.name_prefix}-sweep-pending"
  location    = var.region
  description = "Scheduled: re-publish render requests of stale pending markers and of results newer than their status."

  build_config {
    runtime           = "python311"
    entry_point       = "sweep_pending"
    service_account   = google_service_account.build.id
    docker_repository = google_artifact_registry_repository.functions.id
    source {
      storage_source {
        bucket = local.function_source.bucket
        object = local.function_source.object
      }
    }
  }

  service_config {
    available_memory               = "512Mi"
    timeout_seconds                = 300
    max_instance_count             = 1 # one sweep at a time
    ingress_settings               = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
    service_account_email          = google_service_account.sweeper.email
    environment_variables = {
      GOOGLE_CLOUD_PROJECT   = var.project
      RESULTS_BUCKET         = local.results_bucket
      STATE_BUCKET           = google_storage_bucket.state.name
      RENDER_TOPIC           = local.render_topic
      COALESCE_STALE_SECONDS = tostring(var.coalesce_stale_seconds)
      SWEEP_INTERVAL_SECONDS = tostring(var.sweep_interval_minutes * 60)
    }
  }

  event_trigger {
    trigger_region        = var.region
    event_type            = "google.cloud.pubsub.topic.v1.messagePublished"
    pubsub_topic          = google_pubsub_topic.sweep.id
    retry_policy          = "RETRY_POLICY_DO_NOT_RETRY" # the next tick sweeps again
    service_account_email = google_service_account.events.email
  }

  depends_on = [
    google_project_service.this,
    # The build service account's rights must exist before the first build.
    google_project_iam_member.build_writes_logs,
    google_storage_bucket_iam_member.build_reads_source,
    google_artifact_registry_repository_iam_member.build_pushes_functions,
    google_project_iam_member.events_receiver,
  ]
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

# The Eventarc Pub/Sub trigger calls the function's Cloud Run service with the events account.
resource "google_cloud_run_v2_service_iam_member" "events_invoke_sweep" {
  project  = var.project
  location = var.region
  name     = google_cloudfunctions2_function.sweep_pending.name
  role     = "roles/run.invoker"
  member   = google_service_account.events.member
}
