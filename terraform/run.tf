resource "google_artifact_registry_repository" "renderer" {
  # checkov:skip=CKV_GCP_84: the image holds only public code and Debian/PyPI packages; Google-managed encryption is enough.
  repository_id = var.artifact_repository
  location      = var.region
  format        = "DOCKER"
  description   = "partybal renderer image (renderer_image/Dockerfile), tagged by git commit."

  docker_config {
    immutable_tags = true # a tag is a commit: rolling back = redeploying an older tag
  }

  cleanup_policy_dry_run = false
  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 10
    }
  }
  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      older_than = "7776000s" # 90 days, unless among the 10 most recent
    }
  }

  depends_on = [google_project_service.this]
}

# The images Cloud Build makes of the functions (build_config.docker_repository), instead of the
# gcf-artifacts repository Cloud Functions would create on first deploy: ours exists before the
# first build, so the build service account's write access can be granted on it alone (iam.tf).
# Tags are rewritten by every function build, so they are mutable here.
resource "google_artifact_registry_repository" "functions" {
  # checkov:skip=CKV_GCP_84: the images hold only public code and PyPI packages; Google-managed encryption is enough.
  repository_id = "${var.artifact_repository}-functions"
  location      = var.region
  format        = "DOCKER"
  description   = "partybal Cloud Functions build images (one per function, rebuilt by every deploy)."

  cleanup_policy_dry_run = false
  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 5
    }
  }
  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      older_than = "2592000s" # 30 days, unless among the 5 most recent
    }
  }

  depends_on = [google_project_service.this]
}

# Cloud Run's memory range for a job's vCPUs (https://cloud.google.com/run/docs/configuring/jobs/cpu):
# checked at plan (the job's precondition) instead of failing at apply.
locals {
  job_memory_mib = tonumber(regex("^[0-9]+", var.job_memory)) * (endswith(var.job_memory, "Gi") ? 1024 : 1)
  job_memory_range_mib = {
    "1" = [128, 4096], "2" = [128, 8192], "4" = [2048, 16384], "6" = [4096, 24576], "8" = [4096, 32768]
  }
  job_size_ok = (
    local.job_memory_mib >= local.job_memory_range_mib[var.job_cpu][0] &&
    local.job_memory_mib <= local.job_memory_range_mib[var.job_cpu][1]
  )
}

# One execution renders one experiment. dispatch_render starts it with per-execution env overrides
# PARTYBAL_SLUG (the file-slug) and PARTYBAL_PREFIX ("" or "preview/"); they are deliberately not
# set here, so an execution without overrides fails fast instead of rendering a default.
# `partybal backfill` starts one execution with task_count=N and the override PARTYBAL_SLUGS_URI
# (a slug list in the state bucket) instead: its tasks split the list by CLOUD_RUN_TASK_INDEX.
# parallelism cannot be overridden per execution, so it defaults to 0 (no limit): the N tasks of a
# backfill run at once.
resource "google_cloud_run_v2_job" "renderer" {
  name                = local.job_name
  location            = var.region
  deletion_protection = var.job_deletion_protection

  lifecycle {
    precondition {
      condition     = local.job_size_ok
      error_message = "job_memory ${var.job_memory} is outside what Cloud Run allows for job_cpu ${var.job_cpu}: 1 vCPU 128Mi-4Gi, 2 vCPUs 128Mi-8Gi, 4 vCPUs 2Gi-16Gi, 6 vCPUs 4Gi-24Gi, 8 vCPUs 4Gi-32Gi."
    }
  }

  template {
    task_count  = 1
    parallelism = var.job_parallelism

    template {
      service_account = google_service_account.job.email
      timeout         = "${var.job_timeout_seconds}s"
      max_retries     = var.job_max_retries

      containers {
        image = var.renderer_image

        resources {
          limits = {
            cpu    = var.job_cpu
            memory = var.job_memory
          }
        }

        env {
          name  = "GOOGLE_CLOUD_PROJECT"
          value = var.project
        }
        env {
          name  = "RESULTS_BUCKET"
          value = local.results_bucket
        }
        env {
          name  = "SITE_BUCKET"
          value = google_storage_bucket.site.name
        }
        env {
          name  = "STATE_BUCKET"
          value = google_storage_bucket.state.name
        }
        env {
          # The job's own resource name (built from its parts: the resource cannot reference its
          # own id); with Cloud Run's CLOUD_RUN_EXECUTION it names the execution in running/<slug>.
          name  = "RUN_JOB"
          value = "projects/${var.project}/locations/${var.region}/jobs/${local.job_name}"
        }
        env {
          # Figures of a replaced page stay this long after it was replaced (open tabs, cached copies).
          name  = "ASSET_GRACE_SECONDS"
          value = tostring(var.asset_grace_seconds)
        }
        env {
          # The m of "killed (attempt n of m)" in status records (job.py): retries the job allows.
          name  = "JOB_MAX_RETRIES"
          value = tostring(var.job_max_retries)
        }
        env {
          # Input bounds (storage.py), checked from the listing before any download; a breach is a
          # failed status naming the file and the limit, never an out-of-memory kill.
          name  = "PARTYBAL_MAX_FILE_BYTES"
          value = tostring(var.max_input_file_bytes)
        }
        env {
          name  = "PARTYBAL_MAX_EXPERIMENT_BYTES"
          value = tostring(var.max_experiment_input_bytes)
        }
        env {
          # Rows of one experiment's statistics, counted while streaming them.
          name  = "PARTYBAL_MAX_ROWS"
          value = tostring(var.max_statistics_rows)
        }
        env {
          # A page that would draw more figures fails before R starts (render.py).
          name  = "PARTYBAL_MAX_FIGURES"
          value = tostring(var.max_figures_per_page)
        }
        env {
          # render.py's R timeout follows the task timeout (a minute less, to leave time to write status).
          name  = "PARTYBAL_R_TIMEOUT"
          value = tostring(var.job_timeout_seconds - 60)
        }
      }
    }
  }

  depends_on = [google_project_service.this]
}
