"""Rankings of algorithms and their stability over bootstrap resamples (challengeR's idea).

Three ways to aggregate per-case, per-organ scores into one ranking:

- mean-then-rank (default): rank by the headline (unweighted mean of organ means).
- rank-then-mean: rank the algorithms on every (case, organ) where they can be scored
  (1 = best, ties share the lowest rank), average each algorithm's ranks per organ,
  average those over organs (unweighted), rank by that (lower is better).
- test-then-rank: per organ, count how many algorithms each one is significantly
  better than (the significance map); average over organs; rank by that.

Rank stability: each algorithm's rank in every bootstrap resample (the same paired,
stratified resamples as the confidence intervals), summarised as a rank distribution,
and Kendall's tau-b between every resample's ranking and the full-data ranking.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evaluator.choices import LabelledEnum
from evaluator.stats.aggregates import headline_of, nanmean_last_axis
from evaluator.stats.bootstrap import (
    BootstrapMeans,
    StratifiedBootstrap,
    bootstrap_means,
    quantiles,
    resampled_means,
)
from evaluator.stats.significance import (
    DEFAULT_ALPHA,
    PValueMethod,
    significance_map_from_values,
)
from evaluator.stats.tables import ScoreCube

#: Resamples used for test-then-rank stability (each resample runs every significance map).
DEFAULT_TEST_THEN_RANK_RESAMPLES = 100


class RankMethod(LabelledEnum):
    """How algorithms are ranked: on the mean scores, on per-case ranks, or by significant pairwise wins."""

    MEAN_THEN_RANK = "mean_then_rank", "Mean then rank"
    RANK_THEN_MEAN = "rank_then_mean", "Rank per case, then mean rank"
    TEST_THEN_RANK = "test_then_rank", "Test then rank (significant wins)"


def rank_descending(scores: np.ndarray) -> np.ndarray:
    """Ranks along the last axis, 1 = highest; ties share the lowest rank ("min"); NaN ranks last.

    >>> rank_descending(np.array([0.8, 0.9, 0.8, np.nan]))
    array([2, 1, 2, 4])
    """
    s = np.where(np.isnan(scores), -np.inf, scores)
    return 1 + (s[..., None, :] > s[..., :, None]).sum(axis=-1)


def kendall_tau_b(rankings: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Kendall's tau-b between each row of `rankings` (B, A) and `reference` (A,), as scipy's `kendalltau`.

    tau-b = (concordant - discordant) / sqrt((n0 - ties_reference) (n0 - ties_row)),
    n0 = A(A-1)/2 pairs; NaN when a ranking is all ties.
    """
    rankings = np.atleast_2d(np.asarray(rankings, dtype=float))
    reference = np.asarray(reference, dtype=float)
    i, j = np.triu_indices(reference.size, 1)
    reference_sign = np.sign(reference[i] - reference[j])
    row_sign = np.sign(rankings[:, i] - rankings[:, j])
    n0 = i.size
    denominator = np.sqrt((n0 - (reference_sign == 0).sum()) * (n0 - (row_sign == 0).sum(axis=1)))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(
            denominator > 0, (row_sign @ reference_sign) / np.where(denominator > 0, denominator, 1), np.nan
        )


def case_ranks(values: np.ndarray) -> np.ndarray:
    """Rank of each algorithm on each (case, organ): values (algorithm, case, organ) -> same shape.

    1 = best among the algorithms with a value there; ties share the lowest rank; NaN where no value.
    """
    ranks = rank_descending(values.transpose(1, 2, 0)).transpose(2, 0, 1).astype(float)
    return np.where(np.isnan(values), np.nan, ranks)


@dataclass(frozen=True, eq=False)
class Ranking:
    """A full-data ranking: `rank[a]` (1 = best) of `algorithms[a]`, from `score[a]`.

    `score` is the headline mean (mean-then-rank), the mean rank (rank-then-mean, lower
    is better) or the mean number of significant wins per organ (test-then-rank).
    """

    metric: str
    method: RankMethod
    algorithms: tuple[str, ...]
    score: np.ndarray
    rank: np.ndarray

    def ordered(self) -> tuple[str, ...]:
        """Algorithms best first (ties in the given order)."""
        return tuple(self.algorithms[i] for i in np.argsort(self.rank, kind="stable"))


def _wins_per_organ(
    values: np.ndarray,
    algorithms: tuple[str, ...],
    alpha: float,
    p_value_method: PValueMethod,
) -> np.ndarray:
    """Mean over organs of the number of significant wins; values (algorithm, case, organ)."""
    wins = np.zeros((values.shape[2], len(algorithms)))
    for organ in range(values.shape[2]):
        panel = significance_map_from_values(
            values[:, :, organ], algorithms, alpha=alpha, p_value_method=p_value_method, order=algorithms
        )
        wins[organ] = panel.wins()
    return wins.mean(axis=0)


