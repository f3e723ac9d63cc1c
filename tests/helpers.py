"""Helpers shared by test modules (import as ``from tests.helpers import …``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample"
ARTIFACTS = ROOT / "tests" / "artifacts"


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def copy_sample(dest: Path, file_slug: str) -> Path:
    for path in SAMPLE.rglob(f"*_{file_slug}*.json"):
        target = dest / path.relative_to(SAMPLE)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return dest
