"""Stratified, paired bootstrap of organ means and the headline, as matrix products of case counts.

A resample draws, within every site, as many cases as the site has, with replacement.
It is stored as a vector of case counts `k` (sum over a site = the site's size), and the
resampled mean of a column of values `v` with evaluable mask `m` is
`(k @ (v*m)) / (k @ m)`. Many resamples at once are a matrix product: `K @ V` with `K`
of shape (resamples, cases). The same count matrices serve every algorithm (paired),
and the draws depend only on (seed, sites, resample number): reproducible, and the
first B resamples are the same whatever the total B or the memory block size.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import special

from evaluator.choices import LabelledEnum
from evaluator.stats.aggregates import headline_of, nanmean_last_axis
from evaluator.stats.tables import ScoreCube

DEFAULT_N_BOOTSTRAP = 2_000
MAX_N_BOOTSTRAP = 10_000
DEFAULT_CONFIDENCE_LEVEL = 0.95
#: Resamples drawn from one child random generator; fixed so results do not depend on memory chunking.
RESAMPLES_PER_BLOCK = 250


class IntervalMethod(LabelledEnum):
    """How a bootstrap distribution becomes a confidence interval."""

    PERCENTILE = "percentile", "Percentile bootstrap"
    BCA = "bca", "Bias-corrected and accelerated (BCa) bootstrap"


@dataclass(frozen=True, eq=False)
class StratifiedBootstrap:
    """A seeded plan of `n_resamples` stratified resamples of cases.

    `strata[i]` is the stratum (site) of case i. Resample r draws, for each stratum s
    with n_s cases, n_s case indices uniformly with replacement among the cases of s.
    Block b (resamples `b*RESAMPLES_PER_BLOCK` onwards) uses the generator
    `default_rng(SeedSequence(seed, spawn_key=(b,)))` and draws strata in sorted order.
    """

    strata: np.ndarray
    n_resamples: int = DEFAULT_N_BOOTSTRAP
    seed: int = 0
    _members: tuple[np.ndarray, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not 1 <= self.n_resamples <= MAX_N_BOOTSTRAP:
            raise ValueError(f"n_resamples must be between 1 and {MAX_N_BOOTSTRAP}, got {self.n_resamples}.")
        strata = np.asarray(self.strata)
        if strata.ndim != 1 or strata.size == 0:
            raise ValueError("A bootstrap needs at least one case, with one stratum label per case.")
        object.__setattr__(self, "strata", strata)
        members = tuple(np.flatnonzero(strata == s) for s in np.unique(strata))
        object.__setattr__(self, "_members", members)

    @classmethod
    def for_cube(
        cls, cube: ScoreCube, *, n_resamples: int = DEFAULT_N_BOOTSTRAP, seed: int = 0
    ) -> StratifiedBootstrap:
        """Resample the cube's cases within their sites."""
        return cls(strata=cube.sites, n_resamples=n_resamples, seed=seed)

    @property
    def n_cases(self) -> int:
        return int(self.strata.size)

    @property
    def n_blocks(self) -> int:
        return -(-self.n_resamples // RESAMPLES_PER_BLOCK)

    def block_indices(self, block: int) -> np.ndarray:
        """Drawn case indices of one block, shape (resamples in block, n_cases)."""
        first = block * RESAMPLES_PER_BLOCK
        size = min(RESAMPLES_PER_BLOCK, self.n_resamples - first)
        rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(block,)))
        # always a full block, then cut: resample r is the same whatever the total B
        draws = [
            members[rng.integers(0, members.size, size=(RESAMPLES_PER_BLOCK, members.size))[:size]]
            for members in self._members
        ]
        return np.concatenate(draws, axis=1)

    def case_indices(self, resample: int) -> np.ndarray:
        """The case indices drawn for one resample (for reference loops and tests)."""
        if not 0 <= resample < self.n_resamples:
            raise IndexError(f"resample {resample} out of range 0..{self.n_resamples - 1}")
        return self.block_indices(resample // RESAMPLES_PER_BLOCK)[resample % RESAMPLES_PER_BLOCK]

    def iter_case_indices(self, n_resamples: int | None = None) -> Iterator[np.ndarray]:
        """Case indices of resamples 0, 1, ... (the first `n_resamples`), one block drawn at a time."""
        total = self.n_resamples if n_resamples is None else min(n_resamples, self.n_resamples)
        for block in range(-(-total // RESAMPLES_PER_BLOCK)):
            indices = self.block_indices(block)
            yield from indices[: total - block * RESAMPLES_PER_BLOCK]

    def blocks(self) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (first resample number, counts of shape (resamples in block, n_cases)) as float64."""
        n = self.n_cases
        for block in range(self.n_blocks):
            indices = self.block_indices(block)
            rows = indices.shape[0]
            flat = (np.arange(rows)[:, None] * n + indices).ravel()
            counts = np.bincount(flat, minlength=rows * n).reshape(rows, n)
            yield block * RESAMPLES_PER_BLOCK, counts.astype(np.float64)


def resampled_means(plan: StratifiedBootstrap, columns: np.ndarray) -> np.ndarray:
    """Bootstrap means of each column of `columns` (cases, K); NaN = not evaluable; returns (B, K).

    For resample r with counts k: mean = sum_i k_i v_i m_i / sum_i k_i m_i over evaluable
    cases (NaN if the resample holds none). Distinct evaluable masks are multiplied once.
    """
    return resampled_means_many(plan, [columns])[0]


def resampled_means_many(plan: StratifiedBootstrap, column_sets: Sequence[np.ndarray]) -> list[np.ndarray]:
    """`resampled_means` of several column sets (e.g. one per metric) over the plan's resamples, each
    block of resamples drawn once for all of them; every set is multiplied on its own, so its means
    are the same numbers `resampled_means` gives it alone."""
    prepared = []
    for columns in column_sets:
        columns = np.asarray(columns, dtype=float)
        if columns.shape[0] != plan.n_cases:
            raise ValueError(f"columns have {columns.shape[0]} cases, the plan {plan.n_cases}.")
        mask = ~np.isnan(columns)
        unique_masks, which = np.unique(mask.T, axis=0, return_inverse=True)
        prepared.append((np.where(mask, columns, 0.0), unique_masks.T.astype(np.float64), np.ravel(which)))
    outputs = [np.empty((plan.n_resamples, filled.shape[1])) for filled, _, _ in prepared]
    for first, counts in plan.blocks():
        for (filled, unique_masks, which), out in zip(prepared, outputs, strict=True):
            sums = counts @ filled
            n = (counts @ unique_masks)[:, which]
            with np.errstate(invalid="ignore", divide="ignore"):
                out[first : first + counts.shape[0]] = np.where(n > 0, sums / np.where(n > 0, n, 1.0), np.nan)
    return outputs


@dataclass(frozen=True, eq=False)
class BootstrapMeans:
    """Bootstrap distribution of organ means and headline for every algorithm of one metric.

    `organ_replicates[r, a, o]`: mean of organ o for algorithm a in resample r;
    `headline_replicates[r, a]`: unweighted mean of those organ means (organs without an
    evaluable case in the resample are skipped). `*_estimate`: the same on all cases.
    """

    metric: str
    algorithms: tuple[str, ...]
    organs: tuple[str, ...]
    n_resamples: int
    seed: int
    organ_estimate: np.ndarray
    organ_replicates: np.ndarray
    headline_estimate: np.ndarray
    headline_replicates: np.ndarray


def bootstrap_means(cube: ScoreCube, plan: StratifiedBootstrap) -> BootstrapMeans:
    """Paired stratified bootstrap of every algorithm's organ means and headline."""
    return bootstrap_means_many([cube], plan)[0]


def bootstrap_means_many(cubes: Sequence[ScoreCube], plan: StratifiedBootstrap) -> list[BootstrapMeans]:
    """`bootstrap_means` of several cubes of the same cases (one per metric), drawing the resamples once."""
    shapes = [cube.values.shape for cube in cubes]
    columns = [
        cube.values.transpose(1, 0, 2).reshape(n_cases, n_algorithms * n_organs)
        for cube, (n_algorithms, n_cases, n_organs) in zip(cubes, shapes, strict=True)
    ]
    replicates = resampled_means_many(plan, columns)
    means = []
    for cube, (n_algorithms, _, n_organs), flat in zip(cubes, shapes, replicates, strict=True):
        organ_replicates = flat.reshape(plan.n_resamples, n_algorithms, n_organs)
        organ_estimate = nanmean_last_axis(np.ascontiguousarray(cube.values.transpose(0, 2, 1)))
        means.append(
            BootstrapMeans(
                metric=cube.metric,
                algorithms=cube.algorithms,
                organs=cube.organs,
                n_resamples=plan.n_resamples,
                seed=plan.seed,
                organ_estimate=organ_estimate,
                organ_replicates=organ_replicates,
                headline_estimate=headline_of(organ_estimate),
                headline_replicates=headline_of(organ_replicates),
            )
        )
    return means


def reference_bootstrap_means(
    cube: ScoreCube, plan: StratifiedBootstrap, n_resamples: int | None = None
) -> np.ndarray:
    """The straightforward loop, one resample at a time: organ means of shape (B, algorithm, organ).

    Slow; it exists to check `bootstrap_means` against the textbook definition and to
    time it in the benchmark. Uses the same drawn indices as the fast path.
    """
    total = plan.n_resamples if n_resamples is None else min(n_resamples, plan.n_resamples)
    out = np.empty((total, len(cube.algorithms), len(cube.organs)))
    for r, indices in enumerate(plan.iter_case_indices(total)):
        sample = cube.values[:, indices, :]
        present = ~np.isnan(sample)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[r] = np.nansum(sample, axis=1) / present.sum(axis=1)
    return out


# --- intervals -----------------------------------------------------------------------------------


def quantiles(replicates: np.ndarray, q: np.ndarray | float) -> np.ndarray:
    """Quantile(s) along axis 0 skipping NaN, linear interpolation as `np.nanpercentile`.

    `q` (in [0, 1]) is a scalar or has the shape of `replicates.shape[1:]` (one level
    per column, as BCa needs).
    """
    replicates = np.asarray(replicates, dtype=float)
    if np.ndim(q) == 0 and not np.isnan(q) and not np.isnan(replicates).any():
        return _complete_quantiles(replicates, (float(q),))[0]
    data = np.sort(replicates, axis=0)  # NaN sorts last
    n = (~np.isnan(data)).sum(axis=0)
    q = np.broadcast_to(np.asarray(q, dtype=float), data.shape[1:])
    defined = ~np.isnan(q)
    position = np.where(defined, q, 0.0) * np.maximum(n - 1, 0)
    below = np.floor(position).astype(int)
    above = np.minimum(below + 1, np.maximum(n - 1, 0))
    low_value = np.take_along_axis(data, below[None, ...], axis=0)[0]
    high_value = np.take_along_axis(data, above[None, ...], axis=0)[0]
    result = _interpolate(low_value, high_value, position - below)
    return np.where((n > 0) & defined, result, np.nan)


def _interpolate(low_value: np.ndarray, high_value: np.ndarray, fraction: np.ndarray | float) -> np.ndarray:
    # numpy's linear interpolation, written the way numpy writes it, to agree bit for bit
    diff = high_value - low_value
    return np.where(fraction >= 0.5, high_value - diff * (1 - fraction), low_value + diff * fraction)


def _complete_quantiles(replicates: np.ndarray, levels: Sequence[float]) -> list[np.ndarray]:
    """`quantiles` at scalar levels of NaN-free replicates: every column has the same n, so the few
    order statistics needed are selected with one `np.partition` instead of a full sort (the same
    values, so the same results)."""
    n = replicates.shape[0]
    if n == 0:
        return [np.full(replicates.shape[1:], np.nan) for _ in levels]
    positions = [level * max(n - 1, 0) for level in levels]
    belows = [int(np.floor(position)) for position in positions]
    aboves = [min(below + 1, max(n - 1, 0)) for below in belows]
    selected = np.partition(replicates, sorted(set(belows + aboves)), axis=0)
    return [
        _interpolate(selected[below], selected[above], np.float64(position) - below)
        for position, below, above in zip(positions, belows, aboves, strict=True)
    ]


def percentile_interval(
    replicates: np.ndarray, level: float = DEFAULT_CONFIDENCE_LEVEL
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval along axis 0: the (1-level)/2 and (1+level)/2 quantiles."""
    tail = round((1 - level) / 2, 12)  # 0.025, not 0.025000000000000022
    replicates = np.asarray(replicates, dtype=float)
    if not np.isnan(replicates).any():
        low, high = _complete_quantiles(replicates, (tail, 1 - tail))
        return low, high
    return quantiles(replicates, tail), quantiles(replicates, 1 - tail)


def bca_interval(
    estimate: np.ndarray,
    replicates: np.ndarray,
    jackknife: np.ndarray,
    level: float = DEFAULT_CONFIDENCE_LEVEL,
) -> tuple[np.ndarray, np.ndarray]:
    """Bias-corrected and accelerated interval (Efron 1987), elementwise over trailing axes.

    z0 = Phi^-1(share of replicates below the estimate, ties counted half, as scipy); acceleration
    a = sum(d^3) / (6 (sum d^2)^1.5) with d = mean(jackknife) - jackknife (leave-one-out
    values along axis 0); bounds are the quantiles at
    Phi(z0 + (z0 + z) / (1 - a (z0 + z))) for z = Phi^-1((1 -/+ level) / 2).
    """
    estimate = np.asarray(estimate, dtype=float)
    valid = ~np.isnan(replicates)
    with np.errstate(invalid="ignore", divide="ignore"):
        below = ((replicates < estimate).sum(axis=0) + (replicates <= estimate).sum(axis=0)) / (
            2 * valid.sum(axis=0)
        )
        z0 = special.ndtri(below)
        jackknife_mean = np.nansum(jackknife, axis=0) / (~np.isnan(jackknife)).sum(axis=0)
        centred = jackknife_mean - jackknife
        acceleration = np.nansum(centred**3, axis=0) / (6 * np.nansum(centred**2, axis=0) ** 1.5)
        acceleration = np.where(np.isfinite(acceleration), acceleration, 0.0)
        bounds = []
        for tail in ((1 - level) / 2, (1 + level) / 2):
            z = special.ndtri(tail)
            q = special.ndtr(z0 + (z0 + z) / (1 - acceleration * (z0 + z)))
            bounds.append(quantiles(replicates, q))
    return bounds[0], bounds[1]


def jackknife_organ_means(values: np.ndarray) -> np.ndarray:
    """Leave-one-case-out organ means: values (algorithm, case, organ) -> (case, algorithm, organ)."""
    mask = ~np.isnan(values)
    filled = np.where(mask, values, 0.0)
    total = filled.sum(axis=1)  # (algorithm, organ)
    count = mask.sum(axis=1)
    left_total = total[None] - filled.transpose(1, 0, 2)
    left_count = count[None] - mask.transpose(1, 0, 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(left_count > 0, left_total / np.where(left_count > 0, left_count, 1), np.nan)


@dataclass(frozen=True, eq=False)
class MeanIntervals:
    """Confidence intervals of organ means (algorithm, organ) and of the headline (algorithm,)."""

    method: IntervalMethod
    level: float
    organ_low: np.ndarray
    organ_high: np.ndarray
    headline_low: np.ndarray
    headline_high: np.ndarray


def mean_intervals(
    means: BootstrapMeans,
    cube: ScoreCube,
    *,
    method: IntervalMethod = IntervalMethod.PERCENTILE,
    level: float = DEFAULT_CONFIDENCE_LEVEL,
) -> MeanIntervals:
    """Percentile (default) or BCa intervals for every organ mean and headline of `means`."""
    method = IntervalMethod(method)
    if method is IntervalMethod.PERCENTILE:
        organ = percentile_interval(means.organ_replicates, level)
        headline = percentile_interval(means.headline_replicates, level)
    else:
        jackknife = jackknife_organ_means(cube.values)
        organ = bca_interval(means.organ_estimate, means.organ_replicates, jackknife, level)
        headline = bca_interval(
            means.headline_estimate, means.headline_replicates, headline_of(jackknife), level
        )
    return MeanIntervals(method, level, organ[0], organ[1], headline[0], headline[1])


# --- paired differences --------------------------------------------------------------------------


@dataclass(frozen=True)
class PairedDifference:
    """Difference of means `algorithm_a - algorithm_b` over the cases both can be scored on.

    For an organ: mean over cases where the organ is evaluable for both. For the
    headline (`organ` None): unweighted mean over organs of those organ differences.
    `fraction_positive`: share of resamples where a's mean is higher (NaN-free ones).
    """

    metric: str
    algorithm_a: str
    algorithm_b: str
    organ: str | None
    difference: float
    ci_low: float
    ci_high: float
    level: float
    method: IntervalMethod
    n_cases: int
    fraction_positive: float


def paired_difference(
    cube: ScoreCube,
    plan: StratifiedBootstrap,
    algorithm_a: str,
    algorithm_b: str,
    *,
    organ: str | None = None,
    level: float = DEFAULT_CONFIDENCE_LEVEL,
    method: IntervalMethod = IntervalMethod.PERCENTILE,
) -> PairedDifference:
    """Paired bootstrap CI of the difference between two algorithms (same resamples for both)."""
    a, b = cube.algorithm_index(algorithm_a), cube.algorithm_index(algorithm_b)
    organs = [cube.organ_index(organ)] if organ is not None else list(range(len(cube.organs)))
    va, vb = cube.values[a][:, organs], cube.values[b][:, organs]
    shared = ~np.isnan(va) & ~np.isnan(vb)
    difference = np.where(shared, va - vb, np.nan)  # (case, organ)
    replicates = headline_of(resampled_means(plan, difference))
    estimate_by_organ = nanmean_last_axis(np.ascontiguousarray(difference.T))
    estimate = float(headline_of(estimate_by_organ))
    method = IntervalMethod(method)
    if method is IntervalMethod.PERCENTILE:
        low, high = percentile_interval(replicates, level)
    else:
        jackknife = headline_of(jackknife_organ_means(difference[None])[:, 0, :])
        low, high = bca_interval(np.asarray(estimate), replicates, jackknife, level)
    valid = replicates[~np.isnan(replicates)]
    return PairedDifference(
        metric=cube.metric,
        algorithm_a=algorithm_a,
        algorithm_b=algorithm_b,
        organ=organ,
        difference=estimate,
        ci_low=float(low),
        ci_high=float(high),
        level=level,
        method=method,
        n_cases=int(shared.any(axis=1).sum()),
        fraction_positive=float((valid > 0).mean()) if valid.size else float("nan"),
    )


@dataclass(frozen=True, eq=False)
class PairwiseDifferences:
    """Headline differences `row - column` for every pair of algorithms, with CIs."""

    algorithms: tuple[str, ...]
    difference: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    level: float


def pairwise_headline_differences(
    cube: ScoreCube,
    plan: StratifiedBootstrap,
    means: BootstrapMeans,
    *,
    level: float = DEFAULT_CONFIDENCE_LEVEL,
) -> PairwiseDifferences:
    """Paired percentile CIs of headline differences for all pairs.

    When every algorithm is evaluable on exactly the same (case, organ) cells (the
    platform's case: failures are scored, not dropped), the difference of the stored
    replicates *is* the paired difference. Otherwise each pair is resampled on its
    shared cases, all pairs in one pass.
    """
    n_algorithms = len(cube.algorithms)
    evaluable = cube.evaluable
    same_cells = bool((evaluable == evaluable[:1]).all())
    if same_cells:
        replicates = means.headline_replicates[:, :, None] - means.headline_replicates[:, None, :]
        organ_difference = means.organ_estimate[:, None, :] - means.organ_estimate[None, :, :]
        estimate = headline_of(organ_difference)
    else:
        pairs = [(i, j) for i in range(n_algorithms) for j in range(i + 1, n_algorithms)]
        n_cases, n_organs = cube.values.shape[1:]
        columns = np.empty((n_cases, len(pairs), n_organs))
        for p, (i, j) in enumerate(pairs):
            columns[:, p, :] = cube.values[i] - cube.values[j]  # NaN unless both evaluable
        upper = headline_of(
            resampled_means(plan, columns.reshape(n_cases, -1)).reshape(
                plan.n_resamples, len(pairs), n_organs
            )
        )
        upper_estimate = headline_of(nanmean_last_axis(np.ascontiguousarray(columns.transpose(1, 2, 0))))
        replicates = np.zeros((plan.n_resamples, n_algorithms, n_algorithms))
        estimate = np.zeros((n_algorithms, n_algorithms))
        for p, (i, j) in enumerate(pairs):
            replicates[:, i, j], replicates[:, j, i] = upper[:, p], -upper[:, p]
            estimate[i, j], estimate[j, i] = upper_estimate[p], -upper_estimate[p]
    low, high = percentile_interval(replicates, level)
    diagonal = np.eye(n_algorithms, dtype=bool)
    for array in (low, high):
        array[diagonal] = 0.0
    return PairwiseDifferences(cube.algorithms, estimate, low, high, level)
