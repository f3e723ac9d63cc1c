"""Load one experiment's Jetstream results and validate them with mozilla-nimbus-schemas."""

from __future__ import annotations

import codecs
import datetime as dt
import json
import math
import re
from dataclasses import dataclass, field
from typing import IO

import pydantic
from mozilla_nimbus_schemas.jetstream import AnalysisError, AnalysisErrors, Metadata, Statistic

from .. import layout
from ..errors import InputError
from ..storage import SIDE_FILE_BYTES, ObjectInfo, ResultsSource, SizeLimits, check_sizes, open_object

MAX_SHOWN = 120  # characters of a data value quoted in an error message


class NoResults(InputError):
    pass


@dataclass(frozen=True)
class DataNote:
    """Something the page must say about how it read a file: fields an older Jetstream did not
    write, rows it dropped or set aside."""

    file: str
    text: str


class Row:
    """One statistics row, validated with the schema's ``Statistic`` and then held compactly: the
    same attribute names, slots instead of a model (a fifth of the memory), repeated names and
    numbers shared (:class:`_Interner`). ``segment_given``: the file had a ``segment`` key (rows
    written before September 2020 have none; ``segment`` then reads ``"all"`` as in the schema)."""

    __slots__ = (
        "metric",
        "statistic",
        "branch",
        "parameter",
        "comparison",
        "comparison_to_branch",
        "ci_width",
        "point",
        "lower",
        "upper",
        "segment",
        "analysis_basis",
        "window_index",
        "segment_given",
    )
    FIELDS = __slots__[:-1]

    def __init__(self, **values) -> None:
        for name in self.__slots__:
            setattr(self, name, values.get(name))
        if self.segment is None:
            self.segment = "all"
        if values.get("segment_given") is None:
            self.segment_given = "segment" in values

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Row) and all(getattr(self, n) == getattr(other, n) for n in self.__slots__)

    __hash__ = None  # mutable, compared by value

    def __repr__(self) -> str:
        return "Row(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in self.FIELDS) + ")"


class _Interner:
    """One shared object per distinct name or repeated number (metric, branch, statistic, segment,
    window, ci_width, parameter) across an experiment's files. At most ``limit`` distinct values
    are remembered: values that never repeat (a hostile file) cost no more than they would unshared."""

    def __init__(self, limit: int = 200_000) -> None:
        self.seen: dict = {}
        self.limit = limit

    def __call__(self, value):
        if value is None or value != value:  # None; NaN never equals itself (and would never be found)
            return value
        found = self.seen.get(value)
        if found is not None:
            return found
        if len(self.seen) < self.limit:
            self.seen[value] = value
        return value


@dataclass
class RowProblems:
    """Rows of one statistics file that cannot be shown as if they were clean."""

    conflicts: list[list[Row]] = field(default_factory=list)  # same key, different numbers
    out_of_bounds: list[Row] = field(default_factory=list)  # not lower <= point <= upper


@dataclass
class ExperimentResults:
    file_slug: str
    slug: str
    statistics: dict[str, list[Row]]  # period -> rows, for the periods that have a file
    metadata: Metadata | None
    errors: list[AnalysisError]
    files: list[ObjectInfo]
    ignored: list[tuple[str, str]] = field(default_factory=list)  # (name, reason)
    notes: list[DataNote] = field(default_factory=list)
    problems: dict[str, RowProblems] = field(default_factory=dict)  # period -> problem rows
    # ``reference_branch`` at the top level of metadata written in August 2021, before
    # ``external_config`` replaced it (the schema does not know it).
    legacy_reference_branch: str | None = None
    # windows per period, kept when the rows are released (:meth:`release_rows`)
    released_windows: dict[str, int] | None = None

    def release_rows(self, windows: dict[str, int]) -> None:
        """Drop the rows once the page model is built (render.build, before R starts): only the
        window counts per period (``status.window_counts``) are kept for the status record."""
        self.released_windows = dict(windows)
        self.statistics = {period: [] for period in self.statistics}
        self.problems = {period: RowProblems() for period in self.problems}

    @property
    def updated(self) -> dt.datetime | None:
        return max((f.updated for f in self.files), default=None)

    @property
    def generations(self) -> dict[str, int]:
        return {f.name: f.generation for f in self.files}


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 1] + "…"


