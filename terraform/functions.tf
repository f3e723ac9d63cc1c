# Every Cloud Function (gen2) of partybal comes from ONE resource below, google_cloudfunctions2_function.this,
# one instance per entry of local.functions: the map holds what differs between functions (entry
# point, trigger, identity, size, environment), the resource what they share (one source zip from
# buckets.tf, runtime python311, the build identity, internal ingress). Entry points are the
# @functions_framework.cloud_event handlers in functions/main.py (tests/deploy checks every handler
# has its entry). Add a function: a handler in functions/main.py, an entry here, its service account
# and grants in iam.tf.
#
# rebuild_toc is deployed as two functions with the same entry point: a gen2 function has exactly one
# event trigger, and the TOC must follow both status/<slug>.json being written (finalized) and
# pending/<slug> being removed (deleted) when a render ends. Both are capped at one instance.
#
# The topics and schedules that drive sweep_pending and snapshot_experimenter live with their
# component (sweeper.tf, experimenter.tf), the push subscription that drives dispatch_render in pubsub.tf.

locals {
  function_source = {
    bucket = google_storage_bucket.source.name
    object = google_storage_bucket_object.functions_source.name
  }

  toc_env = {
    GOOGLE_CLOUD_PROJECT = var.project
    RESULTS_BUCKET       = local.results_bucket
    SITE_BUCKET          = google_storage_bucket.site.name
    STATE_BUCKET         = google_storage_bucket.state.name
  }

  # Per-function settings. trigger = null: no Eventarc trigger. A trigger's filters are Eventarc
  # attribute filters (storage events: the bucket); pubsub_topic only for Pub/Sub-triggered functions.
  functions = {
    on_results_finalized = {
      entry_point     = "on_results_finalized"
      description     = "Results object written: mark pending/<slug> in the state bucket and request a render."
      memory          = "256Mi"
      timeout_seconds = 60
      max_instances   = var.function_max_instances
      service_account = google_service_account.finalize.email
      env = {
        GOOGLE_CLOUD_PROJECT   = var.project
        RESULTS_BUCKET         = local.results_bucket
        STATE_BUCKET           = google_storage_bucket.state.name
        RENDER_TOPIC           = local.render_topic
        COALESCE_STALE_SECONDS = tostring(var.coalesce_stale_seconds)
      }
      trigger = {
        # The trigger lives where the bucket really is (main.tf reads it: "us" for a US multi-region bucket).
        region       = local.results_bucket_location
        event_type   = "google.cloud.storage.object.v1.finalized"
        retry_policy = "RETRY_POLICY_RETRY"
        filters      = { bucket = local.results_bucket }
      }
    }

    # No trigger: render-requests reaches it through the push subscription in pubsub.tf, which has
    # the bounded retries and the dead-letter topic an Eventarc trigger cannot have. Internal ingress:
    # Pub/Sub push from this project counts as internal.
    dispatch_render = {
      entry_point     = "dispatch_render"
      description     = "Render request: start one execution of the renderer job with PARTYBAL_SLUG/PARTYBAL_PREFIX overrides."
      memory          = "256Mi"
      timeout_seconds = 60
      max_instances   = var.function_max_instances
      service_account = google_service_account.dispatch.email
      env = {
        GOOGLE_CLOUD_PROJECT = var.project
        RUN_JOB              = local.run_job
        STATE_BUCKET         = google_storage_bucket.state.name
      }
      trigger = null
    }

    rebuild_toc_finalized = {
      entry_point     = "rebuild_toc"
      description     = "State object finalized: rewrite index.html (and preview/index.html) in the site bucket."
      memory          = "512Mi"
      timeout_seconds = 300
      max_instances   = 1 # one writer of index.html at a time per trigger
      service_account = google_service_account.toc.email
      env             = local.toc_env
      trigger = {
        region       = lower(local.bucket_location)
        event_type   = "google.cloud.storage.object.v1.finalized"
        retry_policy = "RETRY_POLICY_RETRY"
        filters      = { bucket = google_storage_bucket.state.name }
      }
    }

    rebuild_toc_deleted = {
      entry_point     = "rebuild_toc"
      description     = "State object deleted: rewrite index.html (and preview/index.html) in the site bucket."
      memory          = "512Mi"
      timeout_seconds = 300
      max_instances   = 1 # one writer of index.html at a time per trigger
      service_account = google_service_account.toc.email
      env             = local.toc_env
      trigger = {
        region       = lower(local.bucket_location)
        event_type   = "google.cloud.storage.object.v1.deleted"
        retry_policy = "RETRY_POLICY_RETRY"
        filters      = { bucket = google_storage_bucket.state.name }
      }
    }

    # sweeper.tf: the Cloud Scheduler tick, its topic and the sweeper's grants.
    sweep_pending = {
      entry_point     = "sweep_pending"
      description     = "Scheduled: re-publish render requests of stale pending markers and of results newer than their status."
      memory          = "512Mi"
      timeout_seconds = 300
      max_instances   = 1 # one sweep at a time
      service_account = google_service_account.sweeper.email
      env = {
        GOOGLE_CLOUD_PROJECT   = var.project
        RESULTS_BUCKET         = local.results_bucket
        STATE_BUCKET           = google_storage_bucket.state.name
        RENDER_TOPIC           = local.render_topic
        COALESCE_STALE_SECONDS = tostring(var.coalesce_stale_seconds)
        SWEEP_INTERVAL_SECONDS = tostring(var.sweep_interval_minutes * 60)
      }
      trigger = {
        region       = var.region
        event_type   = "google.cloud.pubsub.topic.v1.messagePublished"
        pubsub_topic = google_pubsub_topic.sweep.id
        retry_policy = "RETRY_POLICY_DO_NOT_RETRY" # the next tick sweeps again
        filters      = {}
      }
    }

    # experimenter.tf: the Cloud Scheduler tick, its topic and the snapshot writer's grant.
    snapshot_experimenter = {
      entry_point     = "snapshot_experimenter"
      description     = "Scheduled: snapshot Experimenter's experiment list into the state bucket when it changed."
      memory          = "512Mi"
      timeout_seconds = 120
      max_instances   = 1 # one writer of the snapshot at a time
      service_account = google_service_account.experimenter.email
      env = {
        GOOGLE_CLOUD_PROJECT = var.project
        STATE_BUCKET         = google_storage_bucket.state.name
        EXPERIMENTER_URL     = var.experimenter_url
      }
      trigger = {
        region       = var.region
        event_type   = "google.cloud.pubsub.topic.v1.messagePublished"
        pubsub_topic = google_pubsub_topic.experimenter_tick.id
        retry_policy = "RETRY_POLICY_DO_NOT_RETRY" # the next tick reads again
        filters      = {}
      }
    }
  }
}

