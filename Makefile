# partybal — `make demo` and `make test` do all their own set-up.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup system-deps test test-all lint-python evidence demo bench bench-real-size bench-scale bench-archived backfill clean

setup: system-deps $(VENV)/.installed

system-deps:
	@scripts/install-system-deps.sh

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e . 2>/dev/null || $(PY) -m pip install -q --no-deps -e .
	touch $@

# Everything but the `slow` cases. pytest exit 5 (no tests collected) is a failure here.
test: setup lint-python checkov provider-schema
	@$(PY) -m pytest -m "not slow" $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "make test: no tests ran" >&2; exit 1; fi; exit $$rc

test-all: setup lint-python checkov provider-schema
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; [ $$rc -eq 5 ] && exit 1; exit $$rc

# ruff (configured in pyproject.toml): lint, then the formatter in check mode (never rewrites).
# Fix with: $(VENV)/bin/ruff check --fix $(PY_SOURCES) && $(VENV)/bin/ruff format $(PY_SOURCES)
PY_SOURCES := partybal functions scripts tests benchmarks

lint-python: setup
	$(VENV)/bin/ruff check $(PY_SOURCES)
	$(VENV)/bin/ruff format --check $(PY_SOURCES)

# Evidence: the whole reliability suite (slow variants too), then docs/reliability.md regenerated
# from its results. `make test` runs the fast cases but leaves the tracked page alone.
evidence: setup
	PARTYBAL_EVIDENCE=1 $(PY) -m pytest tests/reliability $(PYTEST_ARGS)

# The local stack with the sample data: prints the site URL, serves until Ctrl-C.
# CI-like: make demo DEMO_ARGS=--once (exits 0 once the site is complete).
demo: setup
	$(PY) -m partybal local up $(DEMO_ARGS)

bench: setup
	$(PY) benchmarks/render_large.py

# Small, large, 10-branch and real-size pages (49 metrics, 4 branches, 4 segments, 2 bases, 28 daily
# windows; a 273 MB daily file): seconds, peak memory of the process tree, figures, bytes
# (docs/performance.md "render-real-size"). Takes a quarter of an hour on 2 cores.
bench-real-size: setup
	$(PY) benchmarks/render_real_size.py $(BENCH_ARGS)

# How cost grows: page size, 100/1,000/10,000-experiment TOC, bursts, local backfill (docs/performance.md "scale").
bench-scale: setup
	$(PY) benchmarks/scale.py $(BENCH_ARGS)

# This project against the archived mozilla/partybal on three experiments, in one run (docs/performance.md
# "archived side by side"). Needs its checkout in build/archived-partybal/checkout: see the docstring of
# benchmarks/archived_side_by_side.py. Patch applied: benchmarks/archived_partybal.patch.
bench-archived: setup
	$(PY) benchmarks/archived_side_by_side.py $(BENCH_ARGS)

# Re-render every experiment (after a template/renderer change), e.g.
#   make backfill                                                   # gs://$$RESULTS_BUCKET, RUN_JOB set: one Cloud Run execution
#   make backfill BACKFILL_ARGS="--results sample --out build/site --parallel 2"
#   make backfill BACKFILL_ARGS="--only-stale --parallel 20"
backfill: setup
	$(PY) -m partybal backfill $(BACKFILL_ARGS)

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) build .pytest_cache

# --- deployment (terraform/, renderer_image/, docs/deploy.md) -----------------------------------
# checkov lives in its own venv: its pins clash with the app's.
CHECKOV_VENV    := .venv-checkov
CHECKOV_VERSION := 3.3.30
TERRAFORM       ?= terraform
PROJECT         ?=
REGION          ?= us-central1
IMAGE_TAG       ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo dev)
IMAGE           ?= $(REGION)-docker.pkg.dev/$(PROJECT)/partybal/renderer:$(IMAGE_TAG)
BUNDLE_DIR      ?= build/function-source
# Everything else (site_viewers, public_site, job sizes, ...) goes in a .tfvars file:
#   make deploy ... TF_VAR_FILE=my.tfvars        (see terraform/example.tfvars)
# A relative TF_VAR_FILE is relative to where make runs (terraform runs in terraform/).
TF_VAR_FILE     ?=
TF_VARS          = $(if $(TF_VAR_FILE),-var-file=$(abspath $(TF_VAR_FILE))) \
                   -var project=$(PROJECT) -var region=$(REGION) -var renderer_image=$(IMAGE) \
                   -var results_bucket=$(RESULTS_BUCKET) $(TF_EXTRA_VARS)

.PHONY: checkov lint-terraform provider-schema bundle image deploy _need-project

checkov: $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)

# The providers' schemas (attribute and block names, which are required) for
# tests/deploy/test_provider_schema.py: the cdktf prebuilt provider packages are generated from
# the provider releases terraform/versions.tf pins, and carry them in their .jsii type assembly.
# Pinned exactly; only package.json and .jsii are kept (npm's own cache keeps the tarball), and
# reduced once to schema.compact.json (tests/provider_schema.py).
PROVIDER_SCHEMA_DIR := build/provider-schema
PROVIDER_SCHEMAS    := google@16.12.1 google-beta@16.12.1 archive@11.0.1

