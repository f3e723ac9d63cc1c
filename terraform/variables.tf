# --- where ------------------------------------------------------------------------------------

variable "project" {
  type        = string
  description = "GCP project id that hosts partybal (functions, job, topic, site and state buckets)."
}

variable "region" {
  type        = string
  default     = "us-central1"
  description = "Region of the functions, the Cloud Run job, the Artifact Registry repository and (by default) the buckets."
}

variable "name_prefix" {
  type        = string
  default     = "partybal"
  description = "Prefix of every resource name (functions, job, service accounts, topic subscriptions)."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,14}$", var.name_prefix))
    error_message = "name_prefix must be 2-15 lowercase letters, digits or '-', starting with a letter (service account ids are limited to 30 characters)."
  }
}

variable "labels" {
  type        = map(string)
  default     = {}
  description = "Extra labels put on every labellable resource (merged with app=partybal)."
}

# --- buckets ----------------------------------------------------------------------------------

variable "results_bucket" {
  type        = string
  description = "Name of the results bucket Jetstream writes to (usually Jetstream's existing bucket). Must be in var.project: Eventarc Cloud Storage triggers only watch buckets of their own project."
}

variable "create_results_bucket" {
  type        = bool
  default     = false
  description = "Create the results bucket (for a sandbox or a staging copy). By default it is referenced as an existing bucket that partybal only reads."
}

variable "site_bucket" {
  type        = string
  default     = ""
  description = "Name of the site bucket (rendered pages, figures, index.html). Empty means \"<project>-partybal-site\"."
}

variable "state_bucket" {
  type        = string
  default     = ""
  description = "Name of the state bucket (pending/ coalescing markers, status/ render records; never public). Empty means \"<project>-partybal-state\"."
}

variable "source_bucket" {
  type        = string
  default     = ""
  description = "Name of the private bucket holding the Cloud Functions source zips. Empty means \"<project>-partybal-src\"."
}

variable "bucket_location" {
  type        = string
  default     = ""
  description = "Location of the site, state and source buckets (and of the results bucket when created). Empty means var.region."
}

variable "public_site" {
  type        = bool
  default     = false
  description = "Serve the site bucket to everyone (allUsers objectViewer, public access prevention inherited). Off by default: the site is then readable only by var.site_viewers."
}

variable "site_viewers" {
  type        = list(string)
  default     = []
  description = "IAM members (e.g. \"group:experimenters@example.com\") granted objectViewer on the site bucket when it is not public."
}

variable "noncurrent_versions_kept" {
  type        = number
  default     = 3
  description = "Noncurrent object versions kept per object in the versioned buckets (site, source); older ones are deleted."
}

variable "noncurrent_version_days" {
  type        = number
  default     = 30
  description = "Days after which a noncurrent object version is deleted from the versioned buckets, whatever its rank."
}

variable "history_retention_days" {
  type        = number
  default     = 400
  description = "Days the site bucket keeps each render's history summary (history/<slug>/<render-id>.json, the page's \"Changes since\" and History section, the Atom feeds), and of a replaced render's CSV exports and manifest.json (counted from when its page was replaced); the job never deletes them. 400: a year of an experiment and then some."

  validation {
    condition     = var.history_retention_days >= 1 && var.history_retention_days <= 36500 && floor(var.history_retention_days) == var.history_retention_days
    error_message = "history_retention_days must be a whole number of days between 1 and 36500."
  }
}

variable "force_destroy" {
  type        = bool
  default     = false
  description = "Allow `terraform destroy` to delete non-empty site, state and source buckets. Keep false outside sandboxes."
}

# --- renderer job -----------------------------------------------------------------------------

variable "artifact_repository" {
  type        = string
  default     = "partybal"
  description = "Id of the Artifact Registry docker repository created for the renderer image."
}

variable "renderer_image" {
  type        = string
  description = "Full renderer image reference, e.g. \"us-central1-docker.pkg.dev/P/partybal/renderer:<git-sha>\" (`make image` builds and pushes it; `make deploy` passes it)."
}

