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
from scipy import stats

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
    values = np.asarray(values, dtype=float)
    labels = np.asarray(labels, dtype=object)
    keep = ~np.isnan(values) & pd.notna(labels)
    names = np.array([str(x) for x in labels[keep]], dtype=object)
    kept_values = values[keep]
    samples: dict[str, np.ndarray] = {}
    excluded: list[str] = []
    for group in sorted(set(names.tolist())):
        sample = kept_values[names == group]
        if sample.size >= min_cases_per_group:
            samples[group] = sample
        else:
            excluded.append(group)
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
    raw = []
    u_values = []
    for a, b in pairs:
        result = stats.mannwhitneyu(samples[a], samples[b], alternative="two-sided")
        u_values.append(float(result.statistic))
        raw.append(float(result.pvalue))
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
    return tuple(
        compare_groups(
            per_case[a],
            labels,
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
