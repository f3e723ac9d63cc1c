"""Exact exports of a render: one tidy CSV per table and figure, and the render's ``manifest.json``.

A CSV holds exactly the numbers its table or figure shows: a figure's file is written from the
:class:`~partybal.page.report.FigureSpec` handed to R (the same object, at render time), a table's
from the rows its cells were formatted from (collected by the page builder as it builds the table).
Nothing is recomputed here. Files live in the render's own asset folder (``layout.export_file``),
so the page of a render links only that render's numbers, kept as long as its figures.

CSV conventions (RFC 4180 via the ``csv`` module; UTF-8 without a byte-order mark; ``\\n`` line
ends; a field is quoted when it holds a comma, a quote or a line break):

* names (``metric``, ``branch``, ``segment``, ``statistic``, ``compared_to``) exactly as the data
  has them — a lone surrogate, which UTF-8 cannot carry, is written as ``\\udxxx``; the ``*_label``
  columns as the page shows them;
* numbers in Python's shortest round-trip form (``repr``: reading them gives the same double as the
  statistics JSON); an empty field is a number the data does not have (or not finite);
* ``comparison``: ``absolute`` for a value, else Jetstream's comparison (``relative_uplift``,
  ``difference``), against ``compared_to``; ``ci_level`` is the row's ``ci_width`` (0.95), empty
  when the row has no interval; ``column`` and ``shown`` are the table column and the cell text
  (empty for figures).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import importlib.metadata
import json
import os
import platform
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

from .. import __version__, layout

MANIFEST_SCHEMA = "partybal.render-manifest/1"


class ExportRow(NamedTuple):
    """One number shown on the page, with what it is. Field order is the CSV's column order."""

    metric: str
    metric_label: str
    statistic: str
    statistic_label: str
    branch: str
    branch_label: str
    comparison: str
    compared_to: str
    basis: str
    segment: str
    period: str
    window: int | str | None
    parameter: float | None
    point: float | None
    lower: float | None
    upper: float | None
    ci_level: float | None
    column: str = ""
    shown: str = ""


COLUMNS: tuple[str, ...] = ExportRow._fields


def _finite(x) -> float | None:
    if x is None or (type(x) is float and x - x == 0.0):  # the common case: finite already (inf - inf is nan)
        return x
    if isinstance(x, bool):
        return None
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if x - x == 0.0 else None


def csv_text(rows: Iterable[ExportRow]) -> str:
    """The CSV (header and rows) as text."""
    import io

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(COLUMNS)
    writer.writerows(rows)  # None as "", a float as repr (its shortest round-trip form), an int as str
    return out.getvalue()


def write_csv(path: Path, rows: Iterable[ExportRow]) -> tuple[int, str]:
    """Write the CSV; (rows written, sha256 of the file)."""
    rows = list(rows)
    data = csv_text(rows).encode("utf-8", "backslashreplace")  # lone surrogates as \udxxx
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return len(rows), hashlib.sha256(data).hexdigest()


def _columns(spec, rows: dict[str, list], ctx: dict[str, Any], n: int) -> dict[str, list]:
    """Each export column as a list of ``n``: from ``rows`` when it holds the column (one value
    per row), else the figure-wide value in ``ctx`` (or the default) repeated. Each column is
    built once: linear in the rows."""

    def col(name: str, default=None) -> list:
        values = rows.get(name)
        return list(values) if values is not None and len(values) == n else [ctx.get(name, default)] * n

    return {
        name: col(name, default)
        for name, default in (
            ("metric", ""),
            ("metric_label", getattr(spec, "metric_label", "")),
            ("statistic", getattr(spec, "statistic", "")),
            ("statistic_label", ""),
            ("branch", ""),
            ("comparison", "absolute"),
            ("compared_to", ""),
            ("basis", ""),
            ("segment", ""),
            ("period", ""),
            ("window", None),
            ("parameter", None),
            ("point", None),
            ("lower", None),
            ("upper", None),
            ("ci_level", None),
        )
    }


