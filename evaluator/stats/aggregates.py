"""Point aggregates of per-case scores: organ means, the headline, medians, reference ranges, per group.

Definitions (Touchstone's): an organ's mean is the mean over the cases where the organ
is evaluable (NaN skipped; N is that number of cases). The headline is the unweighted
mean of the organ means. The median and the 2.5-97.5 percentile range describe the
spread of *cases* (a reference range, not a confidence interval; see `bootstrap`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from evaluator.stats.tables import ScoreCube

REFERENCE_RANGE_PERCENTILES: tuple[float, float] = (2.5, 97.5)


def nanmean_last_axis(values: np.ndarray) -> np.ndarray:
    """Mean over the last axis skipping NaN; NaN where nothing is left.

    Sums a contiguous copy with NaN replaced by 0 (numpy's pairwise summation), which
    reproduces pandas' `Series.mean()` bit for bit on the same case order.

    >>> nanmean_last_axis(np.array([[1.0, np.nan, 2.0], [np.nan, np.nan, np.nan]]))
    array([1.5, nan])
    """
    mask = ~np.isnan(values)
    filled = np.ascontiguousarray(np.where(mask, values, 0.0))
    n = mask.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, filled.sum(axis=-1) / np.maximum(n, 1), np.nan)


def headline_of(organ_means: np.ndarray) -> np.ndarray:
    """Unweighted mean over the last (organ) axis of organ means, skipping organs without a mean."""
    return nanmean_last_axis(organ_means)


def organ_means(cube: ScoreCube) -> tuple[np.ndarray, np.ndarray]:
    """Per (algorithm, organ) mean over evaluable cases and the number N of those cases."""
    by_organ = np.ascontiguousarray(cube.values.transpose(0, 2, 1))  # (algorithm, organ, case)
    return nanmean_last_axis(by_organ), (~np.isnan(by_organ)).sum(axis=-1)


def case_scores(cube: ScoreCube, *, skip_missing_organs: bool = True) -> np.ndarray:
    """One score per (algorithm, case): the mean over the case's organs, shape (algorithm, case).

    With `skip_missing_organs` (default) the mean is over the organs evaluable for the
    case (NaN if none). Without it, a case lacking any organ gets NaN: the Leaderboard's
    `mean_table` rule (`mean(axis=1, skipna=False)`), which keeps only cases with all
    organs. Organs are summed one after another, as pandas sums a row.
    """
    total = np.zeros(cube.values.shape[:2])
    count = np.zeros(cube.values.shape[:2])
    for organ in range(cube.values.shape[2]):
        column = cube.values[:, :, organ]
        present = ~np.isnan(column)
        if skip_missing_organs:
            total = total + np.where(present, column, 0.0)
        else:
            total = total + column
        count = count + present
    with np.errstate(invalid="ignore", divide="ignore"):
        if skip_missing_organs:
            return np.where(count > 0, total / np.maximum(count, 1), np.nan)
        return total / cube.values.shape[2]


@dataclass(frozen=True, eq=False)
class Distribution:
    """Median and percentile reference range of values along the last axis (NaN skipped)."""

    median: np.ndarray
    low: np.ndarray
    high: np.ndarray
    n: np.ndarray
    percentiles: tuple[float, float]


def distribution(
    values: np.ndarray, percentiles: tuple[float, float] = REFERENCE_RANGE_PERCENTILES
) -> Distribution:
    """`np.nanmedian` and `np.nanpercentile` (linear interpolation) over the last axis.

    >>> d = distribution(np.array([0.1, 0.2, np.nan, 0.4]))
    >>> float(d.median), int(d.n)
    (0.2, 3)
    """
    values = np.asarray(values, dtype=float)
    n = (~np.isnan(values)).sum(axis=-1)
    flat = values.reshape(-1, values.shape[-1]) if values.ndim > 1 else values[None, :]
    median = np.full(flat.shape[0], np.nan)
    low = np.full(flat.shape[0], np.nan)
    high = np.full(flat.shape[0], np.nan)
    for i, row in enumerate(flat):
        kept = row[~np.isnan(row)]
        if kept.size:
            median[i] = np.median(kept)
            low[i], high[i] = np.percentile(kept, percentiles)
    shape = values.shape[:-1]
    return Distribution(median.reshape(shape), low.reshape(shape), high.reshape(shape), n, percentiles)


@dataclass(frozen=True, eq=False)
class OrganSummary:
    """Aggregates of one metric per (algorithm, organ), and the headline per algorithm.

    `mean[a, o]`: mean over the N = `n_cases[a, o]` cases where organ o is evaluable
    for algorithm a. `headline[a]`: unweighted mean of `mean[a, :]` over organs with
    N > 0. `median`, `low`, `high`: median and percentile range of the per-case values.
    `n_missing[a]`: cases of the benchmark with no row at all for algorithm a.
    """

    metric: str
    algorithms: tuple[str, ...]
    organs: tuple[str, ...]
    mean: np.ndarray
    n_cases: np.ndarray
    n_missing: np.ndarray
    median: np.ndarray
    low: np.ndarray
    high: np.ndarray
    percentiles: tuple[float, float]
    headline: np.ndarray

    def to_frame(self) -> pd.DataFrame:
        """Tidy table: one row per (algorithm, organ)."""
        a, o = np.meshgrid(np.arange(len(self.algorithms)), np.arange(len(self.organs)), indexing="ij")
        return pd.DataFrame(
            {
                "algorithm": np.array(self.algorithms, dtype=object)[a.ravel()],
                "organ": np.array(self.organs, dtype=object)[o.ravel()],
                "mean": self.mean.ravel(),
                "n_cases": self.n_cases.ravel(),
                "median": self.median.ravel(),
                "low": self.low.ravel(),
                "high": self.high.ravel(),
            }
        )


def summarize(
    cube: ScoreCube, *, percentiles: tuple[float, float] = REFERENCE_RANGE_PERCENTILES
) -> OrganSummary:
    """Organ means with N, headline, medians and percentile ranges of one metric."""
    mean, n_cases = organ_means(cube)
    spread = distribution(cube.values.transpose(0, 2, 1), percentiles)
    return OrganSummary(
        metric=cube.metric,
        algorithms=cube.algorithms,
        organs=cube.organs,
        mean=mean,
        n_cases=n_cases,
        n_missing=cube.n_missing(),
        median=spread.median,
        low=spread.low,
        high=spread.high,
        percentiles=percentiles,
        headline=headline_of(mean),
    )


@dataclass(frozen=True, eq=False)
class GroupMeans:
    """Organ means and headline within groups of cases (sites, scanners, age bands...).

    `mean[a, g, o]` over the cases of group g where organ o is evaluable (N in
    `n_cases[a, g, o]`); `headline[a, g]` = unweighted mean of organ means in group g;
    `n_group_cases[g]` = cases in group g.
    """

    metric: str
    factor: str
    algorithms: tuple[str, ...]
    groups: tuple[str, ...]
    organs: tuple[str, ...]
    mean: np.ndarray
    n_cases: np.ndarray
    headline: np.ndarray
    n_group_cases: np.ndarray


def group_means(cube: ScoreCube, labels: np.ndarray, *, factor: str = "site") -> GroupMeans:
    """Organ means and headline per group; `labels[i]` is the group of `cube.cases[i]` (None/NaN: no group)."""
    labels = np.asarray(labels, dtype=object)
    if labels.shape != (len(cube.cases),):
        raise ValueError(f"Need one group label per case ({len(cube.cases)}), got shape {labels.shape}.")
    known = pd.notna(labels)
    groups = tuple(sorted({str(x) for x in labels[known]}))
    shape = (len(cube.algorithms), len(groups), len(cube.organs))
    mean = np.full(shape, np.nan)
    n_cases = np.zeros(shape, dtype=int)
    n_group = np.zeros(len(groups), dtype=int)
    text = np.array([str(x) if k else "" for x, k in zip(labels, known, strict=True)], dtype=object)
    for g, group in enumerate(groups):
        in_group = known & (text == group)
        n_group[g] = int(in_group.sum())
        by_organ = np.ascontiguousarray(cube.values[:, in_group, :].transpose(0, 2, 1))
        mean[:, g, :] = nanmean_last_axis(by_organ)
        n_cases[:, g, :] = (~np.isnan(by_organ)).sum(axis=-1)
    return GroupMeans(
        cube.metric, factor, cube.algorithms, groups, cube.organs, mean, n_cases, headline_of(mean), n_group
    )


@dataclass(frozen=True, eq=False)
class BoxStatistics:
    """Tukey box-plot statistics along the last axis: quartiles, whiskers at 1.5 IQR, mean."""

    q1: np.ndarray
    median: np.ndarray
    q3: np.ndarray
    whisker_low: np.ndarray
    whisker_high: np.ndarray
    mean: np.ndarray


def box_statistics(values: np.ndarray) -> BoxStatistics:
    """Quartiles (linear interpolation), whiskers = most extreme values within 1.5 IQR, mean."""
    flat = np.asarray(values, dtype=float).reshape(-1, values.shape[-1])
    out = np.full((6, flat.shape[0]), np.nan)
    for i, row in enumerate(flat):
        kept = row[~np.isnan(row)]
        if not kept.size:
            continue
        q1, med, q3 = np.percentile(kept, [25, 50, 75])
        iqr = q3 - q1
        inside = kept[(kept >= q1 - 1.5 * iqr) & (kept <= q3 + 1.5 * iqr)]
        out[:, i] = (q1, med, q3, inside.min(), inside.max(), kept.mean())
    shape = values.shape[:-1]
    return BoxStatistics(*(row.reshape(shape) for row in out))


@dataclass(frozen=True, eq=False)
class DistanceMeans:
    """Mean of a surface distance (HD95, ASSD; mm) and how the cases without a distance entered it.

    A missed organ, or a case without valid output, has an infinite distance. With the benchmark's finite
    worst value (`worst_mm`, e.g. the image diagonal) those cases count at that value in `mean_mm`, which
    then covers all `n_finite + n_infinite` evaluable cases. Without one there is no honest number to
    average in, so `mean_mm` is over the `n_finite` cases with a finite distance and `n_infinite` counts
    the others: the two always travel together, so a mean over fewer cases is never shown as if it
    covered them all.
    """

    mean_mm: np.ndarray
    n_finite: np.ndarray
    n_infinite: np.ndarray
    worst_mm: float | None = None


def distance_means(distances_mm: np.ndarray, worst_mm: float | None = None) -> DistanceMeans:
    """Over the last axis: NaN = organ not evaluable (skipped, not counted); +inf = missed.

    A missed organ counts at `worst_mm` when the benchmark sets one, else it is counted apart.
    Distances above `worst_mm` are kept as they are (the worst value replaces infinity only).

    >>> d = distance_means(np.array([2.0, np.inf, np.nan, 4.0]))
    >>> float(d.mean_mm), int(d.n_finite), int(d.n_infinite)
    (3.0, 2, 1)
    >>> float(distance_means(np.array([2.0, np.inf, np.nan, 4.0]), worst_mm=300.0).mean_mm)
    102.0
    """
    values = np.asarray(distances_mm, dtype=float)
    infinite = np.isinf(values)
    if worst_mm is not None and not (np.isfinite(worst_mm) and worst_mm >= 0):
        raise ValueError(f"The worst-case distance must be a finite number of mm >= 0, got {worst_mm!r}.")
    counted = np.where(infinite, np.nan if worst_mm is None else float(worst_mm), values)
    return DistanceMeans(
        mean_mm=nanmean_last_axis(counted),
        n_finite=np.isfinite(values).sum(axis=-1),
        n_infinite=infinite.sum(axis=-1),
        worst_mm=None if worst_mm is None else float(worst_mm),
    )
