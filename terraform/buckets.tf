# Three data buckets (docs/architecture.md) plus one for the functions' source zips (and the
# sources `make image` stages for Cloud Build).
#
# Site and source are versioned, so a bad render or a bad deploy can be rolled back by restoring a
# noncurrent generation (docs/deploy.md). The state bucket is deliberately NOT versioned: with
# versioning a delete of pending/<slug> would become an "archived" event and rebuild_toc, which
# listens to "deleted", would never see renders finish; its objects are also disposable bookkeeping.

# --- results (Jetstream's) ------------------------------------------------------------------------

resource "google_storage_bucket" "results" {
  # checkov:skip=CKV_GCP_62: usage/access logs buckets are legacy; reads are covered by Cloud Audit Logs (Data Access) when enabled for storage.googleapis.com.
  count = var.create_results_bucket ? 1 : 0

  name                        = var.results_bucket
  location                    = local.bucket_location
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      num_newer_versions = var.noncurrent_versions_kept
      with_state         = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.this]
}

# --- site (pages, figures, index.html) ------------------------------------------------------------

resource "google_storage_bucket" "site" {
  # Public access prevention is lifted only by the explicit opt-in var.public_site.
  # checkov:skip=CKV_GCP_62: usage/access logs buckets are legacy; reads are covered by Cloud Audit Logs (Data Access) when enabled for storage.googleapis.com.
  name                        = local.site_bucket
  location                    = local.bucket_location
  uniform_bucket_level_access = true
  public_access_prevention    = var.public_site ? "inherited" : "enforced"
  force_destroy               = var.force_destroy

  versioning {
    enabled = true
  }

  # Preview pages (results under preview/) are short-lived by design.
  lifecycle_rule {
    condition {
      age            = 7
      matches_prefix = ["preview/"]
    }
    action {
      type = "Delete"
    }
  }

  # Render history summaries (partybal/pipeline/history.py): written once per render, never
  # deleted by the job; kept var.history_retention_days (previews' go with preview/ above).
  lifecycle_rule {
    condition {
      age            = var.history_retention_days
      matches_prefix = ["history/"]
    }
    action {
      type = "Delete"
    }
  }

  # A replaced render's exports (its CSVs and manifest.json, partybal/page/exports.py) outlive its
  # figures: the job stamps them with a custom time when it deletes the rest of that render's
  # folder, and they go var.history_retention_days later — exports of a live page never expire.
  lifecycle_rule {
    condition {
      days_since_custom_time = var.history_retention_days
      matches_suffix         = [".csv", "/manifest.json"]
    }
    action {
      type = "Delete"
    }
  }

  # Keep a few previous generations of each page for rollback, not every re-render ever made.
  lifecycle_rule {
    condition {
      num_newer_versions = var.noncurrent_versions_kept
      with_state         = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_version_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.this]
}

# --- state (pending/ markers, status/ records) ----------------------------------------------------

resource "google_storage_bucket" "state" {
  # checkov:skip=CKV_GCP_62: usage/access logs buckets are legacy; reads are covered by Cloud Audit Logs (Data Access) when enabled for storage.googleapis.com.
  # checkov:skip=CKV_GCP_78: versioning would turn deletes of pending/<slug> into "archived" events that rebuild_toc does not receive; the objects are disposable bookkeeping rebuilt by re-rendering.
  name                        = local.state_bucket
  location                    = local.bucket_location
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy

  # Soft delete off: the markers churn constantly (every render creates and deletes one) and are
  # disposable, so 7 days of soft-deleted copies would only be billed storage.
  soft_delete_policy {
    retention_duration_seconds = 0
  }

  # Preview bookkeeping goes with the preview pages.
  lifecycle_rule {
    condition {
      age            = 7
      matches_prefix = ["preview/"]
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.this]
}

# --- function sources -----------------------------------------------------------------------------

resource "google_storage_bucket" "source" {
  # checkov:skip=CKV_GCP_62: usage/access logs buckets are legacy; reads are covered by Cloud Audit Logs (Data Access) when enabled for storage.googleapis.com.
  name                        = local.source_bucket
  location                    = local.bucket_location
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy

  versioning {
    enabled = true
  }

  # Soft delete off: every deploy uploads a new zip and noncurrent ones are kept by versioning
  # already (rollback = redeploy an older commit, which rebuilds its zip anyway).
  soft_delete_policy {
    retention_duration_seconds = 0
  }

  lifecycle_rule {
    condition {
      num_newer_versions = var.noncurrent_versions_kept
      with_state         = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  # `make image` via Cloud Build stages the repository here (--gcs-source-staging-dir), where the
  # build service account may read it; a staged tarball is useless once its build ran.
  lifecycle_rule {
    condition {
      age            = 7
      matches_prefix = ["cloudbuild/"]
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.this]
}

# `make bundle` stages functions/main.py, functions/requirements.txt, partybal/ and templates/ in
# build/function-source; the zip is named after its hash so any change redeploys the functions.
data "archive_file" "functions" {
  type        = "zip"
  source_dir  = "${path.module}/../build/function-source"
  output_path = "${path.module}/../build/function-source.zip"
  excludes    = ["**/__pycache__/**", "**/*.pyc"]
}

resource "google_storage_bucket_object" "functions_source" {
  name   = "functions/source-${data.archive_file.functions.output_md5}.zip"
  bucket = google_storage_bucket.source.name
  source = data.archive_file.functions.output_path
}
