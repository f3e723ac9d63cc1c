# partybal — `make demo` and `make test` do all their own set-up.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup system-deps test test-all demo bench bench-scale backfill clean

setup: system-deps $(VENV)/.installed

system-deps:
	@scripts/install-system-deps.sh

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e . 2>/dev/null || $(PY) -m pip install -q --no-deps -e .
	touch $@

# Everything but the `slow` cases. pytest exit 5 (no tests collected) is a failure here.
test: setup checkov
	@$(PY) -m pytest -m "not slow" $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "make test: no tests ran" >&2; exit 1; fi; exit $$rc

test-all: setup checkov
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; [ $$rc -eq 5 ] && exit 1; exit $$rc

# The local stack with the sample data: prints the site URL, serves until Ctrl-C.
# CI-like: make demo DEMO_ARGS=--once (exits 0 once the site is complete).
demo: setup
	$(PY) -m partybal local up $(DEMO_ARGS)

bench: setup
	$(PY) benchmarks/render_large.py

# How cost grows: page size, 100/1,000/10,000-experiment TOC, bursts, local backfill (docs/performance.md "scale").
bench-scale: setup
	$(PY) benchmarks/scale.py $(BENCH_ARGS)

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
TF_VARS          = -var project=$(PROJECT) -var region=$(REGION) -var renderer_image=$(IMAGE) \
                   -var results_bucket=$(RESULTS_BUCKET) $(TF_EXTRA_VARS)

.PHONY: checkov lint-terraform bundle image deploy _need-project

checkov: $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)

$(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION):
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install -q checkov==$(CHECKOV_VERSION)
	touch $@

lint-terraform: checkov
	$(TERRAFORM) fmt -check -recursive terraform
	$(CHECKOV_VENV)/bin/checkov -d terraform --framework terraform --compact --quiet --skip-download

# Function source: main.py + requirements.txt at the root (what the python311 buildpack wants),
# next to the partybal package and templates/ it imports. terraform zips this folder.
bundle:
	@test -f functions/main.py -a -f functions/requirements.txt || { echo "bundle: functions/main.py and functions/requirements.txt are required" >&2; exit 1; }
	rm -rf $(BUNDLE_DIR) && mkdir -p $(BUNDLE_DIR)
	cp functions/main.py functions/requirements.txt $(BUNDLE_DIR)/
	cp -r partybal templates $(BUNDLE_DIR)/
	find $(BUNDLE_DIR) -name __pycache__ -prune -exec rm -rf {} +

# Tags are commits and the repository's tags are immutable: commit first, build once.
image: _need-project
	@if [ -n "$$(git status --porcelain -- partybal templates r renderer_image requirements.txt scripts/apt-packages.txt)" ]; then \
	  echo "image: commit the renderer's inputs first (the tag is the commit)" >&2; exit 1; fi
	@if gcloud artifacts docker images describe $(IMAGE) --project $(PROJECT) >/dev/null 2>&1; then \
	  echo "image: $(IMAGE) already exists"; \
	elif docker info >/dev/null 2>&1; then \
	  docker build -f renderer_image/Dockerfile -t $(IMAGE) . && docker push $(IMAGE); \
	else \
	  gcloud builds submit --project $(PROJECT) --region $(REGION) \
	    --config renderer_image/cloudbuild.yaml --substitutions _IMAGE=$(IMAGE) .; \
	fi

# make deploy PROJECT=my-project REGION=us-central1 RESULTS_BUCKET=jetstream-results
# The first apply creates the APIs and the image repository, so the image can be pushed before
# the job that runs it.
deploy: _need-project bundle
	@test -n "$(RESULTS_BUCKET)" || { echo "deploy: RESULTS_BUCKET=<bucket> is required" >&2; exit 1; }
	$(TERRAFORM) -chdir=terraform init -input=false
	$(TERRAFORM) -chdir=terraform apply -input=false $(TF_VARS) \
	  -target=google_project_service.this -target=google_artifact_registry_repository.renderer
	$(MAKE) image PROJECT=$(PROJECT) REGION=$(REGION) IMAGE=$(IMAGE)
	$(TERRAFORM) -chdir=terraform apply -input=false $(TF_VARS)

_need-project:
	@test -n "$(PROJECT)" || { echo "set PROJECT=<gcp project id> (and REGION=, default $(REGION))" >&2; exit 1; }
