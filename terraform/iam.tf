# One service account per component, each granted only what it needs, on the resource itself
# (bucket, topic, subscription, job, service account) wherever the API has resource-level IAM.
# Project-level grants exist only where GCP offers nothing narrower, and say so.

resource "google_service_account" "finalize" {
  account_id   = "${var.name_prefix}-finalize"
  display_name = "partybal on_results_finalized"
  description  = "Runs on_results_finalized: coalescing markers in the state bucket, publishes render requests."
}

resource "google_service_account" "dispatch" {
  account_id   = "${var.name_prefix}-dispatch"
  display_name = "partybal dispatch_render"
  description  = "Runs dispatch_render: starts renderer job executions with overrides."
}

resource "google_service_account" "job" {
  account_id   = "${var.name_prefix}-job"
  display_name = "partybal renderer job"
  description  = "Runs the renderer Cloud Run job: reads results, writes pages and status."
}

resource "google_service_account" "toc" {
  account_id   = "${var.name_prefix}-toc"
  display_name = "partybal rebuild_toc"
  description  = "Runs rebuild_toc: lists results and state, writes the site index."
}

resource "google_service_account" "build" {
  account_id   = "${var.name_prefix}-build"
  display_name = "partybal builds"
  description  = "Cloud Build identity of the function builds (build_config.service_account) and of `make image` (gcloud builds submit --service-account): reads sources, pushes images, writes build logs."
}

resource "google_service_account" "events" {
  account_id   = "${var.name_prefix}-events"
  display_name = "partybal event delivery"
  description  = "Identity of the Eventarc triggers and of the render-requests push subscription: may only invoke the partybal functions."
}

# --- on_results_finalized ---------------------------------------------------------------------

# Publishes the file-slug of an experiment whose results changed.
resource "google_pubsub_topic_iam_member" "finalize_publishes_requests" {
  topic  = google_pubsub_topic.render_requests.id
  role   = "roles/pubsub.publisher"
  member = google_service_account.finalize.member
}

# Reads, creates and takes over (overwrites) coalescing markers, and nothing else in the state
# bucket: the condition limits the grant to [preview/]pending/ objects.
resource "google_storage_bucket_iam_member" "finalize_markers" {
  bucket = google_storage_bucket.state.name
  role   = "roles/storage.objectUser"
  member = google_service_account.finalize.member

  condition {
    title       = "pending-markers-only"
    description = "Only pending/ and preview/pending/ coalescing markers."
    expression  = local.pending_markers_only
  }
}

# --- dispatch_render --------------------------------------------------------------------------

# run_job with containerOverrides (PARTYBAL_SLUG/PARTYBAL_PREFIX) needs run.jobs.runWithOverrides,
# which plain roles/run.invoker lacks; granted on this job only.
resource "google_cloud_run_v2_job_iam_member" "dispatch_runs_job" {
  project  = var.project
  location = google_cloud_run_v2_job.renderer.location
  name     = google_cloud_run_v2_job.renderer.name
  role     = "roles/run.jobsExecutorWithOverrides"
  member   = google_service_account.dispatch.member
}

# Records the started execution on the request's pending marker (metadata patch), so the sweeper
# can ask Cloud Run about it; the condition limits the grant to [preview/]pending/ objects.
resource "google_storage_bucket_iam_member" "dispatch_marks_markers" {
  bucket = google_storage_bucket.state.name
  role   = "roles/storage.objectUser"
  member = google_service_account.dispatch.member

  condition {
    title       = "pending-markers-only"
    description = "Only pending/ and preview/pending/ coalescing markers."
    expression  = local.pending_markers_only
  }
}

# No roles/iam.serviceAccountUser on the job's account: actAs is checked when a job is created or
# updated with a service identity (terraform, as the deployer), not when an execution is started.
# Running with overrides needs run.jobs.runWithOverrides on the job and nothing else
# (https://cloud.google.com/run/docs/execute/jobs, "Required roles"); env overrides cannot change
# the identity an execution runs as.

# --- renderer job -----------------------------------------------------------------------------

# Reads the experiment's statistics/metadata/errors objects; never writes Jetstream's bucket.
resource "google_storage_bucket_iam_member" "job_reads_results" {
  bucket = local.results_bucket
  role   = "roles/storage.objectViewer"
  member = google_service_account.job.member
}

# Writes the page and figures, lists and deletes the assets of earlier renders.
resource "google_storage_bucket_iam_member" "job_writes_site" {
  bucket = google_storage_bucket.site.name
  role   = "roles/storage.objectUser"
  member = google_service_account.job.member
}

# Writes status/<slug>.json, deletes pending/<slug> and reads backfill/<run-id>.json slug lists
# (the bucket holds nothing else).
resource "google_storage_bucket_iam_member" "job_writes_state" {
  bucket = google_storage_bucket.state.name
  role   = "roles/storage.objectUser"
  member = google_service_account.job.member
}

# --- rebuild_toc ------------------------------------------------------------------------------

# Lists the results bucket to know every experiment and its periods.
resource "google_storage_bucket_iam_member" "toc_reads_results" {
  bucket = local.results_bucket
  role   = "roles/storage.objectViewer"
  member = google_service_account.toc.member
}

# Lists and reads pending markers and status records.
resource "google_storage_bucket_iam_member" "toc_reads_state" {
  bucket = google_storage_bucket.state.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.toc.member
}

