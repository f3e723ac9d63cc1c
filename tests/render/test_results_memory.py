"""Statistics are read as a stream: memory linear in rows with a small constant, the file's text
never held whole, every row validated, and a file over the size limit refused before it is read.
(No timing: tracemalloc counts the bytes Python allocates, the same on any machine.)"""

import json
import random
import tracemalloc

import pytest

from partybal.page import results as results_mod
from partybal.page.results import InputError, Row, load_experiment, read_statistics
from partybal.storage import LocalResults

METRICS = 25
BRANCHES = ("control", "treatment-a", "treatment-b")


def rows(n: int, seed: int = 1) -> list[dict]:
    """``n`` distinct rows shaped like Jetstream's daily output (every key, unique numbers)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        point = rng.uniform(0, 100)
        out.append(
            {
                "metric": f"metric_number_{i % METRICS}",
                "statistic": "mean",
                "branch": BRANCHES[(i // METRICS) % len(BRANCHES)],
                "parameter": None,
                "comparison": None if i % 2 else "relative_uplift",
                "comparison_to_branch": None if i % 2 else "control",
                "ci_width": 0.95,
                "point": point,
                "lower": point - rng.uniform(0, 5),
                "upper": point + rng.uniform(0, 5),
                "segment": "all",
                "analysis_basis": "enrollments",
                "window_index": str(i // (METRICS * len(BRANCHES)) + 1),
            }
        )
    return out


def hostile_rows(n: int, seed: int = 1) -> list[dict]:
    """The most rows per byte, nothing shared: a new name and new numbers in every row."""
    rng = random.Random(seed)
    return [
        {
            "metric": f"m{i}",
            "statistic": "s",
            "branch": "b",
            "point": rng.random(),
            "lower": rng.random(),
            "upper": rng.random(),
            "parameter": rng.random(),
        }
        for i in range(n)
    ]


def write_daily(folder, slug: str, n: int, shape=rows) -> int:
    path = folder / f"statistics/statistics_{slug}_daily.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:  # one row per line, like Jetstream's export
        fh.write("[\n" + ",\n".join(json.dumps(r) for r in shape(n)) + "\n]\n")
    return path.stat().st_size


def peak_bytes(fn) -> tuple[int, object]:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        value = fn()
        return tracemalloc.get_traced_memory()[1] - base, value
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    "shape,row_bytes",
    [(rows, 320), (hostile_rows, results_mod.ROW_BYTES)],  # measured ≈ 230 and ≈ 410
    ids=["jetstream-shaped", "hostile"],
)
def test_loading_memory_is_linear_in_rows_with_a_small_constant(tmp_path, shape, row_bytes):
    """Peak Python memory of load_experiment ≤ FIXED + row_bytes × rows, measured at two sizes:
    the slope (what each row costs, the kept Row and the passes over it) stays under row_bytes
    and the peak under the bound — so a file's text (≈ 330 bytes a row here) is not held beside
    its rows, nor a pydantic model per row (≈ 1.7 KB a row before streaming). ``ROW_BYTES`` is
    the bound for any shape (docs/performance.md, "Memory bound"): the hostile shape has the most
    rows per byte and shares nothing."""
    sizes = (5_000, 25_000)
    peaks = {}
    for n in sizes:
        folder = tmp_path / str(n)
        text_bytes = write_daily(folder, "mem", n, shape)
        peak, res = peak_bytes(lambda: load_experiment(LocalResults(folder), "mem"))
        assert len(res.statistics["daily"]) == n  # every row kept (none taken for a duplicate)
        peaks[n] = peak
        del res
    # one chunk as bytes and text (and the next while a row spans two), one batch as dicts and models
    fixed = 4 * results_mod.CHUNK_BYTES + 3000 * results_mod.VALIDATE_BATCH
    small, large = sizes
    slope = (peaks[large] - peaks[small]) / (large - small)
    assert slope < row_bytes, f"{slope:.0f} bytes per row (peaks {peaks})"
    assert peaks[large] < fixed + row_bytes * large, f"peak {peaks[large]} for {large} rows, text {text_bytes} bytes"


def decoded_values(fh, name: str) -> list:
    """Every element of the file's array as the reader decodes it row by row (read_statistics's
    path for a run that does not validate at once)."""
    reader = results_mod._ArrayReader(fh, name)
    values, more, row = [], reader.open_array(), 0
    while more:
        row += 1
        values.append(reader.row(row))
        more = reader.after_row(row)
    reader.close_array()
    return values


def test_the_stream_reads_exactly_what_json_reads_across_chunk_boundaries(tmp_path, monkeypatch):
    """Tiny chunks cut numbers, NaN, escapes and multi-byte characters at every place."""
    monkeypatch.setattr(results_mod, "CHUNK_BYTES", 7)
    data = rows(40)
    data[3]["point"] = float("nan")
    data[4]["upper"] = float("inf")
    data[5]["lower"] = -float("inf")
    data[6]["metric"] = 'métrique ✓ "quoted" \\ back\tslash ' + "é" * 50
    data[7]["point"] = -1.25e-300
    text = json.dumps(data, ensure_ascii=False, indent=1).encode()
    path = tmp_path / "f.json"
    path.write_bytes(text)
    with path.open("rb") as fh:
        streamed = decoded_values(fh, "f.json")
    expected = json.loads(text)
    assert json.dumps(streamed) == json.dumps(expected)
    with path.open("rb") as fh:
        got = read_statistics(fh, "f.json")
    assert [r.metric for r in got] == [r["metric"] for r in data]
    assert got[7].point == -1.25e-300 and got[4].upper == float("inf")
    assert isinstance(got[0], Row) and got[0].segment_given and got[0].analysis_basis.value == "enrollments"


def test_repeated_names_are_shared_not_copied(tmp_path):
    path = tmp_path / "f.json"
    path.write_text(json.dumps(rows(300)))
    with path.open("rb") as fh:
        got = read_statistics(fh, "f.json")
    assert len({id(r.metric) for r in got}) == METRICS
    assert len({id(r.branch) for r in got}) == len(BRANCHES)
    assert len({id(r.ci_width) for r in got}) == 1


@pytest.mark.parametrize(
    "content,expected",
    [
        (
            "[" + json.dumps(rows(1)[0]) + ",\n" + json.dumps(rows(1)[0])[:-1] + ", 7]",
            "not valid JSON (Expecting property name enclosed in double quotes at line 2 column",
        ),
        (
            "[" + ",\n".join(json.dumps(r) for r in rows(3000)) + ',\n{"metric" "x"}]',
            "at line 3001 column 11, in row 3001)",
        ),
        ("[" + ",\n".join(json.dumps(r) for r in rows(3000)) + "\n", "not valid JSON (the array is not closed"),
        ("[" + json.dumps(rows(1)[0]) + "] 5", "trailing characters after the array"),
        (
            "["
            + ",".join(json.dumps(r) for r in rows(2500))
            + ","
            + json.dumps({**rows(1)[0], "window_index": 3})
            + "]",
            "row 2501, field window_index",
        ),
        ('"rows"', "Input should be a valid array"),
        ("   \n  ", "file is empty"),
    ],
)
def test_a_broken_stream_fails_in_one_line_naming_the_row(tmp_path, monkeypatch, content, expected):
    monkeypatch.setattr(results_mod, "CHUNK_BYTES", 4096)  # the problem lies chunks after the start
    (tmp_path / "statistics").mkdir()
    (tmp_path / "statistics/statistics_bad_daily.json").write_text(content)
    with pytest.raises(InputError) as err:
        load_experiment(LocalResults(tmp_path), "bad")
    message = str(err.value)
    assert message.startswith("statistics/statistics_bad_daily.json: ") and expected in message, message
    assert "\n" not in message and len(message) < 400


def test_not_utf8_is_a_clear_line(tmp_path):
    (tmp_path / "statistics").mkdir()
    (tmp_path / "statistics/statistics_bad_daily.json").write_bytes(b'[{"metric": "\xff"}]')
    with pytest.raises(InputError, match=r"^statistics/statistics_bad_daily.json: not valid JSON \(not UTF-8"):
        load_experiment(LocalResults(tmp_path), "bad")


def test_a_file_over_the_limit_fails_naming_file_and_limit_before_it_is_read(tmp_path, monkeypatch):
    size = write_daily(tmp_path, "big", 500)
    monkeypatch.setattr(LocalResults, "read", lambda self, info: pytest.fail(f"read {info.name}"))
    monkeypatch.setattr(LocalResults, "open", lambda self, info: pytest.fail(f"opened {info.name}"))
    monkeypatch.setenv("PARTYBAL_MAX_FILE_BYTES", str(size - 1))
    with pytest.raises(InputError) as err:
        load_experiment(LocalResults(tmp_path), "big")
    message = str(err.value)
    assert message == (
        f"statistics/statistics_big_daily.json: file is {size} bytes, over the limit of {size - 1} bytes per file (PARTYBAL_MAX_FILE_BYTES)"
    )


def test_a_file_that_grows_while_streamed_stops_at_the_limit(tmp_path, monkeypatch):
    """The listing said it fits; the stream never reads more than the limit."""
    size = write_daily(tmp_path, "grows", 500)
    source = LocalResults(tmp_path)
    (info,) = source.list("statistics/statistics_grows")
    monkeypatch.setenv("PARTYBAL_MAX_FILE_BYTES", str(size))
    path = tmp_path / info.name
    path.write_bytes(path.read_bytes()[:-3] + b",\n" + json.dumps(rows(400)).encode()[1:])
    monkeypatch.setattr(source, "list", lambda prefix: [info] if prefix.startswith("statistics/") else [])
    with pytest.raises(InputError, match=r"^statistics/statistics_grows_daily.json: file grew over the limit of"):
        load_experiment(source, "grows")


def test_the_row_limit_stops_the_stream_naming_file_and_limit(tmp_path, monkeypatch):
    """Rows of a few bytes would fit millions under the byte limits: PARTYBAL_MAX_ROWS bounds them,
    counted across the experiment's files while they are read."""
    write_daily(tmp_path, "rows", 300)
    (tmp_path / "statistics/statistics_rows_overall.json").write_text(json.dumps(rows(200)))
    monkeypatch.setenv("PARTYBAL_MAX_ROWS", "450")
    with pytest.raises(InputError) as err:
        load_experiment(LocalResults(tmp_path), "rows")
    assert str(err.value) == (
        "statistics/statistics_rows_overall.json: the experiment has more than 450 statistics rows, over the limit of 450 rows (PARTYBAL_MAX_ROWS)"
    )
    monkeypatch.setenv("PARTYBAL_MAX_ROWS", "500")
    assert sum(map(len, load_experiment(LocalResults(tmp_path), "rows").statistics.values())) == 500


