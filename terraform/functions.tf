# Four gen2 functions from one source zip (buckets.tf), runtime python311. Entry points are the
# @functions_framework.cloud_event handlers in functions/main.py (tests/deploy checks they exist).
#
# rebuild_toc runs as two functions with the same entry point: a gen2 function has exactly one
# event trigger, and the TOC must follow both status/<slug>.json being written (finalized) and
# pending/<slug> being removed (deleted) when a render ends. Both are capped at one instance.

locals {
  function_source = {
    bucket = google_storage_bucket.source.name
    object = google_storage_bucket_object.functions_source.name
  }

  toc_triggers = {
    finalized = "google.cloud.storage.object.v1.finalized"
    deleted   = "google.cloud.storage.object.v1.deleted"
  }

  toc_env = {
    GOOGLE_CLOUD_PROJECT = var.project
    RESULTS_BUCKET       = local.results_bucket
    SITE_BUCKET          = google_storage_bucket.site.name
    STATE_BUCKET         = google_storage_bucket.state.name
  }
}

resource "google_cloudfunctions2_function" "on_results_finalized" {
  name        = "${var.name_prefix}-on-results-finalized"
  location    = var.region
  description = "Results object written: mark pending/<slug> in the state bucket and request a render."

  build_config {
    runtime           = "python311"
    entry_point       = "on_results_finalized"
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
    available_memory               = "256Mi"
    timeout_seconds                = 60
    max_instance_count             = var.function_max_instances
    ingress_settings               = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
    service_account_email          = google_service_account.finalize.email
    environment_variables = {
      GOOGLE_CLOUD_PROJECT   = var.project
      RESULTS_BUCKET         = local.results_bucket
      STATE_BUCKET           = google_storage_bucket.state.name
      RENDER_TOPIC           = local.render_topic
      COALESCE_STALE_SECONDS = tostring(var.coalesce_stale_seconds)
    }
  }

  event_trigger {
    # The trigger lives where the bucket really is (main.tf reads it: "us" for a US multi-region bucket).
    trigger_region        = local.results_bucket_location
    event_type            = "google.cloud.storage.object.v1.finalized"
    retry_policy          = "RETRY_POLICY_RETRY"
    service_account_email = google_service_account.events.email
    event_filters {
      attribute = "bucket"
      value     = local.results_bucket
    }
  }

  depends_on = [
    google_project_service.this,
    # The build service account's rights must exist before the first build.
    google_project_iam_member.build_writes_logs,
    google_storage_bucket_iam_member.build_reads_source,
    google_artifact_registry_repository_iam_member.build_pushes_functions,
    google_project_iam_member.gcs_agent_pubsub_publisher,
    google_project_iam_member.events_receiver,
  ]
}

# No event_trigger: render-requests reaches it through the push subscription in pubsub.tf, which
# has the bounded retries and the dead-letter topic an Eventarc trigger cannot have.
resource "google_cloudfunctions2_function" "dispatch_render" {
  name        = "${var.name_prefix}-dispatch-render"
  location    = var.region
  description = "Render request: start one execution of the renderer job with PARTYBAL_SLUG/PARTYBAL_PREFIX overrides."

  build_config {
    runtime           = "python311"
    entry_point       = "dispatch_render"
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
    available_memory               = "256Mi"
    timeout_seconds                = 60
    max_instance_count             = var.function_max_instances
    ingress_settings               = "ALLOW_INTERNAL_ONLY" # Pub/Sub push from this project counts as internal
    all_traffic_on_latest_revision = true
    service_account_email          = google_service_account.dispatch.email
    environment_variables = {
      GOOGLE_CLOUD_PROJECT = var.project
      RUN_JOB              = local.run_job
      STATE_BUCKET         = google_storage_bucket.state.name
    }
  }

  depends_on = [
    google_project_service.this,
    # The build service account's rights must exist before the first build.
    google_project_iam_member.build_writes_logs,
    google_storage_bucket_iam_member.build_reads_source,
    google_artifact_registry_repository_iam_member.build_pushes_functions,
  ]
}

resource "google_cloudfunctions2_function" "rebuild_toc" {
  for_each = local.toc_triggers

  name        = "${var.name_prefix}-rebuild-toc-${each.key}"
  location    = var.region
  description = "State object ${each.key}: rewrite index.html (and preview/index.html) in the site bucket."

  build_config {
    runtime           = "python311"
    entry_point       = "rebuild_toc"
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
    max_instance_count             = 1 # one writer of index.html at a time per trigger
    ingress_settings               = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
    service_account_email          = google_service_account.toc.email
    environment_variables          = local.toc_env
  }

  event_trigger {
    trigger_region        = lower(local.bucket_location)
    event_type            = each.value
    retry_policy          = "RETRY_POLICY_RETRY"
    service_account_email = google_service_account.events.email
    event_filters {
      attribute = "bucket"
      value     = google_storage_bucket.state.name
    }
  }

  depends_on = [
    google_project_service.this,
    # The build service account's rights must exist before the first build.
    google_project_iam_member.build_writes_logs,
    google_storage_bucket_iam_member.build_reads_source,
    google_artifact_registry_repository_iam_member.build_pushes_functions,
    google_project_iam_member.gcs_agent_pubsub_publisher,
    google_project_iam_member.events_receiver,
  ]
}
