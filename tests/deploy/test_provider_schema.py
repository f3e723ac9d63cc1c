"""terraform/*.tf against the real provider schemas (tests/provider_schema.py): what `terraform
validate` would say about argument and block names, without downloading providers.

The schemas are the pinned cdktf provider packages `make provider-schema` (part of `make setup`)
fetches into build/provider-schema/; terraform/versions.tf must pin the provider releases they were
generated from.
"""

from __future__ import annotations

import re

import hcl2
import pytest

from tests import provider_schema
from tests.helpers import unavailable

from .conftest import ROOT, one, unquote

MAKEFILE = ROOT / "Makefile"


def _pinned_packages() -> list[str]:
    """PROVIDER_SCHEMAS in the Makefile: ["google@16.12.1", ...]."""
    m = re.search(r"^PROVIDER_SCHEMAS\s*:?=\s*(.+)$", MAKEFILE.read_text(), re.M)
    assert m, "Makefile: PROVIDER_SCHEMAS is missing"
    return m.group(1).split()


@pytest.fixture(scope="module")
def schemas() -> dict[str, provider_schema.Schema]:
    out = {}
    for pkg in _pinned_packages():
        pkg_dir = provider_schema.SCHEMA_DIR / pkg
        if not (pkg_dir / ".jsii").is_file():
            unavailable(f"provider schema {pkg} is missing: run `make provider-schema` (make setup does)")
        schema = provider_schema.load(pkg_dir)
        assert schema.package == f"@cdktf/provider-{pkg}", (schema.package, pkg)
        out[schema.local_name] = schema
    return out


def test_makefile_pins_exact_package_versions():
    for pkg in _pinned_packages():
        assert re.fullmatch(r"[a-z-]+@\d+\.\d+\.\d+", pkg), f"PROVIDER_SCHEMAS: {pkg} is not an exact version"


# --- the module ---------------------------------------------------------------------------------


def test_every_block_matches_its_provider_schema(tf, schemas):
    errors = provider_schema.check_documents(tf.docs, schemas)
    assert not errors, "terraform/ does not match the provider schemas:\n" + "\n".join(errors)


def test_checked_every_resource_and_data_block(tf, schemas):
    """The walk saw every block (a parse that silently dropped blocks would pass anything)."""
    count = sum(len(named) for kind in ("resource", "data") for block in tf.blocks(kind) for named in block.values())
    text_count = sum(len(re.findall(r'^(resource|data) "', text, re.M)) for text in tf.text.values())
    assert count == text_count > 20


def test_versions_pin_the_schemas_provider_releases(tf, schemas):
    """versions.tf allows only patch releases of the provider release each schema was generated from."""
    providers = one(one(tf.blocks("terraform"))["required_providers"])
    declared = {unquote(k): v for k, v in providers.items() if not k.startswith("__")}
    assert set(declared) == set(schemas), f"required_providers {sorted(declared)} vs schemas {sorted(schemas)}"
    for name, schema in schemas.items():
        spec = declared[name]
        assert f"registry.terraform.io/{unquote(spec['source'])}" == schema.provider, (name, spec["source"])
        major, minor, _ = schema.provider_version.split(".")
        version = unquote(spec["version"])
        assert re.fullmatch(rf"~> {major}\.{minor}\.\d+", version), (
            f'{name}: version = {version!r}; the schema is {schema.provider} {schema.provider_version}: pin "~> {major}.{minor}.0"'
        )


def test_google_beta_is_the_same_release_as_google(schemas):
    assert schemas["google-beta"].provider_version == schemas["google"].provider_version


# --- the checker can fail -----------------------------------------------------------------------


def _errors(schemas, text: str) -> list[str]:
    return provider_schema.check_documents({"t.tf": hcl2.loads(text)}, schemas)