def describe_validation_error(exc: pydantic.ValidationError, row_word: str = "row", offset: int = 0) -> str:
    """One line: where the first problem is and what it is, plus how many more there are.
    ``offset``: rows before the validated batch (the error's row index counts from it)."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    if first.get("type") == "json_invalid":
        return "not valid JSON (" + first.get("msg", "").removeprefix("Invalid JSON: ") + ")"
    loc = [str(p) for p in first.get("loc", ()) if p != "root"]
    where = ""
    if loc and loc[0].isdigit():
        where = f"{row_word} {int(loc[0]) + offset + 1}"
        loc = loc[1:]
    if loc:
        where = (where + ", " if where else "") + "field " + ".".join(loc)
    msg = first.get("msg", "invalid")
    if "input" in first and first.get("type") not in ("missing",) and loc:
        msg += f" (got {_short(first['input'])})"
    more = len(errors) - 1
    text = f"{where}: {msg}" if where else msg
    if more:
        text += f" (and {more} more problem{'s' if more > 1 else ''})"
    return text


def _validate(model, data: bytes, name: str, row_word: str = "row"):
    if not data.strip():
        raise InputError(name, "file is empty (expected a JSON document)")
    try:
        return model.model_validate_json(data)
    except pydantic.ValidationError as exc:
        raise InputError(name, describe_validation_error(exc, row_word)) from None
    except ValueError as exc:  # model validators that raise plain ValueError
        raise InputError(name, str(exc)) from None


# --- schema generations ---------------------------------------------------------------------------
#
# Jetstream has written these files since 2020 (jetstream/metadata.py, statistics.py and
# export_json.py in mozilla/jetstream). Statistics are exported from BigQuery as newline-delimited
# JSON, which leaves out every null field, so any row may lack any optional key; the keys a
# generation never wrote at all are the ones below. Metadata is written from Jetstream's own model,
# so an absent key there means the file predates it.

# Metadata fields the current schema has and older Jetstream did not write: what the page loses.
LATER_METADATA_FIELDS = {
    "outcomes": "outcomes (written since February 2021): metrics are not grouped by outcome",
    "schema_version": "schema_version (since June 2021)",
    "external_config": "external_config (since August 2021): the reference branch comes from the data",
    "analysis_start_time": "analysis_start_time (since July 2022): the analysis start is unknown",
    "version_info": "version_info (written by current Jetstream only)",
}
# Required by the current schema inside a metric / an outcome, absent from older files, and not
# shown by partybal: filled with an empty list so the rest of the file can be used.
LATER_METRIC_FIELDS = ("analysis_bases",)  # June 2021 (for a week in June 2021: analysis_basis)
LATER_OUTCOME_FIELDS = ("default_metrics",)  # July 2021


def _fill_later_metadata(raw: object) -> tuple[object, dict[str, int]]:
    """A copy of raw metadata with the later required fields filled in, and how many were."""
    filled: dict[str, int] = {}
    if not isinstance(raw, dict):
        return raw, filled
    raw = dict(raw)
    for section, names in (("metrics", LATER_METRIC_FIELDS), ("outcomes", LATER_OUTCOME_FIELDS)):
        entries = raw.get(section)
        if not isinstance(entries, dict):
            continue
        out = {}
        for key, entry in entries.items():
            if isinstance(entry, dict):
                entry = dict(entry)
                for name in names:
                    if name not in entry:
                        old = entry.get("analysis_basis") if name == "analysis_bases" else None
                        entry[name] = [old] if isinstance(old, str) else (old if isinstance(old, list) else [])
                        filled[f"{section}.{name}"] = filled.get(f"{section}.{name}", 0) + 1
            out[key] = entry
        raw[section] = out
    return raw, filled


# --- statistics, read as a stream ----------------------------------------------------------------
#
# A statistics file is one JSON array of flat rows (the daily file of a real experiment ≈ 270 MB,
# a million rows). It is read in chunks of CHUNK_BYTES; the whole rows of a chunk are parsed and
# validated with the schema's ``Statistic`` in one pydantic ``validate_json`` call (read_statistics),
# and a run that does not validate is read again a row at a time (Python's json: NaN and ±Infinity
# accepted, the exact row and place of a problem), in batches of VALIDATE_BATCH rows. Each row is
# kept as a :class:`Row`. So the file's text is never held whole, nor a model per row: memory is the
# rows kept (≈ ROW_BYTES each) plus one chunk and its models.

CHUNK_BYTES = 1024 * 1024
VALIDATE_BATCH = 2048
RUN_CHARS = 256 * 1024  # rows parsed and validated in one call: ≈ 800 Jetstream rows, their models ≈ 1.4 MB
MAX_ROW_CHARS = 16 * 1024 * 1024  # one row's JSON text: more is not a statistics row
# Python memory per statistics row while loading, any shape (the kept Row, its numbers and names,
# the duplicate check's passes): tests/render/test_results_memory.py; ≈ 230-300 for Jetstream's rows
ROW_BYTES = 512
_ROWS_ADAPTER = pydantic.TypeAdapter(list[Statistic])
_DECODER = json.JSONDecoder()
_WS = re.compile(r"[ \t\n\r]*")
_KINDS = {"{": "an object", '"': "a string", "t": "a boolean", "f": "a boolean", "n": "null"}


def _where(buf: str, pos: int, lines_before: int, column_before: int) -> str:
    """``pos`` in ``buf`` as a line and column of the file (``buf`` starts ``column_before``
    characters into line ``lines_before + 1``)."""
    line = lines_before + buf.count("\n", 0, pos) + 1
    newline = buf.rfind("\n", 0, pos)
    column = pos - newline if newline >= 0 else column_before + pos + 1
    return f"line {line} column {column}"


class _ArrayReader:
    """The text of one file read in chunks: ``buf[pos:]`` is what is not parsed yet; ``buf``
    starts ``column_before`` characters into line ``lines_before + 1`` of the file."""

    def __init__(self, fh: IO[bytes], name: str) -> None:
        self.fh, self.name = fh, name
        self.decode = codecs.getincrementaldecoder("utf-8")("strict").decode
        self.buf, self.pos, self.lines_before, self.column_before, self.eof = "", 0, 0, 0, False
        self.offset = 0  # characters of the file before buf[0]

    def more(self) -> bool:
        """Append the next chunk (dropping what is parsed); False at the end of the file."""
        if self.eof:
            return False
        chunk = self.fh.read(CHUNK_BYTES)
        self.eof = not chunk
        try:
            text = self.decode(chunk, final=self.eof)
        except UnicodeDecodeError as exc:
            raise InputError(
                self.name, f"not valid JSON (not UTF-8: {exc.reason} near byte {exc.start} of a chunk)"
            ) from None
        if self.eof and not text:
            return False  # buf and pos unchanged: an error's position still refers to them
        buf, pos = self.buf, self.pos
        newline = buf.rfind("\n", 0, pos)
        if newline >= 0:
            self.lines_before += buf.count("\n", 0, pos)
            self.column_before = pos - newline - 1
        else:
            self.column_before += pos
        self.offset += pos
        self.buf, self.pos = buf[pos:] + text, 0
        return True

    def skip_ws(self) -> str:
        """The next non-blank character ('' at the end of the file)."""
        while True:
            self.pos = _WS.match(self.buf, self.pos).end()
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.more():
                return ""

    def broken(self, msg: str, at: int, row: int | None = None) -> InputError:
        in_row = f", in row {row}" if row else ""
        where = _where(self.buf, at, self.lines_before, self.column_before)
        return InputError(self.name, f"not valid JSON ({msg} at {where}{in_row})")

    def open_array(self) -> bool:
        """Read up to and past the opening ``[`` (after a byte-order mark and blanks); False when
        the array is empty (its ``]`` read too)."""
        self.more()
        if self.buf.startswith("\ufeff"):
            self.pos = 1
        first = self.skip_ws()
        if not first:
            raise InputError(self.name, "file is empty (expected a JSON document)")
        if first != "[":
            kind = _KINDS.get(first, "a number" if first in "-0123456789NI" else None)
            if kind is None:
                raise self.broken("expected '['", self.pos)
            raise InputError(self.name, f"Input should be a valid array (the file holds {kind}, not a list of rows)")
        self.pos += 1
        if self.skip_ws() == "]":
            self.pos += 1
            return False
        return True

    def after_row(self, row: int) -> bool:
        """Past the separator after row ``row``: True when another row follows, False when the
        array is closed."""
        sep = self.skip_ws()
        if sep == ",":
            self.pos += 1
            return True
        if sep == "]":
            self.pos += 1
            return False
        raise self.broken("expected ',' or ']' after a row" if sep else "the array is not closed", self.pos, row)

    def close_array(self) -> None:
        """Nothing but blanks may follow the array."""
        if self.skip_ws():
            raise self.broken("trailing characters after the array", self.pos)

    def rows_run(self) -> int:
        """The end (in ``buf``) of the longest run of whole rows from the read position that the
        text read so far can hold: just past a ``}`` followed by ``,`` or ``]``; -1 when none is
        found. A ``}`` inside a string or a nested object can be taken for a row's end: the run is
        then not valid JSON (an open string or brace), and the caller reads it row by row."""
        if not self.eof and len(self.buf) - self.pos < CHUNK_BYTES // 2:
            self.more()
        buf, end = self.buf, min(len(self.buf), self.pos + RUN_CHARS)
        for _ in range(4):
            i = buf.rfind("}", self.pos, end)
            if i < 0:
                return -1
            j = _WS.match(buf, i + 1).end()
            if j < len(buf) and buf[j] in ",]":
                return i + 1
            end = i
        return -1

    def row(self, row: int) -> object:
        """The value at the read position (row ``row``), reading more chunks while it is cut."""
        self.skip_ws()
        while True:
            try:
                value, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                # more text can only help a row cut at the chunk's end (the decoder looks at
                # most a few characters past where it stops, or to the end for a string)
                cut = exc.pos >= len(self.buf) - 16 or exc.msg.startswith("Unterminated string")
                if cut and len(self.buf) - self.pos <= MAX_ROW_CHARS and self.more():
                    continue
                if len(self.buf) - self.pos > MAX_ROW_CHARS:
                    mib = MAX_ROW_CHARS // 1024 // 1024
                    raise InputError(
                        self.name, f"not valid JSON, or row {row} is over {mib} MiB of JSON text ({exc.msg})"
                    ) from None
                raise self.broken(exc.msg, exc.pos, row) from None
            if end < len(self.buf) or not self.more():  # a value cut at the chunk's end (a number) is read again whole
                break
        self.pos = end
        return value


def read_statistics(
    fh: IO[bytes], name: str, intern: _Interner | None = None, max_rows: int | None = None, rows_before: int = 0
) -> list[Row]:
    """Every row of one statistics file, validated with ``Statistic`` (the first problem in one
    line naming the file and the row), as :class:`Row` objects. ``max_rows``: the experiment's
    row limit (``PARTYBAL_MAX_ROWS``), ``rows_before`` of them read from its other files.

    Fast path: a run of whole rows (up to RUN_CHARS of text) is parsed and validated in one
    ``validate_json`` call. A run that does not validate — a broken or unusual row anywhere in it,
    or a cut taken inside a string — is read again row by row (``json`` + ``validate_python``),
    which accepts what Python's json accepts and names the exact row and place of a problem."""
    rows = _Rows(name, intern or _Interner(), None if max_rows is None else max_rows - rows_before, max_rows)
    reader = _ArrayReader(fh, name)
    more, row, slow_until = reader.open_array(), 0, -1
    while more:
        if reader.offset + reader.pos >= slow_until:
            end = reader.rows_run()
            models = _validate_run(reader.buf[reader.pos : end]) if end > 0 else None
            if models is not None:
                rows.add_models(models)
                row += len(models)
                reader.pos = end
                more = reader.after_row(row)
                continue
            if end > 0:
                slow_until = reader.offset + end  # this run row by row
        row += 1
        rows.add_value(reader.row(row))
        more = reader.after_row(row)
    reader.close_array()
    rows.flush()
    return rows.rows