def test_metadata_and_errors_files_have_their_own_small_limit(tmp_path, monkeypatch):
    from partybal import storage

    write_daily(tmp_path, "side", 10)
    (tmp_path / "errors").mkdir()
    (tmp_path / "errors/errors_side.json").write_text(json.dumps([{"message": "x" * 3000, "log_level": "ERROR"}]))
    monkeypatch.setattr(storage, "SIDE_FILE_BYTES", 2000)
    monkeypatch.setattr(LocalResults, "open", lambda self, info: pytest.fail(f"opened {info.name}"))
    with pytest.raises(
        InputError,
        match=r"^errors/errors_side.json: file is \d+ bytes, over the limit of 2000 bytes for a metadata or errors file$",
    ):
        load_experiment(LocalResults(tmp_path), "side")


def test_render_releases_the_rows_before_r_starts(tmp_path, monkeypatch):
    """While R draws, the Python process holds the page model only: no rows, no figure data."""
    from partybal.page import render
    from partybal.pipeline import status
    from tests.support import synthetic

    synthetic.write_experiment(tmp_path / "in", synthetic.small_spec("freed"))
    res = load_experiment(LocalResults(tmp_path / "in"), "freed")
    windows = status.window_counts(res)
    assert sum(map(len, res.statistics.values())) > 500
    seen = {}

    def knit(rmd, fragment, plots, fig_dir, cores):
        seen["rows"] = sum(map(len, res.statistics.values()))
        fragment.write_text("<p>drawn</p>")
        (plots.parent / "drawn.json").write_text('{"drawn": [], "failed": []}')  # as r/report.R reports

    monkeypatch.setattr(render, "knit", knit)
    built = render.build(res, tmp_path / "w")
    assert seen == {"rows": 0} and built.figures > 0
    assert status.window_counts(built.results) == windows  # the status record still says O W D


