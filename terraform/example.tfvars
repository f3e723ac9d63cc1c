# Example settings for `make deploy ... TF_VAR_FILE=my.tfvars` (copy this file, edit the copy).
# `make deploy` itself passes project, region, results_bucket and renderer_image (from PROJECT=,
# REGION=, RESULTS_BUCKET= and the image it builds): do not set them here.
# Every variable is described in terraform/variables.tf. Lists and maps are why this is a file:
# a `-var 'site_viewers=[...]'` on a make command line is split by the shell.

# Who may read the (private) site: IAM members granted objectViewer on the site bucket.
site_viewers = [
  "group:experimenters@example.com",
  "user:someone@example.com",
]

# Size of one renderer task (R draws figures on all its vCPUs; 8 vCPUs need at least 4Gi).
job_cpu    = "4"
job_memory = "4Gi"

# Extra labels on every labellable resource.
labels = {
  team = "data-science"
}