class _Rows:
    """The rows of one file as they are read: decoded values wait in a batch for validation,
    runs of validated models are added at once (after the batch, keeping the file's order)."""

    def __init__(self, name: str, intern: _Interner, room: int | None, max_rows: int | None) -> None:
        self.name, self.intern, self.room, self.max_rows = name, intern, room, max_rows
        self.rows: list[Row] = []
        self.batch: list[object] = []

    def check_room(self, adding: int) -> None:
        if self.room is not None and len(self.rows) + len(self.batch) + adding > self.room:
            raise InputError(
                self.name,
                f"the experiment has more than {self.max_rows:,} statistics rows, "
                f"over the limit of {self.max_rows:,} rows (PARTYBAL_MAX_ROWS)",
            )

    def add_value(self, value: object) -> None:
        self.check_room(1)
        self.batch.append(value)
        if len(self.batch) >= VALIDATE_BATCH:
            self.flush()

    def add_models(self, models: list) -> None:
        self.flush()
        self.check_room(len(models))
        _append_rows(models, self.intern, self.rows)

    def flush(self) -> None:
        if not self.batch:
            return
        try:
            models = _ROWS_ADAPTER.validate_python(self.batch)
        except pydantic.ValidationError as exc:
            raise InputError(self.name, describe_validation_error(exc, offset=len(self.rows))) from None
        _append_rows(models, self.intern, self.rows)
        self.batch.clear()