# Writes (overwrites) the two index pages and no other site object.
resource "google_storage_bucket_iam_member" "toc_writes_index" {
  bucket = google_storage_bucket.site.name
  role   = "roles/storage.objectUser"
  member = google_service_account.toc.member

  condition {
    title       = "index-pages-only"
    description = "Only index.html and preview/index.html."
    expression  = "resource.name == \"projects/_/buckets/${google_storage_bucket.site.name}/objects/index.html\" || resource.name == \"projects/_/buckets/${google_storage_bucket.site.name}/objects/preview/index.html\""
  }
}

# --- builds (functions and the renderer image) ------------------------------------------------
# Projects created since 2024 no longer give Cloud Build's default account these rights, so the
# builds run as partybal-build with only what a build does: read its source, push its image, log.

# Build logs go to Cloud Logging (cloudbuild.yaml: CLOUD_LOGGING_ONLY); log writing has no
# resource narrower than the project.
resource "google_project_iam_member" "build_writes_logs" {
  project = var.project
  role    = "roles/logging.logWriter"
  member  = google_service_account.build.member
}

# Reads the function source zips and the repository tarballs `make image` stages under cloudbuild/.
resource "google_storage_bucket_iam_member" "build_reads_source" {
  bucket = google_storage_bucket.source.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.build.member
}

# Pushes the function images (build_config.docker_repository) and their build cache.
resource "google_artifact_registry_repository_iam_member" "build_pushes_functions" {
  project    = var.project
  location   = google_artifact_registry_repository.functions.location
  repository = google_artifact_registry_repository.functions.name
  role       = "roles/artifactregistry.writer"
  member     = google_service_account.build.member
}

# Pushes the renderer image (`make image` through Cloud Build).
resource "google_artifact_registry_repository_iam_member" "build_pushes_renderer" {
  project    = var.project
  location   = google_artifact_registry_repository.renderer.location
  repository = google_artifact_registry_repository.renderer.name
  role       = "roles/artifactregistry.writer"
  member     = google_service_account.build.member
}

# --- event delivery ---------------------------------------------------------------------------

# Eventarc triggers must run as an account holding eventReceiver; it has no resource-level binding.
resource "google_project_iam_member" "events_receiver" {
  project = var.project
  role    = "roles/eventarc.eventReceiver"
  member  = google_service_account.events.member
}

# Eventarc (finalize, TOC, sweeper, Experimenter snapshot) and the push subscription (dispatch)
# call the functions' Cloud Run services with this account's token; invoker is granted on each
# function's service only, one binding per entry of local.functions (functions.tf).
resource "google_cloud_run_v2_service_iam_member" "events_invoke" {
  for_each = { for k, f in google_cloudfunctions2_function.this : k => f.name }

  project  = var.project
  location = var.region
  name     = each.value
  role     = "roles/run.invoker"
  member   = google_service_account.events.member
}

# --- Google service agents --------------------------------------------------------------------

data "google_storage_project_service_account" "gcs" {
  project = var.project

  depends_on = [google_project_service.this]
}

# GCS-triggered Eventarc: the Cloud Storage service agent publishes bucket events to transport
# topics Eventarc creates on the fly, so this cannot be scoped to a topic.
resource "google_project_iam_member" "gcs_agent_pubsub_publisher" {
  project = var.project
  role    = "roles/pubsub.publisher"
  member  = local.gcs_service_agent
}

# The Pub/Sub service agent is created lazily by Google (often only when a push subscription or
# dead-letter policy first needs it), so a first apply could grant roles to an account that does
# not exist yet. This creates it (and returns its email) before the grants below; google 6.x has
# the resource only in google-beta (versions.tf).
resource "google_project_service_identity" "pubsub" {
  provider = google-beta

  project = var.project
  service = "pubsub.googleapis.com"

  depends_on = [google_project_service.this]
}

# The push subscription mints OIDC tokens for the events account to authenticate to dispatch_render.
resource "google_service_account_iam_member" "pubsub_agent_mints_push_tokens" {
  service_account_id = google_service_account.events.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_service_agent

  depends_on = [google_project_service.this]
}

# Dead-lettering: Pub/Sub forwards undeliverable requests to the dead-letter topic...
resource "google_pubsub_topic_iam_member" "pubsub_agent_dead_letters" {
  topic  = google_pubsub_topic.render_dead_letter.id
  role   = "roles/pubsub.publisher"
  member = local.pubsub_service_agent
}

# ...and acknowledges them on the source subscription once forwarded.
resource "google_pubsub_subscription_iam_member" "pubsub_agent_acks_dead_letters" {
  subscription = google_pubsub_subscription.dispatch.id
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

# --- site readers -----------------------------------------------------------------------------

# Only with var.public_site: anyone may read pages (public access prevention is lifted with it).
resource "google_storage_bucket_iam_member" "site_public" {
  count = var.public_site ? 1 : 0

  bucket = google_storage_bucket.site.name
  role   = "roles/storage.objectViewer"
  member = "allUsers"
}

# Private site: the named readers (browse https://storage.cloud.google.com/<site>/index.html).
resource "google_storage_bucket_iam_member" "site_viewers" {
  for_each = toset(var.public_site ? [] : var.site_viewers)

  bucket = google_storage_bucket.site.name
  role   = "roles/storage.objectViewer"
  member = each.value
}
