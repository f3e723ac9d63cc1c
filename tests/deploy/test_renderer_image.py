"""renderer_image/Dockerfile: same Debian packages as `make setup`, pinned, small, non-root."""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT

DOCKERFILE = ROOT / "renderer_image" / "Dockerfile"
APT_LIST = ROOT / "scripts" / "apt-packages.txt"


def _text() -> str:
    return DOCKERFILE.read_text()


def _logical_lines() -> list[str]:
    """Dockerfile instructions with continuations joined and comments dropped."""
    lines, cur = [], ""
    for raw in _text().splitlines():
        if raw.lstrip().startswith("#"):
            continue
        if raw.rstrip().endswith("\\"):
            cur += raw.rstrip()[:-1] + " "
            continue
        cur += raw
        if cur.strip():
            lines.append(cur.strip())
        cur = ""
    return lines


def apt_pins() -> dict[str, str | None]:
    """{package: version or None} from every `apt-get install` in the Dockerfile."""
    pins: dict[str, str | None] = {}
    for line in _logical_lines():
        for part in re.split(r"&&|;", line):
            m = re.search(r"apt-get\s+install\s+(.*)", part)
            if not m:
                continue
            for tok in m.group(1).split():
                tok = tok.strip("'\"")  # a pin with a glob is quoted (the shell must not expand it)
                if tok.startswith("-"):
                    continue
                name, _, version = tok.partition("=")
                pins[name] = version or None
    return pins


def apt_list() -> set[str]:
    return {
        line.strip() for line in APT_LIST.read_text().splitlines() if line.strip() and not line.strip().startswith("#")
    }


def test_apt_packages_equal_the_setup_list():
    assert set(apt_pins()) == apt_list(), "renderer_image/Dockerfile and scripts/apt-packages.txt drifted"


def test_apt_packages_are_pinned():
    unpinned = [n for n, v in apt_pins().items() if not v]
    assert not unpinned, f"pin these to exact versions: {unpinned}"
    # A glob may only let Debian's security revisions of one version float (bookworm-security
    # keeps only the newest): 3.11.2-6+deb12u*, not 3.11*.
    loose = [
        f"{n}={v}"
        for n, v in apt_pins().items()
        if v and any(c in v for c in "*?[") and not re.fullmatch(r"[^*?\[]+\+deb\d+u\*", v)
    ]
    assert not loose, f"pin these to one Debian version (a trailing +debNNu* at most): {loose}"


def test_glob_pins_are_quoted():
    """``pkg=1.2*`` unquoted is a shell glob: a matching file in the working directory would replace it."""
    text = " ".join(_logical_lines())
    for name, version in apt_pins().items():
        if version and any(c in version for c in "*?["):
            assert f"'{name}={version}'" in text, f"quote the pin {name}={version}"


def test_pins_match_this_machine_when_installed():
    """Local (make setup) and image must run the same R stack and Python. A pin may end in ``*``
    (Debian's security revisions of one upstream release): then the installed version matches it."""
    if not shutil.which("dpkg-query"):
        pytest.skip("not a Debian machine")
    for name, version in apt_pins().items():
        proc = subprocess.run(["dpkg-query", "-W", "-f=${Version}", name], capture_output=True, text=True)
        if proc.returncode != 0 or not proc.stdout:
            continue  # not installed here: nothing to compare
        assert fnmatch.fnmatchcase(proc.stdout, version), (
            f"{name}: image pins {version}, this machine has {proc.stdout}"
        )


def test_base_image_is_bookworm():
    froms = [line for line in _logical_lines() if line.upper().startswith("FROM ")]
    assert froms and all("bookworm" in f for f in froms), froms


def test_small_and_reproducible():
    text = " ".join(_logical_lines())
    assert "--no-install-recommends" in text
    assert "rm -rf /var/lib/apt/lists" in text
    assert re.search(r"pip install[^&]*--no-cache-dir[^&]*--only-binary=:all:[^&]*-r\s+\S*requirements\.txt", text), (
        "wheels only: no compiler"
    )
    reqs = [
        l.split("#")[0].strip() for l in _installed_requirements().read_text().splitlines() if l.split("#")[0].strip()
    ]
    assert reqs and all(re.match(r"^[A-Za-z0-9_.\-\[\]]+==\S+$", r) for r in reqs), (
        "the image's requirements must pin exactly"
    )


def test_copies_only_the_runtime_code():
    copies = [
        line.split()[1:-1] for line in _logical_lines() if line.upper().startswith("COPY ") and "--from=" not in line
    ]
    sources = {src.rstrip("/") for srcs in copies for src in srcs if not src.startswith("--")}
    assert sources == {"renderer_image/requirements.txt", "partybal", "templates", "r"}, sources
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert ignore[ignore.index("*") if "*" in ignore else -1] == "*", ".dockerignore should exclude by default"


def test_non_root_and_entrypoint():
    lines = _logical_lines()
    users = [l.split()[1] for l in lines if l.upper().startswith("USER ")]
    assert users and users[-1] == "10001:10001", users
    entry = [l for l in lines if l.upper().startswith("ENTRYPOINT")]
    assert entry and re.sub(r"\s+", "", entry[-1]) == 'ENTRYPOINT["python","-m","partybal.pipeline.job"]', entry


