"""Nothing test-only or local-only is deployed (issue 15, "Must hold" 3).

The two things partybal deploys are the Cloud Functions' source (``make bundle``) and the renderer
image's build context (``renderer_image/Dockerfile`` over the repository root, filtered by
``.dockerignore``). Each must hold the partybal modules its entry points import and nothing else:
no local stack (``partybal/local/``), no tests or test support (``tests/``: synthetic data, the
fault-injecting job), and no test-only code inside a shipped module (fault injection such as
``PARTYBAL_FAULT``).
"""

from __future__ import annotations

import importlib.util
import sys

import pytest

from .bundle_support import make_bundle
from .conftest import ROOT
from .test_renderer_image import _ignored

# Test-only code that must never be in a deployed module (tests/support/faulty_job.py has it).
TEST_ONLY_MARKERS = ("PARTYBAL_FAULT", "os._exit(", "TEST-ONLY", "tests.support", "from tests")
# Where the image's build context could pick files up (the build context is the repository root).
CONTEXT_DIRS = ("partybal", "tests", "templates", "r", "renderer_image", "functions", "scripts", "benchmarks", "sample")


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _problems(shipped: set[str], imported: set[str], read) -> list[str]:
    """Every shipped file that should not be there, with why."""
    problems = []
    for rel in sorted(shipped):
        if rel.startswith("partybal/local/") or rel.startswith("tests/"):
            problems.append(f"{rel}: local-only or test code")
        elif rel.startswith("partybal/") and rel.endswith(".py") and rel not in imported:
            problems.append(f"{rel}: no entry point imports it")
        if rel.endswith(".py"):
            text = read(rel)
            problems += [f"{rel}: test-only code ({m!r})" for m in TEST_ONLY_MARKERS if m in text]
    return problems


def test_problems_are_found():
    """The check itself: it flags each kind of file that must not be deployed."""
    shipped = {
        "partybal/a.py",
        "partybal/unused.py",
        "partybal/local/stack.py",
        "tests/support/faulty_job.py",
        "templates/x.j2",
    }
    texts = {"partybal/a.py": "if os.environ.get('PARTYBAL_FAULT'):\n    os._exit(137)\n"}
    found = _problems(shipped, {"partybal/a.py", "partybal/local/stack.py"}, lambda rel: texts.get(rel, ""))
    assert [p.split(":")[0] for p in found] == [
        "partybal/a.py",
        "partybal/a.py",
        "partybal/local/stack.py",
        "partybal/unused.py",
        "tests/support/faulty_job.py",
    ]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("deployed") / "src")


def test_function_bundle_holds_only_what_the_functions_import(bundle):
    graph, _ = _script("function_bundle").generated()
    shipped = {str(p.relative_to(bundle)) for p in bundle.rglob("*") if p.is_file()}
    imported = {str(p.relative_to(ROOT)) for p in graph.modules.values()}
    assert "partybal/pipeline/toc.py" in shipped and "main.py" in shipped  # the listing is real
    problems = _problems(shipped, imported, lambda rel: (bundle / rel).read_text())
    assert not problems, "deployed with the functions but must not be:\n" + "\n".join(problems)


def test_image_build_context_holds_only_what_the_job_imports():
    graph = _script("image_requirements").job_graph()
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    candidates = {
        str(p.relative_to(ROOT))
        for d in CONTEXT_DIRS
        if (ROOT / d).is_dir()
        for p in (ROOT / d).rglob("*")
        if p.is_file()
    }
    shipped = {rel for rel in candidates if not _ignored(rel, patterns)}
    imported = {str(p.relative_to(ROOT)) for p in graph.modules.values()}
    assert "partybal/pipeline/job.py" in shipped  # the listing is real
    problems = _problems(shipped, imported, lambda rel: (ROOT / rel).read_text())
    assert not problems, "in the renderer image's build context but must not be:\n" + "\n".join(problems)