GOOD_BUCKET = """
resource "google_storage_bucket" "b" {
  count    = 1
  name     = "x"
  location = "US"
  soft_delete_policy {
    retention_duration_seconds = 0
  }
  dynamic "lifecycle_rule" {
    for_each = [1]
    content {
      condition {
        age = 7
      }
      action {
        type = "Delete"
      }
    }
  }
  lifecycle {
    prevent_destroy = true
  }
  depends_on = [google_project_service.this]
}
"""


def test_a_correct_block_with_meta_arguments_and_dynamic_blocks_passes(schemas):
    assert _errors(schemas, GOOD_BUCKET) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            GOOD_BUCKET.replace('location = "US"', 'location = "US"\n  locaton = "US"'),
            "unknown argument or block 'locaton'",
            id="unknown-attribute",
        ),
        pytest.param(
            GOOD_BUCKET.replace("retention_duration_seconds", "retention_seconds"),
            "soft_delete_policy: unknown argument or block 'retention_seconds'",
            id="unknown-nested-attribute",
        ),
        pytest.param(
            GOOD_BUCKET.replace("age = 7", 'age = 7\n        prefix = ["a"]'),
            "dynamic \"lifecycle_rule\".content.condition: unknown argument or block 'prefix'",
            id="unknown-in-dynamic-content",
        ),
        pytest.param(
            GOOD_BUCKET.replace('dynamic "lifecycle_rule"', 'dynamic "lifecycle_rules"'),
            "no block 'lifecycle_rules'",
            id="unknown-dynamic-block",
        ),
        pytest.param(
            GOOD_BUCKET.replace('location = "US"', ""), "missing required ['location']", id="missing-required"
        ),
        pytest.param(
            GOOD_BUCKET.replace('type = "Delete"', ""),
            "action: missing required ['type']",
            id="missing-required-nested",
        ),
        pytest.param(
            GOOD_BUCKET.replace("soft_delete_policy {", "soft_delete_policy = {"),
            "soft_delete_policy: is a block",
            id="block-as-attribute",
        ),
        pytest.param(
            GOOD_BUCKET.replace("prevent_destroy", "prevent_destruction"),
            "lifecycle has unknown argument(s) ['prevent_destruction']",
            id="bad-lifecycle",
        ),
        pytest.param(
            'resource "google_storage_bukket" "b" {\n  name = "x"\n}\n',
            "has no resource google_storage_bukket",
            id="unknown-resource-type",
        ),
        pytest.param(
            'data "google_storage_bucket" "b" {\n  bucket = "x"\n}\n', "missing required ['name']", id="data-source"
        ),
        # In 6.50 the service identity resource exists only in google-beta.
        pytest.param(
            'resource "google_project_service_identity" "p" {\n  service = "pubsub.googleapis.com"\n}\n',
            "has no resource google_project_service_identity",
            id="beta-only-resource-on-google",
        ),
        pytest.param(
            'resource "google_storage_bucket" "b" {\n  provider = google-betta\n  name = "x"\n  location = "US"\n}\n',
            "no schema for provider 'google-betta'",
            id="unknown-provider",
        ),
        pytest.param(
            'provider "google" {\n  regoin = "us-central1"\n}\n',
            "provider google: unknown argument or block 'regoin'",
            id="provider-config",
        ),
        pytest.param(
            """
resource "google_cloudfunctions2_function" "f" {
  name     = "f"
  location = "us-central1"
  build_config {
    runtime = "python311"
    source {
      storage_source {
        bucket = "b"
        objekt = "o"
      }
    }
  }
}
""",
            "build_config.source.storage_source: unknown argument or block 'objekt'",
            id="deeply-nested",
        ),
    ],
)
def test_the_checker_reports_a_wrong_block(schemas, text, expected):
    errors = _errors(schemas, text)
    assert any(expected in e for e in errors), errors


def test_beta_resource_passes_with_the_beta_provider(schemas):
    text = 'resource "google_project_service_identity" "p" {\n  provider = google-beta\n  service = "pubsub.googleapis.com"\n}\n'
    assert _errors(schemas, text) == []
