"""A figure's identity: the sha256 of exactly what determines its pixels.

A render draws only the figures whose hash is not stored yet (``<file-slug>_files/figures/<hash>.png``,
:func:`partybal.layout.figure_name`) and links the others. The hash covers, in this order:

1. ``FORMAT`` (bump it when the meaning of the hash changes);
2. the R side (:func:`r_fingerprint`): the R version and the versions of the drawing packages —
   ggplot2, ragg, jsonlite and everything they import, recursively (read from the installed
   packages' ``DESCRIPTION`` files in ``.libPaths()``; ``absent`` when one is not installed, which
   changes the device);
3. the plot code this figure runs (:class:`PlotCode`): ``r/plots.R`` and every R file it
   ``source()``s are parsed by R (``r/figure_code.R``) into top-level definitions; the figure's
   code is the deparsed text of ``partybal_draw`` (device, size, dpi), ``plot_<statistic>`` and
   every definition they mention, transitively (the theme, palette, helpers), plus every top-level
   expression that is not a definition (``library()`` calls). Changing ``plot_deciles`` therefore
   redraws the deciles figures only; changing the theme, every figure; a comment, none;
4. the figure's spec and rows (:func:`canonical`): every :class:`~partybal.page.report.FigureSpec`
   field but ``NOT_DRAWN`` (``number``, ``alt``, ``context``: R does not draw with them; a field
   added later counts unless listed there), rows sorted, as canonical JSON — exactly the bytes R
   reads for it from its spec file next to ``plots.json`` (which adds only ``number``, ``alt`` and
   the hashed ``file``: :func:`partybal.page.render._write_figure_plan`).

Not covered: system fonts and the graphics libraries the device links (they change with the image's
Debian packages; R's version does not). Pick up such a change by bumping ``FORMAT``.

R is started once per process to learn ``.libPaths()`` and once per content of the R folder to parse
it (about 0.3 s); versions are read from files, never by loading packages.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
import subprocess
from pathlib import Path

from ..errors import PartybalError

FORMAT = b"partybal-figure-1"
ENTRY_FILE = "plots.R"
# Packages whose versions can change a figure's pixels; their Depends/Imports/LinkingTo too.
DRAWING_PACKAGES = ("ggplot2", "ragg", "jsonlite")
# Fields of a figure spec that never reach the pixels: the page's figure number, the img alt text,
# the export context (exports.py).
NOT_DRAWN = ("number", "alt", "context")
_DEP_RE = re.compile(r"([A-Za-z][A-Za-z0-9.]*)")
_PROBE_TIMEOUT = 120


class FigureCodeError(PartybalError):
    """R could not tell what the plot code is (a syntax error in r/plots.R, no R)."""


def canonical(spec) -> bytes:
    """The bytes R reads for one figure, without ``number``/``alt``: sorted-key compact JSON, the
    rows in a canonical order (branch, comparison, window, parameter, then the numbers)."""
    # shallow: a spec's fields are JSON values already (dataclasses.asdict would deep-copy every row)
    d = (
        {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)}
        if dataclasses.is_dataclass(spec)
        else dict(spec)
    )
    for k in NOT_DRAWN:
        d.pop(k, None)
    rows = d.get("rows") or {}
    if rows:
        names = sorted(rows)
        order = ["branch", "comparison", "window", "parameter", "point", "lower", "upper"]
        keys = [k for k in order if k in rows] + [k for k in names if k not in order]
        n = len(rows[keys[0]])

        def key(i):
            return tuple((rows[k][i] is None, rows[k][i] if rows[k][i] is not None else 0) for k in keys)

        idx = sorted(range(n), key=key)
        d["rows"] = {k: [rows[k][i] for i in idx] for k in names}
    return json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _run_probe(r_dir: Path) -> dict:
    cmd = ["Rscript", "--vanilla", str(r_dir / "figure_code.R"), str(r_dir), ENTRY_FILE]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_PROBE_TIMEOUT)
    except FileNotFoundError:
        raise FigureCodeError("Rscript not found: install R (make setup does)") from None
    except subprocess.TimeoutExpired:
        raise FigureCodeError(f"R did not parse {r_dir / ENTRY_FILE} within {_PROBE_TIMEOUT} s") from None
    if proc.returncode != 0:
        tail = " | ".join(line for line in proc.stderr.strip().splitlines()[-4:] if line.strip())
        raise FigureCodeError(f"R could not parse the plot code in {r_dir}: {tail or 'no output'}")
    return json.loads(proc.stdout)


@functools.lru_cache(maxsize=16)
def _probe(r_dir: str, digest: str) -> dict:  # digest: the R folder's content, the cache key
    return _run_probe(Path(r_dir))


def _r_files_digest(r_dir: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(r_dir.glob("*.[Rr]")):
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def _as_list(v) -> list[str]:
    return [v] if isinstance(v, str) else list(v or [])


@functools.cache
def _lib_paths() -> tuple[str, ...]:
    """``.libPaths()`` and ``R.version.string``, from R, once per process."""
    from .report import R_DIR

    probe = _probe(str(R_DIR), _r_files_digest(R_DIR))
    return tuple(_as_list(probe["lib_paths"])) + ("R_VERSION=" + probe["r_version"],)


def _description(lib_paths, package: str) -> dict[str, str] | None:
    for lib in lib_paths:
        path = Path(lib) / package / "DESCRIPTION"
        if path.is_file():
            fields: dict[str, str] = {}
            last = None
            for line in path.read_text(errors="replace").splitlines():
                if line[:1] in (" ", "\t") and last:
                    fields[last] += " " + line.strip()
                elif ":" in line:
                    last, _, value = line.partition(":")
                    fields[last] = value.strip()
            return fields
    return None


def package_versions() -> dict[str, str]:
    """name → version for R itself (``R``) and the drawing packages with their dependencies,
    recursively; ``absent`` for one that is not installed. Read from DESCRIPTION files."""
    paths = _lib_paths()
    libs = [p for p in paths if not p.startswith("R_VERSION=")]
    versions = {"R": paths[-1].removeprefix("R_VERSION=")}
    todo = list(DRAWING_PACKAGES)
    while todo:
        name = todo.pop()
        if name in versions or name == "R":
            continue
        desc = _description(libs, name)
        if desc is None:
            versions[name] = "absent"
            continue
        versions[name] = desc.get("Version", "unknown")
        for field in ("Depends", "Imports", "LinkingTo"):
            for part in desc.get(field, "").split(","):
                m = _DEP_RE.match(part.strip())
                if m and m.group(1) != "R":
                    todo.append(m.group(1))
    return versions


def r_fingerprint() -> bytes:
    """The R side of every figure's hash: ``name=version`` lines, sorted."""
    return "\n".join(f"{k}={v}" for k, v in sorted(package_versions().items())).encode()