def rank_algorithms(
    cube: ScoreCube,
    method: RankMethod = RankMethod.MEAN_THEN_RANK,
    *,
    alpha: float = DEFAULT_ALPHA,
    p_value_method: PValueMethod = PValueMethod.NORMAL,
) -> Ranking:
    """Rank the cube's algorithms on all cases with one of the three aggregation methods."""
    method = RankMethod(method)
    if method is RankMethod.MEAN_THEN_RANK:
        score = headline_of(nanmean_last_axis(np.ascontiguousarray(cube.values.transpose(0, 2, 1))))
        rank = rank_descending(score)
    elif method is RankMethod.RANK_THEN_MEAN:
        mean_rank = nanmean_last_axis(np.ascontiguousarray(case_ranks(cube.values).transpose(0, 2, 1)))
        score = headline_of(mean_rank)
        rank = rank_descending(-score)
    else:
        score = _wins_per_organ(cube.values, cube.algorithms, alpha, p_value_method)
        rank = rank_descending(score)
    return Ranking(cube.metric, method, cube.algorithms, score, rank)


@dataclass(frozen=True, eq=False)
class RankStability:
    """Bootstrap distribution of the ranking of one metric.

    `bootstrap_ranks[r, a]`: rank of `algorithms[a]` in resample r (1 = best).
    `rank_counts[a, k]`: resamples in which algorithm a has rank k + 1.
    `kendall_tau[r]`: tau-b between resample r's ranking and `full.rank`.
    """

    metric: str
    method: RankMethod
    algorithms: tuple[str, ...]
    full: Ranking
    bootstrap_ranks: np.ndarray
    kendall_tau: np.ndarray

    @property
    def n_resamples(self) -> int:
        return int(self.bootstrap_ranks.shape[0])

    @property
    def rank_counts(self) -> np.ndarray:
        n = len(self.algorithms)
        return np.stack([np.bincount(self.bootstrap_ranks[:, a] - 1, minlength=n) for a in range(n)])

    @property
    def median_rank(self) -> np.ndarray:
        return np.median(self.bootstrap_ranks, axis=0)

    def rank_interval(self, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """Quantiles of each algorithm's bootstrap ranks (linear interpolation)."""
        tail = round((1 - level) / 2, 12)
        ranks = self.bootstrap_ranks.astype(float)
        return quantiles(ranks, tail), quantiles(ranks, 1 - tail)


def _bootstrap_scores(
    cube: ScoreCube, plan: StratifiedBootstrap, method: RankMethod, means: BootstrapMeans | None
) -> np.ndarray:
    if method is RankMethod.MEAN_THEN_RANK:
        means = means if means is not None else bootstrap_means(cube, plan)
        return means.headline_replicates
    n_algorithms, n_cases, n_organs = cube.values.shape
    columns = case_ranks(cube.values).transpose(1, 0, 2).reshape(n_cases, n_algorithms * n_organs)
    mean_ranks = resampled_means(plan, columns).reshape(plan.n_resamples, n_algorithms, n_organs)
    return -headline_of(mean_ranks)  # negated: lower mean rank is better


def rank_stability(
    cube: ScoreCube,
    plan: StratifiedBootstrap,
    *,
    method: RankMethod = RankMethod.MEAN_THEN_RANK,
    means: BootstrapMeans | None = None,
    alpha: float = DEFAULT_ALPHA,
    p_value_method: PValueMethod = PValueMethod.NORMAL,
    max_test_resamples: int = DEFAULT_TEST_THEN_RANK_RESAMPLES,
) -> RankStability:
    """Rank distribution of every algorithm over the plan's resamples, and Kendall's tau.

    Mean-then-rank reuses `means` when given. Test-then-rank runs every organ's
    significance map on each resample, so only the first `max_test_resamples` are used.
    """
    method = RankMethod(method)
    full = rank_algorithms(cube, method, alpha=alpha, p_value_method=p_value_method)
    if method is RankMethod.TEST_THEN_RANK:
        n = min(plan.n_resamples, max_test_resamples)
        scores = np.empty((n, len(cube.algorithms)))
        for r, indices in enumerate(plan.iter_case_indices(n)):
            scores[r] = _wins_per_organ(cube.values[:, indices, :], cube.algorithms, alpha, p_value_method)
    else:
        scores = _bootstrap_scores(cube, plan, method, means)
    bootstrap_ranks = rank_descending(scores)
    return RankStability(
        metric=cube.metric,
        method=method,
        algorithms=cube.algorithms,
        full=full,
        bootstrap_ranks=bootstrap_ranks,
        kendall_tau=kendall_tau_b(bootstrap_ranks, full.rank),
    )


def organ_rank_stability(means: BootstrapMeans) -> dict[str, RankStability]:
    """Mean-then-rank stability of every single organ, from an existing bootstrap."""
    out: dict[str, RankStability] = {}
    for o, organ in enumerate(means.organs):
        score = means.organ_estimate[:, o]
        full = Ranking(
            means.metric, RankMethod.MEAN_THEN_RANK, means.algorithms, score, rank_descending(score)
        )
        ranks = rank_descending(means.organ_replicates[:, :, o])
        out[organ] = RankStability(
            means.metric,
            RankMethod.MEAN_THEN_RANK,
            means.algorithms,
            full,
            ranks,
            kendall_tau_b(ranks, full.rank),
        )
    return out