resource "google_cloudfunctions2_function" "this" {
  for_each = local.functions

  name        = "${var.name_prefix}-${replace(each.key, "_", "-")}"
  location    = var.region
  description = each.value.description

  build_config {
    runtime           = "python311"
    entry_point       = each.value.entry_point
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
    available_memory               = each.value.memory
    timeout_seconds                = each.value.timeout_seconds
    max_instance_count             = each.value.max_instances
    ingress_settings               = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
    service_account_email          = each.value.service_account
    environment_variables          = each.value.env
  }

  dynamic "event_trigger" {
    for_each = each.value.trigger[*] # none when trigger = null
    content {
      trigger_region        = event_trigger.value.region
      event_type            = event_trigger.value.event_type
      pubsub_topic          = try(event_trigger.value.pubsub_topic, null)
      retry_policy          = event_trigger.value.retry_policy
      service_account_email = google_service_account.events.email
      dynamic "event_filters" {
        for_each = event_trigger.value.filters
        content {
          attribute = event_filters.key
          value     = event_filters.value
        }
      }
    }
  }

  depends_on = [
    google_project_service.this,
    # The build service account's rights must exist before the first build.
    google_project_iam_member.build_writes_logs,
    google_storage_bucket_iam_member.build_reads_source,
    google_artifact_registry_repository_iam_member.build_pushes_functions,
    # Event delivery: GCS publishes bucket events, the events account receives them.
    google_project_iam_member.gcs_agent_pubsub_publisher,
    google_project_iam_member.events_receiver,
  ]
}

# Addresses of deployments applied before the functions came from one definition (one resource
# per function, rebuild_toc keyed by event): terraform moves their state instead of destroying
# and recreating the functions. Keep them while any such state may exist.
moved {
  from = google_cloudfunctions2_function.on_results_finalized
  to   = google_cloudfunctions2_function.this["on_results_finalized"]
}

moved {
  from = google_cloudfunctions2_function.dispatch_render
  to   = google_cloudfunctions2_function.this["dispatch_render"]
}

moved {
  from = google_cloudfunctions2_function.rebuild_toc["finalized"]
  to   = google_cloudfunctions2_function.this["rebuild_toc_finalized"]
}

moved {
  from = google_cloudfunctions2_function.rebuild_toc["deleted"]
  to   = google_cloudfunctions2_function.this["rebuild_toc_deleted"]
}

moved {
  from = google_cloudfunctions2_function.sweep_pending
  to   = google_cloudfunctions2_function.this["sweep_pending"]
}

moved {
  from = google_cloudfunctions2_function.snapshot_experimenter
  to   = google_cloudfunctions2_function.this["snapshot_experimenter"]
}

moved {
  from = google_cloud_run_v2_service_iam_member.events_invoke_sweep
  to   = google_cloud_run_v2_service_iam_member.events_invoke["sweep_pending"]
}

moved {
  from = google_cloud_run_v2_service_iam_member.events_invoke_experimenter
  to   = google_cloud_run_v2_service_iam_member.events_invoke["snapshot_experimenter"]
}
