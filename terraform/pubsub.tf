# render-requests: one message per experiment to render, data = the file-slug (functions/main.py
# defines the exact message format). Published by on_results_finalized, and by hand to re-render
# (output "rerender_command").
#
# Why an explicit push subscription instead of dispatch_render's own event_trigger: a gen2
# event_trigger creates an Eventarc-managed subscription whose retry policy is "retry for up to
# 24 h" with no dead-letter topic, and Terraform cannot configure it. Here the subscription is ours:
# bounded delivery attempts, backoff, and a dead-letter topic that keeps what could not be
# dispatched. functions-framework turns a raw Pub/Sub push body into the same CloudEvent
# (data.message.data = base64 file-slug) that an Eventarc trigger would deliver, so the
# @functions_framework.cloud_event handler is unchanged.

resource "google_pubsub_topic" "render_requests" {
  # checkov:skip=CKV_GCP_83: messages are public experiment slugs; Google-managed encryption is enough and CMEK would add a KMS key to operate.
  name                       = var.topic_name
  message_retention_duration = "86400s"

  depends_on = [google_project_service.this]
}

resource "google_pubsub_topic" "render_dead_letter" {
  # checkov:skip=CKV_GCP_83: messages are public experiment slugs; Google-managed encryption is enough and CMEK would add a KMS key to operate.
  name = "${var.topic_name}-dead-letter"

  depends_on = [google_project_service.this]
}

# Keeps dead-lettered requests for a week so they can be inspected and replayed (docs/deploy.md);
# a topic without a subscription would drop them.
resource "google_pubsub_subscription" "render_dead_letter" {
  name                       = "${var.topic_name}-dead-letter"
  topic                      = google_pubsub_topic.render_dead_letter.id
  message_retention_duration = "604800s"
  ack_deadline_seconds       = 60

  expiration_policy {
    ttl = "" # never expires
  }
}

resource "google_pubsub_subscription" "dispatch" {
  name  = "${var.name_prefix}-dispatch-render"
  topic = google_pubsub_topic.render_requests.id

  # dispatch_render only calls run_job: one minute is plenty.
  ack_deadline_seconds       = 60
  message_retention_duration = "86400s"

  push_config {
    # The topic in the path lets functions-framework fill the CloudEvent source.
    push_endpoint = "${google_cloudfunctions2_function.this["dispatch_render"].service_config[0].uri}/${google_pubsub_topic.render_requests.id}"

    oidc_token {
      service_account_email = google_service_account.events.email
      audience              = google_cloudfunctions2_function.this["dispatch_render"].service_config[0].uri
    }
  }

  retry_policy {
    minimum_backoff = "${var.coalesce_settle_seconds}s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.render_dead_letter.id
    max_delivery_attempts = var.dispatch_max_delivery_attempts
  }

  expiration_policy {
    ttl = "" # never expires, even when no render is requested for a month
  }
}
