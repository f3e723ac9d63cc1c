"""Sample-ratio mismatch: were clients split between branches the way the experiment said?

From the ``count`` statistic (clients per branch: the ``identity`` metric's, else the first
metric with counts) of the overall period, else the latest weekly (then daily) window, one test
per analysis basis and segment: a chi-square goodness-of-fit test (as ``scipy.stats.chisquare``) of
the observed counts against the expected shares — the branch ratios Experimenter configured when
known, else equal shares. A p-value below :data:`SRM_P_THRESHOLD` is a mismatch: enrollment or
exposure did not happen as designed, and every comparison of those populations may be biased.

Pure functions, no I/O. Imported by the renderer and the job only (scipy stays out of the
Cloud Functions bundle): the page model and the status record get plain values from here.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from scipy.special import chdtrc  # the chi-square survival function; scipy.stats takes ~1.5 s to import

from .report import basis_of, ordered, window_of
from .results import ExperimentResults, finite

SRM_P_THRESHOLD = 0.001
COUNT_METRIC = "identity"  # Jetstream's client count metric


@dataclass(frozen=True)
class SrmCheck:
    """One chi-square test of branch counts against expected shares."""

    basis: str
    segment: str
    source: str  # where the counts come from, as the page says it: "overall period", ...
    metric: str  # the metric whose ``count`` rows were used
    branches: tuple[str, ...]
    observed: tuple[float, ...]
    expected_shares: tuple[float, ...]  # sum to 1, same order as branches
    shares_from: str  # "equal shares" or "the branch ratios configured in Experimenter"
    statistic: float
    p_value: float

    @property
    def total(self) -> float:
        return sum(self.observed)

    @property
    def observed_shares(self) -> tuple[float, ...]:
        total = self.total
        return tuple(o / total if total else 0.0 for o in self.observed)

    @property
    def mismatch(self) -> bool:
        return self.p_value < SRM_P_THRESHOLD


def chi_square(observed: list[float], expected_shares: list[float]) -> tuple[float, float]:
    """(chi-square statistic, p-value) of ``observed`` counts against ``expected_shares``
    (any positive weights; normalised here). Needs at least two categories."""
    if len(observed) != len(expected_shares) or len(observed) < 2:
        raise ValueError("need one expected share per observed count, and at least two")
    if any(s <= 0 or not math.isfinite(s) for s in expected_shares):
        raise ValueError("expected shares must be positive")
    total = sum(observed)
    weight = sum(expected_shares)
    expected = [total * s / weight for s in expected_shares]
    stat = math.fsum((o - e) ** 2 / e for o, e in zip(observed, expected, strict=True))
    return stat, float(chdtrc(len(observed) - 1, stat))


def expected_for(branches: list[str], ratios: Mapping[str, float] | None) -> tuple[list[float], str]:
    """Expected shares of ``branches`` (normalised over them) and where they come from: the
    configured ratios when every branch has a positive one, else equal shares."""
    if ratios and all(isinstance(ratios.get(b), (int, float)) and ratios[b] > 0 for b in branches):
        weights = [float(ratios[b]) for b in branches]
        total = sum(weights)
        shares = [w / total for w in weights]
        equal = len(set(round(s, 12) for s in shares)) == 1
        return shares, "the branch ratios configured in Experimenter" + (" (equal)" if equal else "")
    return [1 / len(branches)] * len(branches), "equal shares" + (
        " (Experimenter's ratios do not name every branch)" if ratios else ""
    )


def _counts(rows) -> dict[tuple[str, str], dict[str, dict[str, float]]]:
    """(basis, segment) -> metric -> branch -> count, from plain ``count`` rows."""
    out: dict[tuple[str, str], dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        if r.statistic != "count" or r.comparison is not None:
            continue
        value = finite(r.point)
        if value is None or value < 0:
            continue
        out[(basis_of(r), r.segment)][r.metric][r.branch] = value
    return out


def count_rows(results: ExperimentResults) -> tuple[list, str]:
    """The rows the test reads and where they come from: overall, else the latest weekly window,
    else the latest daily window (each only when it has ``count`` rows)."""
    for period in ("overall", "weekly", "daily"):
        rows = [r for r in results.statistics.get(period, ()) if r.statistic == "count" and r.comparison is None]
        if not rows:
            continue
        if period == "overall":
            return rows, "overall period"
        latest = max(window_of(r) for r in rows)
        return [r for r in rows if window_of(r) == latest], f"{period} period, latest window ({latest})"
    return [], ""


def srm_checks(results: ExperimentResults, ratios: Mapping[str, float] | None = None) -> list[SrmCheck]:
    """One test per (basis, segment) that has counts for at least two branches, enrollments and
    segment ``all`` first. ``ratios``: Experimenter's branch ratios by branch slug, when known."""
    rows, source = count_rows(results)
    checks = []
    by_view = _counts(rows)
    for basis, segment in sorted(by_view, key=lambda k: (k[0] != "enrollments", k[0], k[1] != "all", k[1])):
        metrics = by_view[(basis, segment)]
        metric = COUNT_METRIC if COUNT_METRIC in metrics else sorted(metrics)[0]
        counts = metrics[metric]
        if len(counts) < 2 or sum(counts.values()) <= 0:
            continue
        branches = ordered(counts)
        shares, shares_from = expected_for(branches, ratios)
        observed = [counts[b] for b in branches]
        stat, p = chi_square(observed, shares)
        checks.append(
            SrmCheck(
                basis, segment, source, metric, tuple(branches), tuple(observed), tuple(shares), shares_from, stat, p
            )
        )
    return checks
