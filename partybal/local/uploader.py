"""Uploading results the way Jetstream does, so the local stack sees Jetstream's object churn.

For every final object ``statistics/statistics_x_overall.json`` Jetstream's export writes two temp
objects, ``statistics/statistics_x_overall-<8 random lowercase letters>.ndjson`` and
``statistics/statistics_x_overall-<8 random lowercase letters>.json``, copies the latter to the
final name and deletes both temps.  Each of those steps is a finalize or delete notification.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass
from pathlib import Path

from .. import layout


@dataclass(frozen=True)
class Uploaded:
    name: str
    generation: int
    temps: tuple[str, ...]


def _letters(rng: random.Random, n: int = 8) -> str:
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(n))


def results_files(root: str | Path, prefix: str = "") -> list[tuple[Path, str]]:
    """``(local path, object name)`` for every results file under a bucket-shaped folder.

    Only names :func:`partybal.layout.parse_results_name` accepts are returned (README files and
    other strays are left out); ``prefix`` (e.g. ``preview/``) is put in front of every name."""
    root = Path(root)
    out = []
    for path in sorted(root.rglob("*.json")):
        name = prefix + path.relative_to(root).as_posix()
        try:
            layout.parse_results_name(name)
        except layout.Ignored:
            continue
        out.append((path, name))
    return out


def upload_jetstream_style(bucket, name: str, data: bytes, rng: random.Random | None = None) -> Uploaded:
    """Temp ``.ndjson`` + temp ``.json``, copy to ``name``, delete the temps.

    ``bucket`` is a ``google.cloud.storage.Bucket``; returns the final object's generation."""
    rng = rng or random.Random()
    stem = name[: -len(".json")] if name.endswith(".json") else name
    ndjson = bucket.blob(f"{stem}-{_letters(rng)}.ndjson")
    ndjson.upload_from_string(data, content_type="application/x-ndjson")
    temp = bucket.blob(f"{stem}-{_letters(rng)}.json")
    temp.upload_from_string(data, content_type="application/json")
    final = bucket.copy_blob(temp, bucket, name)
    temp.delete()
    ndjson.delete()
    return Uploaded(name=name, generation=int(final.generation), temps=(ndjson.name, temp.name))


def upload_tree(bucket, root: str | Path, prefix: str = "", rng: random.Random | None = None) -> list[Uploaded]:
    """Upload every results file under ``root`` Jetstream-style; returns the final objects."""
    return [upload_jetstream_style(bucket, name, path.read_bytes(), rng) for path, name in results_files(root, prefix)]


def slugs_in(root: str | Path, prefix: str = "") -> list[str]:
    """File slugs of the experiments a bucket-shaped folder holds."""
    return sorted({layout.parse_results_name(name).file_slug for _, name in results_files(root, prefix)})