def test_base_is_debian_bookworm_slim_with_debian_python():
    """Production and `make image-local` start from the same name (docs/deploy.md, issue 13)."""
    froms = [line.split()[1] for line in _logical_lines() if line.upper().startswith("FROM ")]
    assert froms and set(froms) == {"debian:bookworm-slim"}, froms
    assert apt_pins().get("python3.11"), "the interpreter is Debian's python3.11"


# --- the Python the job imports is installed (issue 11, item 4) --------------------------------


def _image_requirements():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import image_requirements
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    return image_requirements


def _installed_requirements() -> Path:
    """The context file the Dockerfile's ``pip install -r`` reads: followed through its COPY."""
    lines = _logical_lines()
    pip = [
        m.group(1)
        for l in lines
        if l.upper().startswith("RUN ")
        for m in re.finditer(r"pip install[^&;]*?-r\s+(\S+)", l)
    ]
    assert len(pip) == 1, f"expected one `pip install -r FILE` in the Dockerfile: {pip}"
    for line in lines:
        parts = line.split()
        if parts[0].upper() == "COPY" and "--from=" not in line and parts[-1] == pip[0]:
            return ROOT / parts[1]
    raise AssertionError(f"no COPY puts {pip[0]} in the image")


def _pins(path: Path) -> dict[str, str]:
    from packaging.utils import canonicalize_name

    pins = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version
    return pins


def test_the_image_installs_every_distribution_the_job_imports():
    """Every third-party module ``python -m partybal.pipeline.job`` reaches (any import, also inside
    functions) comes from a distribution the Dockerfile installs, with its own requirements,
    at requirements.txt's pins."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    ir = _image_requirements()
    fb = sys.modules["function_bundle"]
    graph = ir.job_graph()
    assert "partybal.pipeline.job" in graph.modules and graph.third_party, graph
    installed = _pins(_installed_requirements())
    top = metadata.packages_distributions()
    missing = {}
    for module in graph.third_party:
        dist, _ = fb.distribution_of(module, top)
        if canonicalize_name(dist) not in installed:
            missing[module] = dist
    assert not missing, f"the job imports these, the image does not install them: {missing} (run {ir.REGENERATE})"
    env = fb.marker_environment(ir.RUNTIME)
    unmet = []
    for dist in installed:
        for spec in metadata.distribution(dist).requires or []:
            req = Requirement(spec)
            if req.marker is not None and not req.marker.evaluate({**env, "extra": ""}):
                continue
            if canonicalize_name(req.name) not in installed:
                unmet.append(f"{dist} needs {req.name}")
    assert not unmet, f"the image installs these without their requirements (pip --no-deps): {unmet}"
    top_pins = _pins(ROOT / "requirements.txt")
    drift = {d: (v, top_pins.get(d)) for d, v in installed.items() if top_pins.get(d) != v}
    assert not drift, f"image pins differ from requirements.txt: {drift}"


def test_image_requirements_and_dockerignore_are_up_to_date():
    ir = _image_requirements()
    reqs, ignore = ir.generated()
    assert _installed_requirements().read_text() == reqs, (
        f"renderer_image/requirements.txt is out of date: run {ir.REGENERATE}"
    )
    assert (ROOT / ".dockerignore").read_text() == ignore, (
        f".dockerignore's module list is out of date: run {ir.REGENERATE}"
    )


def _ignored(rel: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last pattern matching the path or a parent decides."""
    parents = [rel] + ["/".join(rel.split("/")[:i]) for i in range(1, rel.count("/") + 1)]
    verdict = False
    for pat in patterns:
        neg = pat.startswith("!")
        pat = pat[1:] if neg else pat
        pat = pat.rstrip("/")
        rx = fnmatch.translate(pat).replace(".*", "[^/]*").replace("[^/]*[^/]*", ".*")
        if pat.startswith("**/"):
            rx = "(?:.*/)?" + fnmatch.translate(pat[3:]).replace(".*", "[^/]*")
        if any(re.fullmatch(rx, p) for p in parents):
            verdict = not neg
    return verdict


def test_build_context_holds_exactly_the_job_modules():
    """.dockerignore lets through the partybal modules the job imports, and no other: no local
    stack, Cloud Run stand-in or test data generator in the image."""
    ir = _image_requirements()
    patterns = [
        l.strip() for l in (ROOT / ".dockerignore").read_text().splitlines() if l.strip() and not l.startswith("#")
    ]
    shipped = {
        str(p.relative_to(ROOT))
        for p in (ROOT / "partybal").rglob("*.py")
        if not _ignored(str(p.relative_to(ROOT)), patterns)
    }
    wanted = {str(p.relative_to(ROOT)) for p in ir.job_graph().modules.values()}
    assert shipped == wanted, (
        f"in the image but not imported by the job: {sorted(shipped - wanted)}; imported but left out: {sorted(wanted - shipped)}"
    )
    for name in ("localstack", "runstub", "synthetic", "jobimage"):
        assert f"partybal/{name}.py" not in shipped
    assert not _ignored("templates/page.html.j2", patterns) and not _ignored("r/report.R", patterns)