provider-schema: $(foreach p,$(PROVIDER_SCHEMAS),$(PROVIDER_SCHEMA_DIR)/$(p)/.jsii)

$(PROVIDER_SCHEMA_DIR)/%/.jsii:
	@command -v npm >/dev/null || { echo "provider-schema: npm is missing (Debian: apt-get install npm)" >&2; exit 1; }
	@rm -rf $(@D) $(@D).tmp && mkdir -p $(@D).tmp
	cd $(@D).tmp && npm pack --silent --no-fund --no-audit "@cdktf/provider-$*" >/dev/null
	tar -xzf $(@D).tmp/*.tgz -C $(@D).tmp package/package.json package/.jsii
	mv $(@D).tmp/package $(@D) && rm -rf $(@D).tmp
	$(PYTHON) tests/provider_schema.py $(@D)

$(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION):
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install -q checkov==$(CHECKOV_VERSION)
	touch $@

lint-terraform: checkov
	$(TERRAFORM) fmt -check -recursive terraform
	$(CHECKOV_VENV)/bin/checkov -d terraform --framework terraform --compact --quiet --skip-download

# Function source: main.py + requirements.txt at the root (what the python311 buildpack wants),
# next to the partybal modules and templates main.py reaches (nothing else). terraform zips this
# folder. Refuses a functions/requirements.txt that differs from what requirements.txt and the
# functions' imports give (regenerate: $(PY) scripts/function_bundle.py requirements --write).
bundle: | $(VENV)/.installed
	@$(PY) scripts/function_bundle.py build $(BUNDLE_DIR)

# The renderer image built on this machine with podman, no registry needed (scripts/image-local.sh):
# a debootstrapped debian:bookworm-slim once (cached in build/image/), then podman's layer cache;
# prints the image size. Needs root. Run the job from it: partybal local up --job-image $(IMAGE_LOCAL)
.PHONY: image-local
IMAGE_LOCAL ?= localhost/partybal-renderer:local

image-local: | $(VENV)/.installed
	@$(PY) scripts/image_requirements.py --check
	@IMAGE_LOCAL=$(IMAGE_LOCAL) scripts/image-local.sh

# Tags are commits and the repository's tags are immutable: commit first, build once.
image: _need-project | $(VENV)/.installed
	@$(PY) scripts/image_requirements.py --check
	@if [ -n "$$(git status --porcelain -- partybal templates r renderer_image requirements.txt scripts/apt-packages.txt .dockerignore)" ]; then \
	  echo "image: commit the renderer's inputs first (the tag is the commit)" >&2; exit 1; fi
	@if gcloud artifacts docker images describe $(IMAGE) --project $(PROJECT) >/dev/null 2>&1; then \
	  echo "image: $(IMAGE) already exists"; \
	elif docker info >/dev/null 2>&1; then \
	  docker build -f renderer_image/Dockerfile -t $(IMAGE) . && docker push $(IMAGE); \
	else \
	  sa=$$($(TERRAFORM) -chdir=terraform output -raw build_service_account 2>/dev/null) && \
	  src=$$($(TERRAFORM) -chdir=terraform output -raw source_bucket 2>/dev/null) && [ -n "$$sa" ] && [ -n "$$src" ] \
	    || { echo "image: no build service account in the terraform state: run make deploy (its first apply creates it)" >&2; exit 1; }; \
	  gcloud builds submit --project $(PROJECT) --region $(REGION) --service-account "$$sa" \
	    --gcs-source-staging-dir "gs://$$src/cloudbuild/source" \
	    --config renderer_image/cloudbuild.yaml --substitutions _IMAGE=$(IMAGE) .; \
	fi

# make deploy PROJECT=my-project REGION=us-central1 RESULTS_BUCKET=jetstream-results
# The first apply creates the APIs, the image repository and the build service account with its
# rights, so the image can be built and pushed before the job that runs it.
deploy: _need-project bundle
	@test -n "$(RESULTS_BUCKET)" || { echo "deploy: RESULTS_BUCKET=<bucket> is required" >&2; exit 1; }
	@test -z "$(TF_VAR_FILE)" -o -f "$(TF_VAR_FILE)" || { echo "deploy: TF_VAR_FILE=$(TF_VAR_FILE) does not exist" >&2; exit 2; }
	$(TERRAFORM) -chdir=terraform init -input=false
	$(TERRAFORM) -chdir=terraform apply -input=false $(TF_VARS) \
	  -target=google_project_service.this -target=google_artifact_registry_repository.renderer \
	  -target=google_artifact_registry_repository_iam_member.build_pushes_renderer \
	  -target=google_storage_bucket_iam_member.build_reads_source -target=google_project_iam_member.build_writes_logs
	$(MAKE) image PROJECT=$(PROJECT) REGION=$(REGION) IMAGE=$(IMAGE)
	$(TERRAFORM) -chdir=terraform apply -input=false $(TF_VARS)

_need-project:
	@test -n "$(PROJECT)" || { echo "set PROJECT=<gcp project id> (and REGION=, default $(REGION))" >&2; exit 1; }
