"""Shared helpers for the deployment tests: the parsed terraform/ module and the repo paths."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import hcl2
import pytest

ROOT = Path(__file__).resolve().parents[2]
TF_DIR = ROOT / "terraform"


def _load(path: Path) -> dict:
    with path.open() as fh:
        return hcl2.load(fh)


def unquote(value):
    """python-hcl2 may keep the quotes of string literals; strip them."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def key(value) -> str:
    return unquote(value) if isinstance(value, str) else value


class Terraform:
    def __init__(self, tf_dir: Path):
        self.files = sorted(tf_dir.glob("*.tf"))
        self.docs = {p.name: _load(p) for p in self.files}
        self.text = {p.name: p.read_text() for p in self.files}

    def blocks(self, kind: str) -> list[dict]:
        out = []
        for doc in self.docs.values():
            out.extend(doc.get(kind, []))
        return out

    def resources(self, rtype: str) -> dict[str, dict]:
        found = {}
        for block in self.blocks("resource"):
            for t, named in block.items():
                if key(t) != rtype:
                    continue
                for name, body in named.items():
                    found[key(name)] = body
        return found

    def all_resources(self) -> list[tuple[str, str, dict]]:
        out = []
        for block in self.blocks("resource"):
            for t, named in block.items():
                for name, body in named.items():
                    out.append((key(t), key(name), body))
        return out

    def variables(self) -> dict[str, dict]:
        out = {}
        for block in self.blocks("variable"):
            for name, body in block.items():
                out[key(name)] = body
        return out

    def outputs(self) -> dict[str, dict]:
        out = {}
        for block in self.blocks("output"):
            for name, body in block.items():
                out[key(name)] = body
        return out

    def locals(self) -> dict:
        out = {}
        for block in self.blocks("locals"):
            out.update({key(k): v for k, v in block.items()})
        return out


@pytest.fixture(scope="session")
def tf() -> Terraform:
    assert TF_DIR.is_dir(), "terraform/ is missing"
    return Terraform(TF_DIR)


def one(value):
    """Nested blocks come back as a list of one dict."""
    if isinstance(value, list):
        assert len(value) == 1, value
        return value[0]
    return value


# --- the Python side of the contract ----------------------------------------------------------

# os.environ["X"], os.environ.get("X"), os.getenv("X"), environ.get("X") and the project's
# settings.env("X", ...) helper.
ENV_READ_RE = re.compile(
    r"""(?:os\.environ\[\s*|os\.environ\.get\(\s*|os\.getenv\(\s*|environ\)?\.get\(\s*|\benv\(\s*)["']([A-Z][A-Z0-9_]+)["']"""
)


def env_reads(path: Path, cls: str | None = None) -> set[str]:
    """Variables read in ``path`` (only in its class ``cls`` when given: a component's view in
    partybal/settings.py)."""
    text = path.read_text()
    if cls is not None:
        (node,) = [n for n in ast.parse(text).body if isinstance(n, ast.ClassDef) and n.name == cls]
        text = ast.get_source_segment(text, node)
    return set(ENV_READ_RE.findall(text))


def contract_table() -> dict[str, str]:
    """docs/architecture.md "Environment contract": variable -> "used by" cell."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("## Environment contract", 1)[1]
    table = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", cells[0]):
            table[name] = cells[1]
    return table


def cloud_event_handlers(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            for dec in node.decorator_list:
                if ast.unparse(dec) in ("functions_framework.cloud_event", "cloud_event"):
                    names.add(node.name)
    return names