def _validate_run(text: str) -> list | None:
    """The ``Statistic`` models of ``text`` (rows separated by commas), or None when it is not
    exactly that."""
    try:
        return _ROWS_ADAPTER.validate_json("[" + text + "]")
    except pydantic.ValidationError:
        return None


def _append_rows(models: list, intern: _Interner, rows: list[Row]) -> None:
    """Validated ``Statistic`` models as :class:`Row` objects (their strings shared), onto ``rows``."""
    if len(intern.seen) + _SHARED_FIELDS * len(models) > intern.limit:

        def share(value, _):  # near the interner's limit: it decides what it keeps
            return intern(value)

    else:
        share = intern.seen.setdefault  # one C call per field (this runs for a million rows)
    new = Row.__new__
    for m in models:
        d = m.__dict__
        r = new(Row)
        r.metric = share(v := d["metric"], v)
        r.statistic = share(v := d["statistic"], v)
        r.branch = share(v := d["branch"], v)
        r.parameter = share(v := d["parameter"], v)
        r.comparison = share(v := d["comparison"], v)
        r.comparison_to_branch = share(v := d["comparison_to_branch"], v)
        r.ci_width = share(v := d["ci_width"], v)
        r.point = d["point"]
        r.lower = d["lower"]
        r.upper = d["upper"]
        r.segment = share(v := d["segment"], v)
        r.analysis_basis = d["analysis_basis"]  # an enum member: already shared
        r.window_index = share(v := d["window_index"], v)
        r.segment_given = "segment" in m.__pydantic_fields_set__
        rows.append(r)


