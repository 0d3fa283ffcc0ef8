"""Breakdowns of an algorithm's per-case scores by site, in/out of distribution, scanner, sex, age band...

As Touchstone did: a Kruskal-Wallis test across the groups, then two-sided Mann-Whitney U
tests between every pair of groups, with a multiple-comparison correction over the
pairs (Bonferroni by default). A pair is reported significant only when the
Kruskal-Wallis test is (the post-hoc tests are gated by the omnibus test). Groups with
fewer than `min_cases_per_group` cases are left out and listed.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special, stats

from evaluator.stats.aggregates import case_scores
from evaluator.stats.significance import (
    DEFAULT_ALPHA,
    benjamini_hochberg_adjust,
    bonferroni_adjust,
    holm_adjust,
)
from evaluator.stats.tables import ScoreCube

DEFAULT_MIN_CASES_PER_GROUP = 10
IN_DISTRIBUTION = "in-distribution"
OUT_OF_DISTRIBUTION = "out-of-distribution"
DEFAULT_AGE_BAND_EDGES: tuple[float, ...] = (0, 20, 40, 60, 80)


class Correction(enum.StrEnum):
    BONFERRONI = "bonferroni"
    HOLM = "holm"
    BENJAMINI_HOCHBERG = "benjamini_hochberg"


_ADJUST = {
    Correction.BONFERRONI: bonferroni_adjust,
    Correction.HOLM: holm_adjust,
    Correction.BENJAMINI_HOCHBERG: benjamini_hochberg_adjust,
}


@dataclass(frozen=True)
class GroupSummary:
    """Per-case scores of one group: number of cases, mean and median."""

    group: str
    n_cases: int
    mean: float
    median: float


@dataclass(frozen=True)
class PairwiseTest:
    """Two-sided Mann-Whitney U test between two groups; `significant` also needs the omnibus test."""

    group_a: str
    group_b: str
    u_statistic: float
    p_value: float
    p_adjusted: float
    significant: bool


@dataclass(frozen=True)
class GroupComparison:
    """Kruskal-Wallis across groups and post-hoc pairwise tests for one algorithm and factor."""

    factor: str
    algorithm: str
    metric: str
    organ: str | None
    groups: tuple[GroupSummary, ...]
    excluded_groups: tuple[str, ...]
    kruskal_h: float
    kruskal_p: float
    significant: bool
    pairwise: tuple[PairwiseTest, ...]
    correction: Correction
    alpha: float


def compare_groups(
    values: np.ndarray,
    labels: np.ndarray,
    *,
    factor: str,
    algorithm: str = "",
    metric: str = "",
    organ: str | None = None,
    alpha: float = DEFAULT_ALPHA,
    correction: Correction = Correction.BONFERRONI,
    min_cases_per_group: int = DEFAULT_MIN_CASES_PER_GROUP,
) -> GroupComparison:
    """Kruskal-Wallis then pairwise Mann-Whitney U over the groups of `labels` (NaN values and labels skipped)."""
    names, codes = _group_codes(labels)
    return _compare_coded(
        np.asarray(values, dtype=float),
        codes,
        names,
        factor=factor,
        algorithm=algorithm,
        metric=metric,
        organ=organ,
        alpha=alpha,
        correction=correction,
        min_cases_per_group=min_cases_per_group,
    )


def _group_codes(labels: np.ndarray) -> tuple[tuple[str, ...], np.ndarray]:
    """Sorted distinct group names (labels as `str`) and each label's index among them, -1 for a missing label."""
    labels = np.asarray(labels, dtype=object)
    present = np.asarray(pd.notna(labels), dtype=bool)
    names, inverse = np.unique(np.array([str(x) for x in labels[present]], dtype=object), return_inverse=True)
    codes = np.full(labels.shape, -1, dtype=np.int64)
    codes[present] = np.ravel(inverse)
    return tuple(str(name) for name in names), codes


def _compare_coded(
    values: np.ndarray,
    codes: np.ndarray,
    names: tuple[str, ...],
    *,
    factor: str,
    algorithm: str,
    metric: str,
    organ: str | None,
    alpha: float,
    correction: Correction,
    min_cases_per_group: int,
) -> GroupComparison:
    """`compare_groups` with the labels already coded (`_group_codes`), so a factor is coded once."""
    codes = np.where(np.isnan(values), -1, codes)
    samples: dict[str, np.ndarray] = {}
    excluded: list[str] = []
    for code in np.unique(codes[codes >= 0]):
        sample = values[codes == code]  # in case order, as the means are summed
        if sample.size >= min_cases_per_group:
            samples[names[code]] = sample
        else:
            excluded.append(names[code])
    summaries = tuple(
        GroupSummary(g, int(s.size), float(s.mean()), float(np.median(s))) for g, s in samples.items()
    )
    h, p = float("nan"), float("nan")
    if len(samples) >= 2:
        try:
            h, p = (float(x) for x in stats.kruskal(*samples.values()))
        except ValueError:  # every value identical: no evidence of a difference
            h, p = 0.0, 1.0
    omnibus = bool(p < alpha)
    pairs = list(itertools.combinations(samples, 2))
    ordered = {group: np.sort(sample) for group, sample in samples.items()}
    raw = []
    u_values = []
    for a, b in pairs:
        u_statistic, p_value = mann_whitney_two_sided(ordered[a], ordered[b])
        u_values.append(u_statistic)
        raw.append(p_value)
    adjusted = _ADJUST[Correction(correction)](np.array(raw)) if raw else np.array([])
    pairwise = tuple(
        PairwiseTest(a, b, u, pv, float(pa), bool(omnibus and pa < alpha))
        for (a, b), u, pv, pa in zip(pairs, u_values, raw, adjusted, strict=True)
    )
    return GroupComparison(
        factor=factor,
        algorithm=algorithm,
        metric=metric,
        organ=organ,
        groups=summaries,
        excluded_groups=tuple(excluded),
        kruskal_h=h,
        kruskal_p=p,
        significant=omnibus,
        pairwise=pairwise,
        correction=Correction(correction),
        alpha=alpha,
    )