def figure_rows(spec) -> list[ExportRow]:
    """The rows of one figure exactly as R receives them (``spec.rows``, column lists), with the
    figure's context (``spec.context``). A column present in ``rows`` (``segment`` in a figure of
    several segments side by side, ``metric`` in one of several metrics) wins over the figure-wide
    value in ``context``; branch and segment labels are mapped back to the names in the data."""
    rows: dict[str, list] = spec.rows or {}
    ctx: dict[str, Any] = getattr(spec, "context", None) or {}
    n = len(rows.get("point") or [])
    names: dict[str, str] = ctx.get("branch_names") or {}  # label R draws -> name in the data
    segment_names: dict[str, str] = ctx.get("segment_names") or {}  # likewise, for a ``segment`` column

    c = _columns(spec, rows, ctx, n)
    labels = c["branch"]
    comparisons = [x or "absolute" for x in c["comparison"]]
    columns = (
        c["metric"],
        c["metric_label"],
        c["statistic"],
        c["statistic_label"],
        [names.get(label, label) for label in labels],
        labels,
        comparisons,
        ["" if comp == "absolute" else to for comp, to in zip(comparisons, c["compared_to"], strict=True)],
        c["basis"],
        [segment_names.get(x, x) for x in c["segment"]],
        c["period"],
        c["window"],
        *([_finite(x) for x in c[name]] for name in ("parameter", "point", "lower", "upper", "ci_level")),
        [""] * n,
        [""] * n,
    )
    out = list(map(ExportRow._make, zip(*columns, strict=True)))
    return out


def write_all(workdir: Path, render_dir: str, figures, tables) -> list[dict[str, Any]]:
    """Write every figure's and table's CSV under ``workdir/render_dir`` (the render's asset
    folder). ``figures``: the FigureSpecs given to R; ``tables``: (number, title, rows) collected by
    the page builder. The manifest's ``exports`` entries, in page order of kind then number."""
    entries = []
    for spec in figures:
        rel = layout.export_file("figure", spec.number)
        n, digest = write_csv(workdir / render_dir / rel, figure_rows(spec))
        entries.append(
            {"file": rel, "kind": "figure", "number": int(spec.number), "title": spec.alt, "rows": n, "sha256": digest}
        )
    for number, title, rows in tables:
        rel = layout.export_file("table", number)
        n, digest = write_csv(workdir / render_dir / rel, rows)
        entries.append(
            {"file": rel, "kind": "table", "number": int(number), "title": title, "rows": n, "sha256": digest}
        )
    return entries


# --- manifest.json ------------------------------------------------------------------------------


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _iso(t: dt.datetime | None) -> str | None:
    if t is None:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    try:
        return t.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    except OverflowError:
        return t.isoformat()


def read_r_versions(path: Path) -> dict[str, str]:
    """``{"R": …, "ggplot2": …, …}`` written by r/render.R next to the fragment; {} when absent."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(doc, dict):
        return {}
    return {str(k): str(v[0] if isinstance(v, list) and v else v) for k, v in doc.items() if isinstance(v, (str, list))}


def manifest(
    results,
    render_id: str,
    page: str,
    exports: list[dict[str, Any]],
    *,
    rendered_at: dt.datetime | None = None,
    r_versions: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The render's manifest: what it read (inputs with their generations), what it ran with
    (versions), what it wrote (page, exports with their sha256)."""
    md = results.metadata
    version_info = md.version_info.model_dump(mode="json") if md is not None and md.version_info is not None else None
    return {
        "schema": MANIFEST_SCHEMA,
        "render_id": render_id,
        "slug": results.slug,
        "file_slug": results.file_slug,
        "rendered_at": _iso(rendered_at or dt.datetime.now(dt.UTC)),
        "page": page,
        "inputs": [
            {"name": f.name, "generation": f.generation, "updated": _iso(f.updated), "size": f.size, "url": f.url}
            for f in sorted(results.files, key=lambda f: f.name)
        ],
        "analysis_start_time": _iso(md.analysis_start_time) if md is not None else None,
        "versions": {
            "partybal": __version__,
            "jetstream": {
                "version_info": version_info,
                "version_date": _iso(md.version_date) if md is not None else None,
                "schema_version": md.schema_version if md is not None else None,
            },
            "mozilla_nimbus_schemas": _version("mozilla-nimbus-schemas"),
            "python": platform.python_version(),
            **(r_versions or {}),
        },
        "csv_columns": list(COLUMNS),
        "exports": exports,
    }


def write_manifest(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, ensure_ascii=True, allow_nan=False) + "\n")
    os.replace(tmp, path)