_SHARED_FIELDS = 9  # fields of a row that _append_rows shares: every slot but the numbers and the basis


def load_metadata(data: bytes, name: str, notes: list[DataNote]) -> tuple[Metadata, str | None]:
    """Validate metadata with the current schema; a file that only lacks fields later Jetstream
    versions added is read with what it has (and ``notes`` say what was missing). Returns the
    metadata and the top-level ``reference_branch`` of August 2021 files, if any."""
    try:
        metadata = _validate(Metadata, data, name, row_word="entry")
        filled: dict[str, int] = {}
        raw = json.loads(data)
    except InputError as first:
        try:
            raw = json.loads(data)
        except ValueError:
            raise first from None
        fixed, filled = _fill_later_metadata(raw)
        if not filled:
            raise
        try:
            metadata = Metadata.model_validate(fixed)
        except pydantic.ValidationError as exc:
            raise InputError(name, describe_validation_error(exc, "entry")) from None
    legacy = raw.get("reference_branch") if isinstance(raw, dict) else None
    legacy = legacy if isinstance(legacy, str) and legacy else None
    missing = [
        "external_config (since August 2021); its older top-level reference_branch is used"
        if key == "external_config" and legacy
        else text
        for key, text in LATER_METADATA_FIELDS.items()
        if key not in metadata.model_fields_set
    ]
    for key, count in filled.items():
        section, field_name = key.split(".")
        what = "metric" if section == "metrics" else "outcome"
        missing.append(f"{field_name} ({count} {what}{'s' if count != 1 else ''})")
    if missing:
        notes.append(DataNote(name, "written by an older Jetstream: it has no " + "; no ".join(missing) + "."))
    return metadata, legacy