variable "job_cpu" {
  type        = string
  default     = "4"
  description = "vCPUs of one renderer task: \"1\", \"2\", \"4\", \"6\" or \"8\" (Cloud Run needs job_memory of at least 2Gi for 4 vCPUs, 4Gi for 6 or 8). R draws figures on all of them, a forked worker each (≈ 135 MiB apiece at real size); a real-size page's drawing takes about 190 CPU seconds (docs/performance.md, \"How many vCPUs a render gets\")."

  validation {
    condition     = contains(["1", "2", "4", "6", "8"], var.job_cpu)
    error_message = "job_cpu must be \"1\", \"2\", \"4\", \"6\" or \"8\" (the vCPU values a Cloud Run job takes)."
  }
}

variable "job_memory" {
  type        = string
  default     = "4Gi"
  description = "Memory of one renderer task (Cloud Run limit, e.g. \"2Gi\", \"4Gi\"; at least 2Gi for 4 vCPUs, 4Gi for 6 or 8)."

  validation {
    condition     = can(regex("^[1-9][0-9]*(Mi|Gi)$", var.job_memory))
    error_message = "job_memory must be a whole number of Mi or Gi, e.g. \"4Gi\"."
  }
}

variable "job_timeout_seconds" {
  type        = number
  default     = 1800
  description = "Timeout of one renderer task attempt, in seconds. R gets this minus 60 s (PARTYBAL_R_TIMEOUT; the last minute writes the status record)."

  # At the minimum R still gets 240 s: a page costs ~1.8 s of R start-up plus ~0.3 s per figure per
  # core (docs/performance.md), so even a few hundred figures on one core fit.
  validation {
    condition     = var.job_timeout_seconds >= 300 && var.job_timeout_seconds <= 86400 && floor(var.job_timeout_seconds) == var.job_timeout_seconds
    error_message = "job_timeout_seconds must be a whole number of seconds between 300 (R gets the timeout minus 60 s) and 86400."
  }
}

variable "asset_grace_seconds" {
  type        = number
  default     = 3600
  description = "How long the figures of a replaced report page stay in the site bucket after a re-render replaced it, in seconds, so that open tabs and cached copies (pages are cached for 60 s) still load them. The figures of the page just replaced are kept until the next render in any case."

  validation {
    condition     = var.asset_grace_seconds >= 60 && var.asset_grace_seconds <= 2592000
    error_message = "asset_grace_seconds must be between 60 (the pages' max-age) and 2592000 (30 days)."
  }
}

variable "max_input_file_bytes" {
  type        = number
  default     = 805306368 # 768 MiB: twice the real-size daily file (≈ 270 MB) fits with room; within the 4Gi job_memory bound (docs/performance.md, "Memory bound")
  description = "Largest results file (bytes) a render reads (PARTYBAL_MAX_FILE_BYTES); a larger one ends the render as failed, naming the file and the limit. Keep it well under job_memory (docs/performance.md)."

  validation {
    condition     = var.max_input_file_bytes >= 1048576 && floor(var.max_input_file_bytes) == var.max_input_file_bytes
    error_message = "max_input_file_bytes must be a whole number of bytes, at least 1048576 (1 MiB)."
  }
}

variable "max_experiment_input_bytes" {
  type        = number
  default     = 1610612736 # 1.5 GiB; with PARTYBAL_MAX_ROWS (5,000,000) the render stays within 4Gi (docs/performance.md, "Memory bound")
  description = "Largest total size (bytes) of one experiment's results files a render reads (PARTYBAL_MAX_EXPERIMENT_BYTES)."

  validation {
    condition     = var.max_experiment_input_bytes >= 1048576 && floor(var.max_experiment_input_bytes) == var.max_experiment_input_bytes
    error_message = "max_experiment_input_bytes must be a whole number of bytes, at least 1048576 (1 MiB)."
  }
}

variable "max_statistics_rows" {
  type        = number
  default     = 5000000
  description = "Most statistics rows one experiment may have (PARTYBAL_MAX_ROWS), counted while the files are streamed; more ends the render as failed, naming the file and the limit."

  validation {
    condition     = var.max_statistics_rows >= 1000 && floor(var.max_statistics_rows) == var.max_statistics_rows
    error_message = "max_statistics_rows must be a whole number, at least 1000."
  }
}

variable "max_figures_per_page" {
  type        = number
  default     = 1500
  description = "The most figures one page may draw (PARTYBAL_MAX_FIGURES); a page over it fails before R starts."

  validation {
    condition     = var.max_figures_per_page >= 1 && floor(var.max_figures_per_page) == var.max_figures_per_page
    error_message = "max_figures_per_page must be a whole number, at least 1."
  }
}

