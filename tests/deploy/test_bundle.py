"""`make bundle`: the function source holds main.py, its generated requirements.txt and exactly the
partybal modules and templates main.py reaches (scripts/function_bundle.py). That the deployed
functions start from it is tests/deploy/test_function_startup.py."""

from __future__ import annotations

import importlib.util
import sys
import textwrap

import pytest

from .bundle_support import make_bundle
from .conftest import ROOT


def _load_script():
    spec = importlib.util.spec_from_file_location("function_bundle", ROOT / "scripts" / "function_bundle.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


fb = _load_script()


@pytest.fixture(scope="module")
def generated():
    """(import graph, functions/requirements.txt as generated now)."""
    return fb.generated()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("bundle") / "src")


def test_bundle_layout(bundle):
    assert (bundle / "main.py").read_text() == (ROOT / "functions" / "main.py").read_text()
    assert (bundle / "requirements.txt").read_text() == (ROOT / "functions" / "requirements.txt").read_text()
    assert (bundle / "partybal" / "__init__.py").is_file()
    assert (bundle / "templates" / "toc.html.j2").is_file()
    assert not list(bundle.rglob("__pycache__"))


def test_bundle_ships_only_what_the_functions_import(bundle, generated):
    graph, _ = generated
    shipped = {str(p.relative_to(bundle)) for p in bundle.rglob("*") if p.is_file()}
    expected = {"main.py", "requirements.txt"}
    expected |= {str(p.relative_to(ROOT)) for p in graph.modules.values()}
    expected |= {f"templates/{t}" for t in graph.templates}
    assert shipped == expected
    # the test-only stand-ins and the renderer's side are not deployed with the functions
    assert (
        not {
            "partybal/local/cloudrun.py",
            "partybal/local/stack.py",
            "tests/support/synthetic.py",
            "partybal/pipeline/job.py",
        }
        & shipped
    )


def test_function_requirements_are_generated_from_requirements_txt(generated):
    """functions/requirements.txt is what scripts/function_bundle.py derives (make bundle refuses
    anything else)."""
    _, text = generated
    assert (ROOT / "functions" / "requirements.txt").read_text() == text, f"run {fb.REGENERATE}"


def test_the_chain_that_broke_the_deploy_is_followed(generated):
    """main -> sweeper/toc -> status -> report/results -> mozilla_nimbus_schemas, pydantic."""
    graph, text = generated
    assert {"partybal.pipeline.status", "partybal.page.report", "partybal.page.results"} <= set(graph.modules)
    pinned = {line.split("==")[0].lower() for line in text.splitlines() if "==" in line and not line.startswith("#")}
    assert {"mozilla-nimbus-schemas", "pydantic", "pydantic_core", "functions-framework"} <= pinned


def _write(root, files: dict[str, str]):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def test_import_graph_follows_every_kind_of_import(tmp_path):
    _write(
        tmp_path,
        {
            "functions/main.py": "import os\nfrom partybal import a\n",
            "partybal/__init__.py": "",
            "partybal/a.py": "from . import b\nfrom .sub import c\n",
            "partybal/b.py": """
                from typing import TYPE_CHECKING
                if TYPE_CHECKING:
                    import only_for_typing
                def later():
                    from .d import x
                    from google.cloud import storage
                    return x, storage
            """,
            "partybal/sub/__init__.py": "import jinja2\n",
            "partybal/sub/c.py": "import partybal.e\nRENDER = 'page.html.j2'\n",
            "partybal/d.py": "x = 1\n",
            "partybal/e.py": "import markupsafe.escape\n",
            "partybal/unused.py": "import never_deployed\n",
            "templates/page.html.j2": "{% include 'part.html.j2' %}{{ static('site.css') }}",
            "templates/part.html.j2": "",
            "templates/static/site.css": "",
            "templates/other.html.j2": "",
        },
    )
    graph = fb.import_graph(tmp_path / "functions" / "main.py", tmp_path)
    assert set(graph.modules) == {
        "partybal",
        "partybal.a",
        "partybal.b",
        "partybal.sub",
        "partybal.sub.c",
        "partybal.d",
        "partybal.e",
    }
    assert set(graph.third_party) == {"google.cloud.storage", "jinja2", "markupsafe.escape"}
    assert graph.templates == {"page.html.j2", "part.html.j2", "static/site.css"}


def test_unpinned_or_stale_dependencies_are_one_line_errors(tmp_path, generated):
    graph, text = generated
    pins = fb.read_pins()
    without = {k: v for k, v in pins.items() if k != "pydantic-core"}
    with pytest.raises(fb.BundleError, match=r"pydantic-core .*is not pinned in requirements.txt"):
        fb.resolve(graph, without)
    stale = {**pins, "pydantic": ("pydantic", "0.0.1")}
    with pytest.raises(
        fb.BundleError, match=r"pydantic .* is installed but requirements.txt pins 0.0.1: run make setup"
    ):
        fb.resolve(graph, stale)
    old = tmp_path / "requirements.txt"
    old.write_text("functions-framework==3.10.2\n")
    with pytest.raises(fb.BundleError, match="is out of date"):
        fb.check(old, text)


def test_bundle_build_refuses_stale_requirements(tmp_path):
    """The script's `build` (what `make bundle` runs) checks before staging: shown with a copy of
    the script whose functions/requirements.txt is stale (the shared tree is left alone)."""
    import shutil
    import subprocess

    for rel in ("scripts/function_bundle.py", "functions/main.py", "requirements.txt", "terraform/functions.tf"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / rel, tmp_path / rel)
    shutil.copytree(ROOT / "partybal", tmp_path / "partybal")
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    (tmp_path / "functions" / "requirements.txt").write_text("functions-framework==3.10.2\n")
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "scripts" / "function_bundle.py"), "build", str(out)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "functions/requirements.txt is out of date" in proc.stderr
    assert not out.exists()