def _key(r: Row, with_ci: bool = True) -> tuple:
    return (
        r.metric,
        r.statistic,
        r.branch,
        r.parameter,
        r.comparison,
        r.comparison_to_branch,
        r.ci_width if with_ci else None,
        r.segment,
        r.analysis_basis,
        r.window_index,
    )


def _numbers(r: Row) -> tuple:
    return (finite(r.point), finite(r.lower), finite(r.upper))


def _repeated(rows: list[Row], with_ci: bool) -> dict[tuple, list[int]]:
    """Index lists of rows sharing a key (keys seen once are not returned). Two passes over
    hashes, so only the few repeated keys are ever held as tuples."""
    seen: set[int] = set()
    twice: set[int] = set()
    for r in rows:
        h = hash(_key(r, with_ci))
        if h in seen:
            twice.add(h)
        else:
            seen.add(h)
    del seen
    groups: dict[tuple, list[int]] = {}
    if twice:
        for i, r in enumerate(rows):
            k = _key(r, with_ci)
            if hash(k) in twice:
                groups.setdefault(k, []).append(i)
    return {k: v for k, v in groups.items() if len(v) > 1}


def pct(width: float | None) -> str:
    """0.95 -> '95%'; None -> 'level not stated'."""
    if width is None:
        return "level not stated"
    return f"{width * 100:.4g}%"


def out_of_bounds(r: Row) -> bool:
    """True when a row's interval does not hold its estimate (or is upside down); NaN and
    ±Infinity count as missing (:func:`finite`, inlined: this runs for every row, several times)."""
    point, lower, upper = r.point, r.lower, r.upper
    if lower is not None and not _isfinite(lower):
        lower = None
    if upper is not None and not _isfinite(upper):
        upper = None
    if lower is not None and upper is not None and lower > upper:
        return True
    if point is None or not _isfinite(point):
        return False
    return (lower is not None and lower > point) or (upper is not None and point > upper)


_isfinite = math.isfinite


def check_statistics(rows: list[Row], name: str, notes: list[DataNote]) -> tuple[list[Row], RowProblems]:
    """The rows to show and the rows that cannot be shown as clean; ``notes`` say what happened.

    Exact duplicates are dropped. Rows with the same key and different numbers are all set
    aside as conflicts (none of them is shown as the estimate). Of rows that differ only in
    ``ci_width``, the widest interval is kept for every estimate. Rows whose interval does not
    hold the point stay in the list and are reported (the page flags them)."""
    problems = RowProblems()
    drop: set[int] = set()
    exact = 0
    levels: set[str] = set()
    narrower = 0
    # one pass over keys without ci_width: duplicates (same ci_width) are within these groups
    for idxs in _repeated(rows, with_ci=False).values():
        by_width: dict[float | None, list[int]] = {}
        for i in idxs:
            by_width.setdefault(rows[i].ci_width, []).append(i)
        exact += _drop_duplicates(rows, by_width, drop, problems)
        narrower += _keep_widest(by_width, drop, levels)
    kept = [r for i, r in enumerate(rows) if i not in drop] if drop else rows
    problems.out_of_bounds = [r for r in kept if out_of_bounds(r)]
    _note_row_problems(name, notes, problems, exact, narrower, levels)
    _note_missing_fields(kept, name, notes)
    return kept, problems