def mann_whitney_two_sided(sorted_a: np.ndarray, sorted_b: np.ndarray) -> tuple[float, float]:
    """`scipy.stats.mannwhitneyu(a, b, alternative="two-sided")` of two sorted, NaN-free samples: (U of a, p).

    U of a counts the pairs (x in a, y in b) with x > y, ties counting one half (an exact
    half-integer, as SciPy's rank sum minus n_a (n_a + 1) / 2). When SciPy uses the normal
    approximation (both samples larger than 8, or any tie) the p-value is its formula, with the
    same floating-point operations in the same order: continuity correction and tie term
    sum(t^3 - t) over the tie groups t of both samples together; otherwise SciPy's exact test
    is called. About 20 times faster than calling SciPy, whose per-call overhead dominates.

    >>> mann_whitney_two_sided(np.arange(10.0), np.arange(10.0) + 5)  # as SciPy: (12.5, 0.005075...)
    (12.5, 0.005075...)
    """
    n1, n2 = int(sorted_a.size), int(sorted_b.size)
    combined = np.sort(np.concatenate([sorted_a, sorted_b]))
    group_starts = np.flatnonzero(np.r_[True, combined[1:] != combined[:-1]])
    tie_sizes = np.diff(np.append(group_starts, combined.size))
    if not (n1 > 8 and n2 > 8) and not (tie_sizes > 1).any():
        result = stats.mannwhitneyu(sorted_a, sorted_b, alternative="two-sided")
        return float(result.statistic), float(result.pvalue)
    below = np.searchsorted(sorted_b, sorted_a, side="left")
    equal = np.searchsorted(sorted_b, sorted_a, side="right") - below
    u1 = np.float64(int(below.sum())) + 0.5 * np.float64(int(equal.sum()))
    u = max(u1, n1 * n2 - u1)
    n = n1 + n2
    tie_term = np.float64(int(np.sum(tie_sizes**3 - tie_sizes)))
    s = np.sqrt(n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1))))
    numerator = u - n1 * n2 / 2
    numerator -= 0.5
    with np.errstate(divide="ignore", invalid="ignore"):
        z = numerator / s
    p = special.ndtr(-z) * 2
    return float(u1), float(np.clip(p, 0.0, 1.0))


def breakdown(
    cube: ScoreCube,
    labels: np.ndarray,
    *,
    factor: str,
    organ: str | None = None,
    alpha: float = DEFAULT_ALPHA,
    correction: Correction = Correction.BONFERRONI,
    min_cases_per_group: int = DEFAULT_MIN_CASES_PER_GROUP,
) -> tuple[GroupComparison, ...]:
    """One `GroupComparison` per algorithm; `labels[i]` is the group of `cube.cases[i]`.

    The tested value of a case is the organ's score (`organ` given) or the mean over the
    case's evaluable organs (`organ` None), so each case counts once.
    """
    labels = np.asarray(labels, dtype=object)
    if labels.shape != (len(cube.cases),):
        raise ValueError(f"Need one label per case ({len(cube.cases)}), got shape {labels.shape}.")
    per_case = case_scores(cube) if organ is None else cube.values[:, :, cube.organ_index(organ)]
    names, codes = _group_codes(labels)
    return tuple(
        _compare_coded(
            per_case[a],
            codes,
            names,
            factor=factor,
            algorithm=algorithm,
            metric=cube.metric,
            organ=organ,
            alpha=alpha,
            correction=correction,
            min_cases_per_group=min_cases_per_group,
        )
        for a, algorithm in enumerate(cube.algorithms)
    )


def distribution_labels(sites: np.ndarray, site_is_ood: Mapping[str, bool]) -> np.ndarray:
    """In- / out-of-distribution label per case from its site; None for sites not in the mapping."""
    return np.array(
        [
            None if s not in site_is_ood else (OUT_OF_DISTRIBUTION if site_is_ood[s] else IN_DISTRIBUTION)
            for s in sites
        ],
        dtype=object,
    )


def age_bands(
    ages: Sequence[float] | np.ndarray, edges: Sequence[float] = DEFAULT_AGE_BAND_EDGES
) -> np.ndarray:
    """Age band labels ("40-59", "80+"); None for a missing age or one below the first edge.

    >>> age_bands([5, 45.5, 80, float("nan")]).tolist()
    ['0-19', '40-59', '80+', None]
    """
    ages = np.asarray(ages, dtype=float)
    labels: list[str | None] = []
    for age in ages:
        if np.isnan(age) or age < edges[0]:
            labels.append(None)
            continue
        band = int(np.searchsorted(edges, age, side="right")) - 1
        if band == len(edges) - 1:
            labels.append(f"{edges[-1]:g}+")
        else:
            labels.append(f"{edges[band]:g}-{edges[band + 1] - 1:g}")
    return np.array(labels, dtype=object)
