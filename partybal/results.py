"""Load one experiment's Jetstream results and validate them with mozilla-nimbus-schemas."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

import pydantic
from mozilla_nimbus_schemas.jetstream import AnalysisError, AnalysisErrors, Metadata, Statistic, Statistics

from . import layout
from .storage import ObjectInfo, ResultsSource

MAX_SHOWN = 120  # characters of a data value quoted in an error message


class InputError(Exception):
    """Bad input: which file, and what is wrong with it, in one line."""

    def __init__(self, file: str, problem: str):
        super().__init__(f"{file}: {problem}")
        self.file = file
        self.problem = problem


class NoResults(InputError):
    pass


@dataclass
class ExperimentResults:
    file_slug: str
    slug: str
    statistics: dict[str, list[Statistic]]  # period -> rows, for the periods that have a file
    metadata: Metadata | None
    errors: list[AnalysisError]
    files: list[ObjectInfo]
    ignored: list[tuple[str, str]] = field(default_factory=list)  # (name, reason)

    @property
    def updated(self) -> dt.datetime | None:
        return max((f.updated for f in self.files), default=None)

    @property
    def generations(self) -> dict[str, int]:
        return {f.name: f.generation for f in self.files}


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 1] + "…"


def describe_validation_error(exc: pydantic.ValidationError, row_word: str = "row") -> str:
    """One line: where the first problem is and what it is, plus how many more there are."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    if first.get("type") == "json_invalid":
        return "not valid JSON (" + first.get("msg", "").removeprefix("Invalid JSON: ") + ")"
    loc = [str(p) for p in first.get("loc", ()) if p != "root"]
    where = ""
    if loc and loc[0].isdigit():
        where = f"{row_word} {int(loc[0]) + 1}"
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


def finite(x: float | None) -> float | None:
    """NaN and ±Infinity are shown as missing values."""
    if x is None or not math.isfinite(x):
        return None
    return x


def list_experiment_files(source: ResultsSource, fslug: str) -> tuple[list[tuple[layout.ResultBlob, ObjectInfo]], list[tuple[str, str]]]:
    """The final results objects of one experiment, and the names in its namespace we skip."""
    found: list[tuple[layout.ResultBlob, ObjectInfo]] = []
    ignored: list[tuple[str, str]] = []
    for kind in layout.Kind:
        for info in source.list(f"{kind.value}/{kind.value}_{fslug}"):
            try:
                blob = layout.parse_results_name(info.name, allowed_prefixes=("",))
            except layout.Ignored as why:
                if not layout.is_temp_name(info.name):
                    ignored.append((info.name, str(why)))
                continue
            if blob.file_slug == fslug:
                found.append((blob, info))
    return found, ignored


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
    statistics: dict[str, list[Statistic]] = {}
    metadata = None
    errors: list[AnalysisError] = []
    for blob, info in found:
        data = source.read(info)
        if blob.kind is layout.Kind.STATISTICS:
            statistics[blob.period] = _validate(Statistics, data, info.name).root
        elif blob.kind is layout.Kind.METADATA:
            metadata = _validate(Metadata, data, info.name, row_word="entry")
        else:
            errors = _validate(AnalysisErrors, data, info.name, row_word="entry").root
    display = slug
    if display == fslug:
        named = {e.experiment for e in errors if e.experiment}
        if len(named) == 1:
            candidate = named.pop()
            if layout.file_slug(candidate) == fslug:
                display = candidate
    return ExperimentResults(
        file_slug=fslug,
        slug=display,
        statistics=statistics,
        metadata=metadata,
        errors=errors,
        files=[info for _, info in found],
        ignored=ignored,
    )