def _drop_duplicates(rows: list[Row], by_width: dict, drop: set[int], problems: RowProblems) -> int:
    """Rows of one key and one ci_width: exact copies are dropped (their count is returned),
    rows with different numbers are all set aside as a conflict."""
    exact = 0
    for same in by_width.values():
        if len(same) < 2:
            continue
        first = _numbers(rows[same[0]])
        if all(_numbers(rows[i]) == first for i in same[1:]):
            drop.update(same[1:])
            exact += len(same) - 1
        else:
            drop.update(same)
            problems.conflicts.append([rows[i] for i in same])
    return exact


def _keep_widest(by_width: dict, drop: set[int], levels: set[str]) -> int:
    """Of one key's rows at several ci_widths, drop all but the widest; the number dropped."""
    live = {w for w, same in by_width.items() if not (set(same) <= drop)}
    if len(live) < 2:
        return 0
    best = max(live, key=lambda w: -1.0 if w is None else w)
    levels.update(pct(w) for w in live)
    narrower = 0
    for w, same in by_width.items():
        if w != best:
            for i in same:
                if i not in drop:
                    drop.add(i)
                    narrower += 1
    return narrower


def _note_row_problems(
    name: str, notes: list[DataNote], problems: RowProblems, exact: int, narrower: int, levels: set[str]
) -> None:
    if exact:
        notes.append(DataNote(name, f"{exact} exact duplicate row{'s' if exact != 1 else ''} dropped."))
    if problems.conflicts:
        n = sum(len(g) for g in problems.conflicts)
        notes.append(
            DataNote(
                name,
                f"{len(problems.conflicts)} estimate{'s have' if len(problems.conflicts) != 1 else ' has'} "
                "conflicting rows "
                f"(same key, different numbers; {n} rows): not shown, listed under Data problems.",
            )
        )
    if narrower:
        notes.append(
            DataNote(
                name,
                f"Some estimates are published at several confidence levels ({', '.join(sorted(levels))}): "
                f"the widest interval is shown for each; "
                f"{narrower} narrower row{'s' if narrower != 1 else ''} not shown.",
            )
        )
    if problems.out_of_bounds:
        n = len(problems.out_of_bounds)
        notes.append(
            DataNote(
                name,
                f"{n} row{'s have' if n != 1 else ' has'} an interval that does not contain the estimate: "
                "flagged, listed under Data problems.",
            )
        )


def _note_missing_fields(rows: list[Row], name: str, notes: list[DataNote]) -> None:
    """Say which fields of the current schema the rows do not have, where that changes the page."""
    no_basis, no_segment, no_window, no_ci, no_target = _missing_field_counts(rows)
    total = len(rows)

    def of(n: int) -> str:
        return "All rows" if n == total else f"{n} of {total} rows"

    for n, text in (
        (
            no_basis,
            "have no analysis_basis (Jetstream before June 2021 analysed enrollments only): shown as enrollments.",
        ),
        (no_segment, "have no segment (Jetstream before September 2020 had no segments): shown as segment all."),
        (no_window, "have no window_index: shown as window 1."),
    ):
        if n:
            notes.append(DataNote(name, f"{of(n)} {text}"))
    with_interval = sum(1 for r in rows if r.lower is not None or r.upper is not None) if no_ci else 0
    comparisons = sum(1 for r in rows if r.comparison is not None) if no_target else 0
    if no_ci:
        which = (
            "No row with an interval states"
            if no_ci == with_interval
            else f"{no_ci} of {with_interval} rows with an interval do not state"
        )
        notes.append(DataNote(name, f'{which} its ci_width: those intervals are labelled "CI, level not stated".'))
    if no_target:
        which = (
            "No comparison row names"
            if no_target == comparisons
            else f"{no_target} of {comparisons} comparison rows do not name"
        )
        notes.append(
            DataNote(
                name,
                f"{which} the branch it is compared to (comparison_to_branch): read as against the branch that has "
                "no comparison rows of its own.",
            )
        )