def test_terraform_defaults_are_the_code_defaults():
    """The job's settings and a local render use the same bounds (docs/performance.md states them)."""
    import re
    from pathlib import Path

    from partybal import storage

    text = (Path(__file__).resolve().parents[2] / "terraform" / "variables.tf").read_text()

    def default(name: str) -> int:
        block = re.search(r'variable "' + name + r'" \{.*?\n  default\s*=\s*(\d+)', text, re.S)
        assert block, name
        return int(block.group(1))

    assert default("max_input_file_bytes") == storage.DEFAULT_MAX_FILE_BYTES
    assert default("max_experiment_input_bytes") == storage.DEFAULT_MAX_EXPERIMENT_BYTES
    assert default("max_statistics_rows") == storage.DEFAULT_MAX_ROWS


def test_runs_of_rows_validated_at_once_read_exactly_what_row_by_row_reads(tmp_path, monkeypatch):
    """The fast path (a run of whole rows in one ``validate_json`` call) gives the very rows the
    row-by-row path gives — also when a ``}`` followed by ``,`` sits inside a string or a nested
    object (a cut taken there is not valid JSON: that run is read row by row), for NaN and
    ±Infinity, and for a lone surrogate escape that only Python's json accepts."""
    monkeypatch.setattr(results_mod, "RUN_CHARS", 900)  # a few rows per run: cuts land everywhere
    data = rows(120)
    data[10]["metric"] = 'tricky},{"metric": "x"}, ]'
    data[11]["branch"] = "b}\n,"
    data[20]["point"] = float("nan")
    data[21]["upper"] = float("inf")
    data[30]["segment"] = "\ud800 lone"
    data[40]["extra"] = {"nested": {"a": 1}, "b": [1, {"c": "},"}]}  # ignored by the schema
    text = json.dumps(data, ensure_ascii=True, indent=None).replace("}, {", "},\n {")
    path = tmp_path / "f.json"
    path.write_text(text)
    runs = {"valid": 0, "not": 0}
    real = results_mod._validate_run

    def counting(run):
        models = real(run)
        runs["valid" if models is not None else "not"] += 1
        return models

    monkeypatch.setattr(results_mod, "_validate_run", counting)
    with path.open("rb") as fh:
        got = read_statistics(fh, "f.json")
    expected = results_mod._ROWS_ADAPTER.validate_python(json.loads(text))
    assert runs["valid"] >= 5 and runs["not"] >= 1, runs  # both paths were taken
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        for name in Row.FIELDS:
            a, b = getattr(g, name), getattr(e, name)
            assert a == b or (a != a and b != b), (name, a, b)  # NaN == NaN here
        assert g.segment_given == ("segment" in e.model_fields_set)