class PlotCode:
    """The plot code of one R folder, per statistic (see the module docstring)."""

    ROOTS = ("partybal_draw",)

    def __init__(self, r_dir: Path):
        self.r_dir = Path(r_dir)
        probe = _probe(str(self.r_dir), _r_files_digest(self.r_dir))
        self.definitions = {
            name: (_as_list(d.get("code")), set(_as_list(d.get("refs"))))
            for name, d in (probe.get("definitions") or {}).items()
        }
        self.preamble = _as_list(probe.get("preamble"))
        self._by_statistic: dict[str, bytes] = {}

    def names_for(self, statistic: str) -> list[str]:
        """The top-level definitions a figure of ``statistic`` runs (sorted)."""
        seen: set[str] = set()
        todo = [*self.ROOTS, f"plot_{statistic}"]
        while todo:
            name = todo.pop()
            if name in seen or name not in self.definitions:
                continue
            seen.add(name)
            todo.extend(self.definitions[name][1] & self.definitions.keys())
        return sorted(seen)

    def digest(self, statistic: str) -> bytes:
        if statistic not in self._by_statistic:
            h = hashlib.sha256()
            for text in self.preamble:
                h.update(b"preamble\0" + text.encode() + b"\0")
            names = self.names_for(statistic)
            if f"plot_{statistic}" not in names:
                h.update(b"no plot function\0" + statistic.encode())
            for name in names:
                h.update(name.encode() + b"\0" + "\n".join(self.definitions[name][0]).encode() + b"\0")
            self._by_statistic[statistic] = h.hexdigest().encode()
        return self._by_statistic[statistic]


class FigureHasher:
    """``hasher(spec)`` → (hex sha256, canonical bytes) for the figures of one render."""

    def __init__(self, r_dir: Path):
        self.code = PlotCode(r_dir)
        self.r_side = hashlib.sha256(r_fingerprint()).hexdigest().encode()

    def __call__(self, spec) -> tuple[str, bytes]:
        data = canonical(spec)
        h = hashlib.sha256(FORMAT + b"\n")
        h.update(self.r_side + b"\n")
        h.update(self.code.digest(spec.statistic) + b"\n")
        h.update(data)
        return h.hexdigest(), data
