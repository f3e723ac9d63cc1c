# snapshot_experimenter: keeps a copy of Experimenter's experiment list in the state bucket
# (partybal/pipeline/experimenter.py), so renders and the TOC never depend on Experimenter being up. Cloud
# Scheduler publishes a tick every var.experimenter_snapshot_minutes; the function reads
# {EXPERIMENTER_URL}/api/v6/experiments/, validates every entry with mozilla_nimbus_schemas (an entry
# that does not validate is skipped and logged) and writes experimenter/experiments-v6.json only when
# the list changed (generation precondition). Experimenter down: logged, the last snapshot stays.
# The function itself is the snapshot_experimenter entry of local.functions (functions.tf).

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
