# snapshot_experimenter: keeps a copy of Experimenter's experiment list in the state bucket
# (partybal/experimenter.py), so renders and the TOC never depend on Experimenter being up. Cloud
# Scheduler publishes a tick every var.experimenter_snapshot_minutes; the function reads
# {EXPERIMENTER_URL}/api/v6/experiments/, validates every entry with mozilla_nimbus_schemas (an entry
# that does not validate is skipped and logged) and writes experimenter/experiments-v6.json only when
# the list changed (generation precondition). Experimenter down: logged, the last snapshot stays.

resource "google_pubsub_topic" "experimenter_tick" {
  # checkov:skip=CKV_GCP_83: the messages carry no data (a tick); Google-managed encryption is enough.
  name                       = "${var.name_prefix}-experimenter-snapshot"
  message_retention_duration = "3600s"

  depends_on = [google_project_service.this]
}

resource "google_cloud_scheduler_job" "experimenter_snapshot" {
  name        = "${var.name_prefix}-experimenter-snapshot"
  region      = var.region
  description = "Tick for snapshot_experimenter: copy Experimenter's experiment list into the state bucket when it changed."
  schedule    = "*/${var.experimenter_snapshot_minutes} * * * *"
  time_zone   = "Etc/UTC"

  pubsub_target {
    topic_name = google_pubsub_topic.experimenter_tick.id
    data       = base64encode("snapshot")
  }

  depends_on = [google_project_service.this]
}

resource "google_cloudfunctions2_function" "snapshot_experimenter" {
  name        = "${var.name_prefix}-snapshot-experimenter"
  location    = var.region
  description = "Scheduled: snapshot Experimenter's experiment list into the state bucket when it changed."

  build_config {
    runtime           = "python311"
    entry_point       = "snapshot_experimenter"
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
    timeout_seconds                = 120
    max_instance_count             = 1 # one writer of the snapshot at a time
    ingress_settings               = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
    service_account_email          = google_service_account.experimenter.email
    environment_variables = {
      GOOGLE_CLOUD_PROJECT = var.project
      STATE_BUCKET         = google_storage_bucket.state.name
      EXPERIMENTER_URL     = var.experimenter_url
    }
  }

  event_trigger {
    trigger_region        = var.region
    event_type            = "google.cloud.pubsub.topic.v1.messagePublished"
    pubsub_topic          = google_pubsub_topic.experimenter_tick.id
    retry_policy          = "RETRY_POLICY_DO_NOT_RETRY" # the next tick reads again
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

resource "google_service_account" "experimenter" {
  account_id   = "${var.name_prefix}-experimenter"
  display_name = "partybal snapshot_experimenter"
  description  = "Runs snapshot_experimenter: writes the Experimenter snapshot object of the state bucket."
}

# Reads and (over)writes experimenter/experiments-v6.json, and nothing else in the state bucket.
resource "google_storage_bucket_iam_member" "experimenter_writes_snapshot" {
  bucket = google_storage_bucket.state.name
  role   = "roles/storage.objectUser"
  member = google_service_account.experimenter.member

  condition {
    title       = "experimenter-snapshot-only"
    description = "Only the experimenter/ snapshot object."
    expression  = "resource.name.startsWith(\"projects/_/buckets/${google_storage_bucket.state.name}/objects/experimenter/\")"
  }
}

# The Eventarc Pub/Sub trigger calls the function's Cloud Run service with the events account.
resource "google_cloud_run_v2_service_iam_member" "events_invoke_experimenter" {
  project  = var.project
  location = var.region
  name     = google_cloudfunctions2_function.snapshot_experimenter.name
  role     = "roles/run.invoker"
  member   = google_service_account.events.member
}
