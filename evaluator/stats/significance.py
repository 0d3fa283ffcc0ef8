"""Significance maps: one-sided paired Wilcoxon signed-rank tests for every ordered pair, Holm-corrected.

Touchstone's recipe (`plot/SignificanceMaps.py`), per organ: order the algorithms by the
median of their per-case scores (descending); for every pair take the cases where both
have a value (paired by case id), test "x better than y" and "y better than x" with
one-sided Wilcoxon signed-rank tests (zero differences dropped); Holm-correct all
2*C(k,2) p-values of the panel together; x is significantly better than y if its
adjusted p-value is below alpha (0.05).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import special, stats

from evaluator.choices import LabelledEnum
from evaluator.stats.tables import ScoreCube

DEFAULT_ALPHA = 0.05


class PValueMethod(LabelledEnum):
    """How the Wilcoxon signed-rank p-value is computed.

    EXACT (default): today's SciPy default (`method='auto'`): exact null distribution for at most
    50 differences without ties or zeros, a full permutation test for at most 13 with
    ties or zeros, the normal approximation otherwise.
    NORMAL: SciPy 1.8's default, which Touchstone's published heatmaps used: the normal
    approximation with tie correction and no continuity correction, except the exact
    null distribution when there are at most 25 differences and none is zero.
    """

    EXACT = "exact", "Exact where SciPy can (today's SciPy default)"
    NORMAL = "normal", "Normal approximation (as Touchstone's published figures)"


@functools.cache
def _signed_rank_null_pmf(n: int) -> np.ndarray:
    """Null distribution of the sum of positive ranks for n untied, non-zero differences."""
    counts = np.zeros(n * (n + 1) // 2 + 1)
    counts[0] = 1.0
    for rank in range(1, n + 1):
        counts[rank:] = counts[rank:] + counts[:-rank].copy()
    return counts / 2.0**n


def _normal_tail(r_plus: float, n: int, tie_sizes: np.ndarray) -> float:
    mean = n * (n + 1) / 4.0
    variance = n * (n + 1) * (2 * n + 1) - 0.5 * float(np.sum(tie_sizes * (tie_sizes * tie_sizes - 1)))
    z = (r_plus - mean) / math.sqrt(variance / 24.0)
    return float(special.ndtr(-z))  # = scipy.stats.norm.sf(z), without its per-call overhead


def _normal_tails(r_plus: np.ndarray, n: np.ndarray, tie_term: np.ndarray) -> np.ndarray:
    """`_normal_tail` of many tests at once, the same floating-point operations in the same order.

    `tie_term[t]` = sum over tie groups of g (g^2 - 1), an exact integer.
    """
    n = n.astype(np.int64)
    mean = n * (n + 1) / 4.0
    variance = n * (n + 1) * (2 * n + 1) - 0.5 * tie_term.astype(np.float64)
    z = (r_plus - mean) / np.sqrt(variance / 24.0)
    return np.asarray(special.ndtr(-z), dtype=float)


#: Pairs ranked together by `_normal_signed_rank_rows` (bounds its temporaries to a few MB).
_ROWS_PER_CHUNK = 32


def _normal_signed_rank_rows(differences: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normal-approximation p-values (greater, less) of each row of `differences` (NaN = not paired).

    Row by row this is the last branch of `signed_rank_pvalues`: zeros dropped, |d| mid-ranked
    (ties share the average rank, as `scipy.stats.rankdata`), tie-corrected variance. Ranks are
    half-integers and the tie term an integer, so their sums are exact whatever the summation
    order, and the p-values are the scalar path's bit for bit. Every row needs a non-zero difference.
    """
    greater = np.empty(differences.shape[0])
    less = np.empty(differences.shape[0])
    for first in range(0, differences.shape[0], _ROWS_PER_CHUNK):
        rows = differences[first : first + _ROWS_PER_CHUNK]
        n_rows, n_columns = rows.shape
        usable = ~np.isnan(rows) & (rows != 0)
        magnitude = np.where(usable, np.abs(rows), np.inf)  # unusable entries sort last
        order = np.argsort(magnitude, axis=1)
        ordered = np.take_along_axis(magnitude, order, axis=1)
        positive = np.take_along_axis(usable & (rows > 0), order, axis=1)
        n = usable.sum(axis=1)
        starts_group = np.ones((n_rows, n_columns), dtype=bool)
        starts_group[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
        flat_starts = np.flatnonzero(starts_group)  # groups never span rows: column 0 starts one
        sizes = np.diff(np.append(flat_starts, n_rows * n_columns))
        row_of_group, first_column = np.divmod(flat_starts, n_columns)
        mid_rank = first_column + (sizes + 1) / 2.0  # 1-based ranks first+1 .. first+size, averaged
        rank = mid_rank[np.cumsum(starts_group.ravel()) - 1].reshape(n_rows, n_columns)
        r_plus = np.where(positive, rank, 0.0).sum(axis=1)
        in_range = first_column < n[row_of_group]  # the unusable tail is one group per row; skip it
        tie_term = np.bincount(
            row_of_group[in_range], weights=(sizes * (sizes * sizes - 1))[in_range], minlength=n_rows
        )
        r_minus = n * (n + 1) / 2.0 - r_plus
        greater[first : first + n_rows] = _normal_tails(r_plus, n, tie_term)
        less[first : first + n_rows] = _normal_tails(r_minus, n, tie_term)
    return greater, less


def _uses_normal_tail(n_paired: np.ndarray, n_nonzero: np.ndarray, method: PValueMethod) -> np.ndarray:
    """Which tests `signed_rank_pvalues` answers with its normal-approximation branch."""
    if method is PValueMethod.EXACT:
        return (n_nonzero > 0) & (n_paired > 50)
    return (n_nonzero > 0) & ~((n_paired <= 25) & (n_nonzero == n_paired))


def signed_rank_pvalues_many(
    differences: np.ndarray, method: PValueMethod = PValueMethod.NORMAL
) -> tuple[np.ndarray, np.ndarray]:
    """`signed_rank_pvalues` of every row of `differences` (tests, cases); NaN = no pair, left out.

    The same numbers as calling `signed_rank_pvalues` on each row's paired differences: rows
    answered by the normal approximation (more than 50 pairs under EXACT) are ranked together,
    the others (SciPy's exact and permutation paths, small samples) call it row by row.
    """
    method = PValueMethod(method)
    differences = np.atleast_2d(np.asarray(differences, dtype=float))
    paired = ~np.isnan(differences)
    n_paired = paired.sum(axis=1)
    n_nonzero = (paired & (differences != 0)).sum(axis=1)
    greater = np.ones(differences.shape[0])
    less = np.ones(differences.shape[0])
    normal = _uses_normal_tail(n_paired, n_nonzero, method)
    if normal.any():
        greater[normal], less[normal] = _normal_signed_rank_rows(differences[normal])
    for row in np.flatnonzero(~normal & (n_nonzero > 0)):
        greater[row], less[row] = signed_rank_pvalues(differences[row, paired[row]], method)
    return greater, less


def signed_rank_pvalues(
    differences: np.ndarray, method: PValueMethod = PValueMethod.NORMAL
) -> tuple[float, float]:
    """One-sided Wilcoxon signed-rank p-values (median > 0, median < 0) of paired differences.

    Zero differences are dropped (`zero_method='wilcox'`); tied |differences| get mid-ranks.
    All differences zero (or none): (1.0, 1.0), nothing to detect. The "< 0" p-value is the
    "> 0" test of the negated differences, as Touchstone ran `wilcoxon(y, x, 'greater')`.

    >>> p_greater, p_less = signed_rank_pvalues(np.array([0.1, 0.2, 0.3, 0.4, 0.5, -0.05]))
    >>> round(p_greater, 4), round(p_less, 4)
    (0.0312, 0.9844)
    """
    d = np.asarray(differences, dtype=float)
    nonzero = d[d != 0]
    n = nonzero.size
    if n == 0:
        return 1.0, 1.0
    method = PValueMethod(method)
    if method is PValueMethod.EXACT and d.size <= 50:
        greater = stats.wilcoxon(d, alternative="greater").pvalue
        less = stats.wilcoxon(-d, alternative="greater").pvalue
        return float(greater), float(less)
    ranks = stats.rankdata(np.abs(nonzero))
    r_plus = float(ranks[nonzero > 0].sum())
    r_minus = n * (n + 1) / 2.0 - r_plus
    if method is PValueMethod.NORMAL and d.size <= 25 and n == d.size:
        pmf = _signed_rank_null_pmf(n)
        return float(pmf[int(r_plus) :].sum()), float(pmf[int(r_minus) :].sum())
    _, tie_sizes = np.unique(ranks, return_counts=True)
    tie_sizes = tie_sizes[tie_sizes > 1].astype(float)
    return _normal_tail(r_plus, n, tie_sizes), _normal_tail(r_minus, n, tie_sizes)


def holm_adjust(p_values: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (as statsmodels `multipletests(method='holm')`).

    Sorted ascending, p_(i) becomes max_{j<=i} min(1, (m - j) p_(j)) (j from 0).

    >>> holm_adjust(np.array([0.01, 0.04, 0.03]))
    array([0.03, 0.06, 0.06])
    """
    p = np.asarray(p_values, dtype=float)
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted_sorted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    adjusted = np.empty(m)
    adjusted[order] = adjusted_sorted
    return adjusted


def bonferroni_adjust(p_values: np.ndarray) -> np.ndarray:
    """Bonferroni: min(1, m p)."""
    p = np.asarray(p_values, dtype=float)
    return np.minimum(1.0, p * p.size)


def benjamini_hochberg_adjust(p_values: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg false discovery rate adjustment (as `scipy.stats.false_discovery_control`)."""
    p = np.asarray(p_values, dtype=float)
    if p.size == 0:
        return p
    return np.asarray(stats.false_discovery_control(p, method="bh"))


def order_by_median(values: np.ndarray, algorithms: tuple[str, ...]) -> tuple[str, ...]:
    """Algorithms sorted by the median of their values (algorithm, case) over non-NaN cases, best first.

    Ties keep the given order; algorithms without any value come last.
    """
    medians = np.array(
        [np.median(row[~np.isnan(row)]) if (~np.isnan(row)).any() else -np.inf for row in values]
    )
    order = sorted(range(len(algorithms)), key=lambda i: -medians[i])
    return tuple(algorithms[i] for i in order)


@dataclass(frozen=True, eq=False)
class SignificanceMap:
    """Pairwise one-sided tests of one organ, in `order` (best median first).

    For i != j: `p_value[i, j]` is the raw p-value of "order[i] better than order[j]",
    `p_adjusted[i, j]` its Holm-adjusted value over all k(k-1) ordered pairs,
    `better[i, j]` = `p_adjusted[i, j] < alpha`, `n_cases[i, j]` the paired cases
    (both have a value). The diagonal holds NaN / False / 0.
    """

    metric: str
    organ: str
    order: tuple[str, ...]
    medians: np.ndarray
    p_value: np.ndarray
    p_adjusted: np.ndarray
    better: np.ndarray
    n_cases: np.ndarray
    alpha: float
    p_value_method: PValueMethod

    def is_better(self, algorithm_x: str, algorithm_y: str) -> bool:
        """Whether algorithm_x is significantly better than algorithm_y."""
        return bool(self.better[self.order.index(algorithm_x), self.order.index(algorithm_y)])

    def wins(self) -> np.ndarray:
        """Number of algorithms each one (in `order`) is significantly better than."""
        return self.better.sum(axis=1)


def significance_map_from_values(
    values: np.ndarray,
    algorithms: tuple[str, ...],
    *,
    metric: str = "",
    organ: str = "",
    alpha: float = DEFAULT_ALPHA,
    p_value_method: PValueMethod = PValueMethod.NORMAL,
    order: tuple[str, ...] | None = None,
) -> SignificanceMap:
    """Significance map from per-case values of one organ, shape (algorithm, case), NaN = no value."""
    values = np.asarray(values, dtype=float)
    if order is None:
        order = order_by_median(values, algorithms)
    elif sorted(order) != sorted(algorithms):
        raise ValueError(f"order must list exactly the algorithms {sorted(algorithms)}, got {list(order)}.")
    index = [algorithms.index(a) for a in order]
    ordered = values[index]
    k = len(order)
    raw = np.full((k, k), np.nan)
    n_cases = np.zeros((k, k), dtype=int)
    first, second = np.triu_indices(k, 1)
    differences = ordered[first] - ordered[second]  # NaN unless both have a value (paired by case)
    raw[first, second], raw[second, first] = signed_rank_pvalues_many(differences, p_value_method)
    n_cases[first, second] = n_cases[second, first] = (~np.isnan(differences)).sum(axis=1)
    off_diagonal = ~np.eye(k, dtype=bool)
    adjusted = np.full((k, k), np.nan)
    adjusted[off_diagonal] = holm_adjust(raw[off_diagonal])
    better = np.zeros((k, k), dtype=bool)
    better[off_diagonal] = adjusted[off_diagonal] < alpha
    medians = np.array(
        [np.median(row[~np.isnan(row)]) if (~np.isnan(row)).any() else np.nan for row in ordered]
    )
    return SignificanceMap(
        metric=metric,
        organ=organ,
        order=tuple(order),
        medians=medians,
        p_value=raw,
        p_adjusted=adjusted,
        better=better,
        n_cases=n_cases,
        alpha=alpha,
        p_value_method=PValueMethod(p_value_method),
    )


def significance_map(
    cube: ScoreCube,
    organ: str,
    *,
    alpha: float = DEFAULT_ALPHA,
    p_value_method: PValueMethod = PValueMethod.NORMAL,
    order: tuple[str, ...] | None = None,
) -> SignificanceMap:
    """Touchstone's significance map of one organ of a cube (see the module docstring).

    `order` overrides the median order (e.g. medians computed under another row rule).
    """
    values = cube.values[:, :, cube.organ_index(organ)]
    return significance_map_from_values(
        values,
        cube.algorithms,
        metric=cube.metric,
        organ=organ,
        alpha=alpha,
        p_value_method=p_value_method,
        order=order,
    )