variable "job_max_retries" {
  type        = number
  default     = 1
  description = "Retries of a failed renderer task within one execution (Cloud Run job max_retries)."

  validation {
    condition     = var.job_max_retries >= 0 && var.job_max_retries <= 10
    error_message = "job_max_retries must be between 0 and 10."
  }
}

variable "job_parallelism" {
  type        = number
  default     = 0
  description = "Tasks of one execution that run at once (template.parallelism); 0 = no limit. A render execution has one task; a backfill execution has --parallel tasks, which all run at once with 0. An execution cannot override it (RunJobRequest overrides have task_count, not parallelism), so a limit here caps every backfill."

  validation {
    condition     = var.job_parallelism >= 0 && floor(var.job_parallelism) == var.job_parallelism
    error_message = "job_parallelism must be 0 (no limit) or a positive whole number."
  }
}

variable "job_deletion_protection" {
  type        = bool
  default     = true
  description = "Terraform-side deletion protection of the Cloud Run job."
}

# --- coalescing and delivery ------------------------------------------------------------------

variable "coalesce_stale_seconds" {
  type        = number
  default     = 900
  description = "A pending/<slug> marker older than this is considered abandoned and taken over by the next results event (COALESCE_STALE_SECONDS)."
}

variable "coalesce_settle_seconds" {
  type        = number
  default     = 30
  description = "Minimum backoff, in seconds, before a failed render request is redelivered to the dispatcher; Jetstream writes an experiment's objects in a burst, so a short settle avoids rendering half a result set on retries."

  validation {
    condition     = var.coalesce_settle_seconds >= 10 && var.coalesce_settle_seconds <= 600
    error_message = "coalesce_settle_seconds must be between 10 and 600 (Pub/Sub retry backoff bounds)."
  }
}

variable "dispatch_max_delivery_attempts" {
  type        = number
  default     = 5
  description = "Deliveries of one render request to the dispatcher before it goes to the dead-letter topic."

  validation {
    condition     = var.dispatch_max_delivery_attempts >= 5 && var.dispatch_max_delivery_attempts <= 100
    error_message = "Pub/Sub allows 5 to 100 delivery attempts."
  }
}

variable "sweep_interval_minutes" {
  type        = number
  default     = 10
  description = "Minutes between two runs of sweep_pending (Cloud Scheduler), which re-requests renders whose request was lost (pending markers older than coalesce_stale_seconds, results newer than their status)."

  validation {
    condition     = var.sweep_interval_minutes >= 1 && var.sweep_interval_minutes <= 30 && 60 % var.sweep_interval_minutes == 0
    error_message = "sweep_interval_minutes must divide 60 (1, 2, 3, 4, 5, 6, 10, 12, 15, 20 or 30): it is a */N cron."
  }
}

variable "experimenter_url" {
  type        = string
  default     = "https://experimenter.services.mozilla.com"
  description = "Experimenter whose /api/v6/experiments/ snapshot_experimenter copies into the state bucket (names, dates, branch ratios on pages), or \"off\"."

  validation {
    condition     = var.experimenter_url == "off" || can(regex("^https?://[^/]+", var.experimenter_url))
    error_message = "experimenter_url must be an http(s) URL or \"off\"."
  }
}

variable "experimenter_snapshot_minutes" {
  type        = number
  default     = 30
  description = "Minutes between two snapshots of Experimenter's experiment list (written only when it changed)."

  validation {
    condition     = var.experimenter_snapshot_minutes >= 1 && var.experimenter_snapshot_minutes <= 30 && 60 % var.experimenter_snapshot_minutes == 0
    error_message = "experimenter_snapshot_minutes must divide 60 (1, 2, 3, 4, 5, 6, 10, 12, 15, 20 or 30): it is a */N cron."
  }
}

variable "topic_name" {
  type        = string
  default     = "render-requests"
  description = "Name of the Pub/Sub topic carrying render requests (one message = one file-slug)."
}

variable "function_max_instances" {
  type        = number
  default     = 10
  description = "Maximum instances of the finalize and dispatch functions (the TOC functions are always capped at 1)."
}
