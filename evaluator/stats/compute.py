"""Computing the leaderboard snapshot: aggregates, bootstrap CIs, significance maps, rank stability, breakdowns.

`compute_snapshot(scores, ...)` is the one entry point the platform calls (from the Celery task that runs when a
submission completes); the result is the typed `evaluator.stats.snapshot.Snapshot` every reader uses.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from evaluator.stats.aggregates import OrganSummary, box_statistics, group_means, summarize
from evaluator.stats.bootstrap import (
    DEFAULT_CONFIDENCE_LEVEL,
    DEFAULT_N_BOOTSTRAP,
    BootstrapMeans,
    IntervalMethod,
    MeanIntervals,
    StratifiedBootstrap,
    bootstrap_means_many,
    mean_intervals,
    pairwise_headline_differences,
    quantiles,
)
from evaluator.stats.breakdowns import (
    DEFAULT_MIN_CASES_PER_GROUP,
    Correction,
    GroupComparison,
    age_bands,
    breakdown,
    distribution_labels,
)
from evaluator.stats.ranking import RankMethod, RankStability, organ_rank_stability, rank_stability
from evaluator.stats.significance import DEFAULT_ALPHA, PValueMethod, SignificanceMap, significance_map
from evaluator.stats.snapshot import (
    Breakdown,
    BreakdownGroup,
    BreakdownPair,
    BreakdownTest,
    KendallTau,
    LeaderboardEntry,
    Matrix,
    MetricSection,
    Numbers,
    OrganRankStability,
    OrganStats,
    PairedDifferences,
    Parameters,
    PerSite,
    RankStabilitySummary,
    SignificancePanel,
    Site,
    Snapshot,
)
from evaluator.stats.tables import ScoreCube, ScoreTableError, score_cube, validate_scores


def _number(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


def _numbers(values: Any) -> Numbers:
    return tuple(_number(v) for v in np.asarray(values, dtype=float))


def _matrix(values: Any) -> Matrix:
    return tuple(_numbers(row) for row in np.asarray(values, dtype=float))


def _ints(values: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in np.asarray(values))


def compute_snapshot(
    scores: pd.DataFrame,
    *,
    site_is_ood: Mapping[str, bool] | None = None,
    case_metadata: pd.DataFrame | None = None,
    metrics: Sequence[str] = ("dsc", "nsd"),
    organs: Sequence[str] | None = None,
    n_bootstrap: int = DEFAULT_N_BOOTSTRAP,
    seed: int = 0,
    alpha: float = DEFAULT_ALPHA,
    p_value_method: str = PValueMethod.EXACT,
    rank_method: str = RankMethod.MEAN_THEN_RANK,
    ci_method: str = IntervalMethod.PERCENTILE,
    confidence_level: float = DEFAULT_CONFIDENCE_LEVEL,
    breakdown_correction: str = Correction.BONFERRONI,
    min_cases_per_group: int = DEFAULT_MIN_CASES_PER_GROUP,
) -> Snapshot:
    """Aggregates, bootstrap CIs, significance maps, rank stability and breakdowns of a score table.

    `scores`: long table (case, site, algorithm, organ, metric, value), NaN = not evaluable;
    duplicates are an error naming the cases. `site_is_ood`: site -> out of distribution?
    `case_metadata`: a `case` column plus factor columns (scanner, sex, age, ...); breakdowns are by
    "site" (2+ sites), "distribution" (with `site_is_ood`), then each column ("age" becomes "age_band").
    Metrics absent from the table are skipped and listed in `parameters.metrics_absent`.
    """
    table = validate_scores(scores)
    present = [m for m in metrics if (table["metric"] == m).any()]
    if not present:
        raise ScoreTableError(
            f"None of the metrics {list(metrics)} has scores; the table has "
            f"{sorted(table['metric'].unique())}."
        )
    algorithms = tuple(sorted(table["algorithm"].unique()))
    cubes = {m: score_cube(table, m, organs=organs, algorithms=algorithms, validated=True) for m in present}
    del table
    return compute_snapshot_from_cubes(
        cubes,
        site_is_ood=site_is_ood,
        case_metadata=case_metadata,
        metrics=metrics,
        n_bootstrap=n_bootstrap,
        seed=seed,
        alpha=alpha,
        p_value_method=p_value_method,
        rank_method=rank_method,
        ci_method=ci_method,
        confidence_level=confidence_level,
        breakdown_correction=breakdown_correction,
        min_cases_per_group=min_cases_per_group,
    )


def compute_snapshot_from_cubes(
    cubes: Mapping[str, ScoreCube],
    *,
    site_is_ood: Mapping[str, bool] | None = None,
    case_metadata: pd.DataFrame | None = None,
    metrics: Sequence[str] = ("dsc", "nsd"),
    n_bootstrap: int = DEFAULT_N_BOOTSTRAP,
    seed: int = 0,
    alpha: float = DEFAULT_ALPHA,
    p_value_method: str = PValueMethod.EXACT,
    rank_method: str = RankMethod.MEAN_THEN_RANK,
    ci_method: str = IntervalMethod.PERCENTILE,
    confidence_level: float = DEFAULT_CONFIDENCE_LEVEL,
    breakdown_correction: str = Correction.BONFERRONI,
    min_cases_per_group: int = DEFAULT_MIN_CASES_PER_GROUP,
) -> Snapshot:
    """`compute_snapshot` of scores already laid out as validated cubes, one per metric with scores.

    The cubes come from `score_cube` (a long table) or `score_cubes` (coded scores, as the platform
    reads them) and share their cases, sites, algorithms and organs. Metrics of `metrics` without a
    cube are listed in `parameters.metrics_absent`.
    """
    p_method, r_method, i_method = (
        PValueMethod(p_value_method),
        RankMethod(rank_method),
        IntervalMethod(ci_method),
    )
    correction = Correction(breakdown_correction)
    present = [m for m in metrics if m in cubes]
    if not present:
        raise ScoreTableError(f"None of the metrics {list(metrics)} has scores; there are {sorted(cubes)}.")
    cubes = {m: cubes[m] for m in present}
    first = cubes[present[0]]
    for cube in cubes.values():
        if (cube.cases, cube.algorithms, cube.organs) != (
            first.cases,
            first.algorithms,
            first.organs,
        ) or not (np.array_equal(cube.sites, first.sites)):
            raise ValueError(
                "The cubes of one snapshot must share their cases, sites, algorithms and organs."
            )
    algorithms = first.algorithms
    plan = StratifiedBootstrap.for_cube(first, n_resamples=n_bootstrap, seed=seed)
    factors = _factor_labels(first, site_is_ood, case_metadata)
    means = dict(zip(cubes, bootstrap_means_many(list(cubes.values()), plan), strict=True))
    return Snapshot(
        parameters=Parameters(
            n_bootstrap=n_bootstrap,
            seed=seed,
            alpha=float(alpha),
            confidence_level=float(confidence_level),
            ci_method=i_method.value,
            p_value_method=p_method.value,
            rank_method=r_method.value,
            significance_correction="holm",
            breakdown_correction=correction.value,
            min_cases_per_group=min_cases_per_group,
            stratified_by="site",
            metrics=tuple(present),
            metrics_absent=tuple(m for m in metrics if m not in present),
            organs=first.organs,
        ),
        algorithms=algorithms,
        sites=tuple(
            Site(
                site=s,
                n_cases=int((first.sites == s).sum()),
                out_of_distribution=None if site_is_ood is None else site_is_ood.get(s),
            )
            for s in first.site_names
        ),
        n_cases=len(first.cases),
        metrics={
            metric: _metric_section(
                cube,
                plan,
                means[metric],
                factors,
                site_is_ood,
                alpha=alpha,
                p_method=p_method,
                r_method=r_method,
                i_method=i_method,
                level=confidence_level,
                correction=correction,
                min_cases_per_group=min_cases_per_group,
            )
            for metric, cube in cubes.items()
        },
    )


def _factor_labels(
    cube: ScoreCube, site_is_ood: Mapping[str, bool] | None, case_metadata: pd.DataFrame | None
) -> dict[str, np.ndarray]:
    factors: dict[str, np.ndarray] = {}
    if len(cube.site_names) >= 2:
        factors["site"] = cube.sites.astype(object)
    if site_is_ood is not None:
        labels = distribution_labels(cube.sites, site_is_ood)
        if len({x for x in labels if x is not None}) >= 2:
            factors["distribution"] = labels
    if case_metadata is not None:
        if "case" not in case_metadata.columns:
            raise ScoreTableError("case_metadata needs a 'case' column naming the case of each row.")
        if case_metadata["case"].duplicated().any():
            dupes = (
                case_metadata.loc[case_metadata["case"].duplicated(), "case"].astype(str).unique().tolist()
            )
            raise ScoreTableError(f"case_metadata lists case(s) {dupes[:10]} more than once.")
        meta = case_metadata.assign(case=case_metadata["case"].astype(str)).set_index("case")
        meta = meta.reindex(list(cube.cases))
        for column in meta.columns:
            if column == "age":
                factors["age_band"] = age_bands(pd.to_numeric(meta[column], errors="coerce").to_numpy())
            else:
                factors[str(column)] = np.array(
                    [None if pd.isna(x) else str(x) for x in meta[column]], dtype=object
                )
    return factors


def _metric_section(
    cube: ScoreCube,
    plan: StratifiedBootstrap,
    means: BootstrapMeans,
    factors: Mapping[str, np.ndarray],
    site_is_ood: Mapping[str, bool] | None,
    *,
    alpha: float,
    p_method: PValueMethod,
    r_method: RankMethod,
    i_method: IntervalMethod,
    level: float,
    correction: Correction,
    min_cases_per_group: int,
) -> MetricSection:
    summary = summarize(cube)
    intervals = mean_intervals(means, cube, method=i_method, level=level)
    stability = rank_stability(cube, plan, method=r_method, means=means, alpha=alpha, p_value_method=p_method)
    order = [int(i) for i in np.lexsort((np.arange(len(cube.algorithms)), stability.full.rank))]
    differences = pairwise_headline_differences(cube, plan, means, level=level)
    return MetricSection(
        organs=cube.organs,
        leaderboard=tuple(
            LeaderboardEntry(
                algorithm=cube.algorithms[a],
                rank=int(stability.full.rank[a]),
                rank_score=_number(stability.full.score[a]),
                mean=_number(summary.headline[a]),
                ci_low=_number(intervals.headline_low[a]),
                ci_high=_number(intervals.headline_high[a]),
                n_missing_cases=int(summary.n_missing[a]),
            )
            for a in order
        ),
        organ_stats=_organ_stats(cube, summary, intervals),
        per_site=_per_site(cube, site_is_ood),
        significance={
            organ: _significance_panel(significance_map(cube, organ, alpha=alpha, p_value_method=p_method))
            for organ in cube.organs
        },
        paired_differences=PairedDifferences(
            algorithms=tuple(cube.algorithms[i] for i in order),
            difference=_matrix(differences.difference[np.ix_(order, order)]),
            ci_low=_matrix(differences.ci_low[np.ix_(order, order)]),
            ci_high=_matrix(differences.ci_high[np.ix_(order, order)]),
        ),
        rank_stability=_rank_section(stability, means, order, level),
        breakdowns=_breakdown_section(cube, factors, alpha, correction, min_cases_per_group),
    )


def _organ_stats(
    cube: ScoreCube, summary: OrganSummary, intervals: MeanIntervals
) -> dict[str, dict[str, OrganStats]]:
    boxes = box_statistics(cube.values.transpose(0, 2, 1))
    return {
        algorithm: {
            organ: OrganStats(
                mean=_number(summary.mean[a, o]),
                ci_low=_number(intervals.organ_low[a, o]),
                ci_high=_number(intervals.organ_high[a, o]),
                n_cases=int(summary.n_cases[a, o]),
                median=_number(summary.median[a, o]),
                p2_5=_number(summary.low[a, o]),
                p97_5=_number(summary.high[a, o]),
                q1=_number(boxes.q1[a, o]),
                q3=_number(boxes.q3[a, o]),
                whisker_low=_number(boxes.whisker_low[a, o]),
                whisker_high=_number(boxes.whisker_high[a, o]),
            )
            for o, organ in enumerate(cube.organs)
        }
        for a, algorithm in enumerate(cube.algorithms)
    }


def _per_site(cube: ScoreCube, site_is_ood: Mapping[str, bool] | None) -> PerSite:
    by_site = group_means(cube, cube.sites.astype(object), factor="site")
    return PerSite(
        sites=by_site.groups,
        out_of_distribution=tuple(
            None if site_is_ood is None else site_is_ood.get(s) for s in by_site.groups
        ),
        n_cases=_ints(by_site.n_group_cases),
        headline={alg: _numbers(by_site.headline[a]) for a, alg in enumerate(cube.algorithms)},
        organ_means={
            alg: {organ: _numbers(by_site.mean[a, :, o]) for o, organ in enumerate(cube.organs)}
            for a, alg in enumerate(cube.algorithms)
        },
    )


def _significance_panel(panel: SignificanceMap) -> SignificancePanel:
    return SignificancePanel(
        order=tuple(panel.order),
        medians=_numbers(panel.medians),
        better=tuple(
            tuple(bool(v) if i != j else None for j, v in enumerate(row))
            for i, row in enumerate(panel.better)
        ),
        p_value=_matrix(panel.p_value),
        p_adjusted=_matrix(panel.p_adjusted),
        n_cases=tuple(_ints(row) for row in panel.n_cases),
    )


def _rank_section(
    stability: RankStability, means: BootstrapMeans, order: list[int], level: float
) -> RankStabilitySummary:
    low, high = stability.rank_interval(level)
    tau = stability.kendall_tau[~np.isnan(stability.kendall_tau)]
    tau_low, tau_high = (
        (_number(quantiles(tau, q)) for q in ((1 - level) / 2, (1 + level) / 2)) if tau.size else (None, None)
    )
    per_organ = {
        organ: OrganRankStability(
            algorithms=tuple(organ_stability.algorithms[i] for i in order),
            full_rank=_ints(organ_stability.full.rank[order]),
            rank_counts=tuple(_ints(row) for row in organ_stability.rank_counts[order]),
            kendall_tau_mean=_number(np.nanmean(organ_stability.kendall_tau))
            if (~np.isnan(organ_stability.kendall_tau)).any()
            else None,
        )
        for organ, organ_stability in organ_rank_stability(means).items()
    }
    return RankStabilitySummary(
        method=stability.method.value,
        n_resamples=stability.n_resamples,
        algorithms=tuple(stability.algorithms[i] for i in order),
        full_rank=_ints(stability.full.rank[order]),
        rank_counts=tuple(_ints(row) for row in stability.rank_counts[order]),
        median_rank=_numbers(stability.median_rank[order]),
        rank_ci_low=_numbers(low[order]),
        rank_ci_high=_numbers(high[order]),
        kendall_tau=KendallTau(
            mean=_number(tau.mean()) if tau.size else None,
            median=_number(np.median(tau)) if tau.size else None,
            ci_low=tau_low,
            ci_high=tau_high,
        ),
        per_organ=per_organ,
    )


def _breakdown_section(
    cube: ScoreCube,
    factors: Mapping[str, np.ndarray],
    alpha: float,
    correction: Correction,
    min_cases_per_group: int,
) -> dict[str, Breakdown]:
    section = {}
    for factor, labels in factors.items():
        grouped = group_means(cube, labels, factor=factor)
        comparisons = breakdown(
            cube,
            labels,
            factor=factor,
            alpha=alpha,
            correction=correction,
            min_cases_per_group=min_cases_per_group,
        )
        section[factor] = Breakdown(
            groups=grouped.groups,
            n_cases=_ints(grouped.n_group_cases),
            headline={alg: _numbers(grouped.headline[a]) for a, alg in enumerate(cube.algorithms)},
            tests={comparison.algorithm: _breakdown_test(comparison) for comparison in comparisons},
        )
    return section


def _breakdown_test(comparison: GroupComparison) -> BreakdownTest:
    return BreakdownTest(
        kruskal_h=_number(comparison.kruskal_h),
        kruskal_p=_number(comparison.kruskal_p),
        significant=bool(comparison.significant),
        excluded_groups=tuple(comparison.excluded_groups),
        groups=tuple(
            BreakdownGroup(
                group=g.group, n_cases=int(g.n_cases), mean=_number(g.mean), median=_number(g.median)
            )
            for g in comparison.groups
        ),
        pairwise=tuple(
            BreakdownPair(
                group_a=p.group_a,
                group_b=p.group_b,
                u_statistic=_number(p.u_statistic),
                p_value=_number(p.p_value),
                p_adjusted=_number(p.p_adjusted),
                significant=bool(p.significant),
            )
            for p in comparison.pairwise
        ),
    )
