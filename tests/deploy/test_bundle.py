"""`make bundle`: the function source has main.py at its root and everything main.py imports."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from importlib import metadata

import pytest

from tests.helpers import unavailable

from .conftest import ROOT


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    if not shutil.which("make"):
        unavailable("make is missing")
    out = tmp_path_factory.mktemp("bundle") / "src"
    proc = subprocess.run(["make", "-s", "bundle", f"BUNDLE_DIR={out}"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return out


def test_bundle_layout(bundle):
    assert (bundle / "main.py").read_text() == (ROOT / "functions" / "main.py").read_text()
    assert (bundle / "requirements.txt").is_file()
    assert (bundle / "partybal" / "__init__.py").is_file()
    assert (bundle / "templates").is_dir() and any((bundle / "templates").iterdir())
    assert not list(bundle.rglob("__pycache__"))


def _imports(path) -> set[str]:
    tree = ast.parse(path.read_text())
    mods = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            mods.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level == 1:
            mods |= {f"partybal.{node.module or a.name}" for a in node.names} if node.module is None else {f"partybal.{node.module}"}
    return mods


def test_function_requirements_cover_the_code_they_run(bundle):
    """Third-party modules imported (transitively) from main.py are in functions/requirements.txt."""
    seen, todo, third_party = set(), [bundle / "main.py"], set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for mod in _imports(path):
            top = mod.split(".")[0]
            if top == "partybal":
                parts = mod.split(".")
                cand = bundle.joinpath(*parts).with_suffix(".py")
                if len(parts) == 1:
                    cand = bundle / "partybal" / "__init__.py"
                if cand.is_file():
                    todo.append(cand)
            elif top not in sys.stdlib_module_names and top != "__future__":
                third_party.add(top)
    dists = metadata.packages_distributions()
    reqs = {
        re.split(r"[<>=\[; ]", l.strip())[0].lower().replace("_", "-")
        for l in (bundle / "requirements.txt").read_text().splitlines()
        if l.strip() and not l.strip().startswith("#")
    }
    missing = {}
    for top in third_party:
        names = {d.lower().replace("_", "-") for d in dists.get(top, [top])}
        if not names & reqs:
            missing[top] = sorted(names)
    assert not missing, f"imported by the deployed functions but not in functions/requirements.txt: {missing}"