def _missing_field_counts(rows: list[Row]) -> tuple[int, int, int, int, int]:
    """Rows without analysis_basis, segment, window_index, ci_width (of those with an interval)
    and comparison_to_branch (of comparison rows), in one pass."""
    no_basis = no_segment = no_window = no_ci = no_target = 0
    for r in rows:
        if r.analysis_basis is None:
            no_basis += 1
        if not r.segment_given:
            no_segment += 1
        if r.window_index is None:
            no_window += 1
        if r.ci_width is None and (r.lower is not None or r.upper is not None):
            no_ci += 1
        if r.comparison is not None and not r.comparison_to_branch:
            no_target += 1
    return no_basis, no_segment, no_window, no_ci, no_target


def finite(x: float | None) -> float | None:
    """NaN and ±Infinity are shown as missing values."""
    if x is None or not math.isfinite(x):
        return None
    return x


def list_experiment_files(
    source: ResultsSource, fslug: str
) -> tuple[list[tuple[layout.ResultBlob, ObjectInfo]], list[tuple[str, str]]]:
    """The final results objects of one experiment, and the names in its namespace we skip
    (ambiguous statistics names decided by the listing: :func:`storage.list_experiment_objects`)."""
    from ..storage import list_experiment_objects

    return list_experiment_objects(source, fslug)


def load_experiment(source: ResultsSource, slug: str) -> ExperimentResults:
    """Read and validate every results file of experiment ``slug`` (either form)."""
    fslug = layout.file_slug(slug)
    if not layout.is_file_slug(fslug):
        raise NoResults(slug, "not a valid experiment slug")
    found, ignored = list_experiment_files(source, fslug)
    if not found:
        raise NoResults(
            f"{source.description}",
            f"no statistics, metadata or errors files for experiment {fslug!r}",
        )
    limits = SizeLimits.from_env()
    side = frozenset(info.name for blob, info in found if blob.kind is not layout.Kind.STATISTICS)
    check_sizes([info for _, info in found], limits, side)  # before any download: the listing's sizes
    read = _read_found(source, found, limits)
    return ExperimentResults(
        file_slug=fslug,
        slug=_display_slug(slug, fslug, read.errors),
        statistics=read.statistics,
        metadata=read.metadata,
        errors=read.errors,
        files=[info for _, info in found],
        ignored=ignored,
        notes=read.notes,
        problems=read.problems,
        legacy_reference_branch=read.legacy_reference,
    )


@dataclass
class _Read:
    """What the files of one experiment hold, checked."""

    statistics: dict[str, list[Row]] = field(default_factory=dict)
    problems: dict[str, RowProblems] = field(default_factory=dict)
    metadata: Metadata | None = None
    legacy_reference: str | None = None
    errors: list[AnalysisError] = field(default_factory=list)
    notes: list[DataNote] = field(default_factory=list)


def _read_found(source: ResultsSource, found: list, limits: SizeLimits) -> _Read:
    """Download and validate each listed file: statistics streamed row by row (and checked),
    metadata and errors files whole."""
    out = _Read()
    intern = _Interner()
    read = 0
    for blob, info in found:
        if blob.kind is layout.Kind.STATISTICS:
            with open_object(source, info) as fh:
                rows = read_statistics(fh, info.name, intern, limits.rows, read)
            read += len(rows)
            out.statistics[blob.period], out.problems[blob.period] = check_statistics(rows, info.name, out.notes)
            del rows
            continue
        with open_object(source, info, SIDE_FILE_BYTES) as fh:
            data = fh.read()
        if blob.kind is layout.Kind.METADATA:
            out.metadata, out.legacy_reference = load_metadata(data, info.name, out.notes)
        else:
            out.errors = _validate(AnalysisErrors, data, info.name, row_word="entry").root
    return out


def _display_slug(slug: str, fslug: str, errors: list[AnalysisError]) -> str:
    """The slug as asked; given in file form, the dotted form the analysis errors name, if they
    agree on one."""
    if slug != fslug:
        return slug
    named = {e.experiment for e in errors if e.experiment}
    if len(named) == 1:
        candidate = named.pop()
        if layout.file_slug(candidate) == fslug:
            return candidate
    return slug
