"""Everything the leaderboard pages show, computed once per snapshot and returned as plain JSON data.

`compute_snapshot(scores, ...)` is the one entry point the platform calls (from the
Celery task that runs when a submission completes); pages only read its result.
The returned dict is JSON-serialisable: numbers are Python floats/ints, NaN and
infinities become None, arrays become (nested) lists.

Structure (per metric under `snapshot["metrics"][metric]`; algorithms in `snapshot["algorithms"]` order
unless a field says otherwise; "alg" and "organ" keys are names):

```
schema_version: 1
parameters: {n_bootstrap, seed, alpha, confidence_level, ci_method, p_value_method, rank_method,
             significance_correction: "holm", breakdown_correction, min_cases_per_group,
             stratified_by: "site", metrics: [computed metrics], metrics_absent: [...], organs: [...]}
algorithms: [name, ...]                              (sorted)
sites: [{site, n_cases, out_of_distribution: bool | None}, ...]
n_cases: int                                         (cases in the table)
metrics.<metric>:
  organs: [organ, ...]
  leaderboard: [{algorithm, rank, rank_score, mean, ci_low, ci_high, n_missing_cases}, ...]  best first;
               mean = headline (unweighted mean of organ means) with its bootstrap CI; rank from
               `rank_method`, rank_score = what it ranked on (headline mean; mean per-case rank, lower
               is better; or mean number of significant wins per organ)
  organ_stats: {alg: {organ: {mean, ci_low, ci_high, n_cases, median, p2_5, p97_5,
                              q1, q3, whisker_low, whisker_high}}}
               n_cases = evaluable cases; p2_5/p97_5 = reference range of cases (not a CI)
  per_site: {sites: [...], out_of_distribution: [bool|None per site], n_cases: [per site],
             headline: {alg: [per site]}, organ_means: {alg: {organ: [per site]}}}
  significance: {organ: {order: [alg best median first], medians: [...],
                         better: [[bool|None]]  (better[i][j]: order[i] significantly better than order[j]),
                         p_value: [[...]], p_adjusted: [[...]], n_cases: [[...]]}}   (diagonal None)
  paired_differences: {algorithms: [leaderboard order], difference: [[row - column headline]],
                       ci_low: [[...]], ci_high: [[...]]}
  rank_stability: {method, n_resamples, algorithms: [leaderboard order], full_rank: [...],
                   rank_counts: [[count of rank 1, rank 2, ...] per algorithm], median_rank: [...],
                   rank_ci_low: [...], rank_ci_high: [...],
                   kendall_tau: {mean, median, ci_low, ci_high},
                   per_organ: {organ: {algorithms: [...], full_rank: [...], rank_counts: [[...]],
                                       kendall_tau_mean}}}  (per organ: mean-then-rank)
  breakdowns: {factor: {groups: [...], n_cases: [...], headline: {alg: [per group]},
                        tests: {alg: {kruskal_h, kruskal_p, significant, excluded_groups,
                                      groups: [{group, n_cases, mean, median}],
                                      pairwise: [{group_a, group_b, u_statistic, p_value, p_adjusted,
                                                  significant}]}}}}
              factors: "site" (2+ sites), "distribution" (with site_is_ood), then each column of
              case_metadata ("age" becomes "age_band"); tests use per-case scores (mean of the
              case's evaluable organs), headline = mean of organ means within the group.
```
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
    bootstrap_means,
    mean_intervals,
    pairwise_headline_differences,
    quantiles,
)
from evaluator.stats.breakdowns import (
    DEFAULT_MIN_CASES_PER_GROUP,
    Correction,
    age_bands,
    breakdown,
    distribution_labels,
)
from evaluator.stats.ranking import RankMethod, RankStability, organ_rank_stability, rank_stability
from evaluator.stats.significance import DEFAULT_ALPHA, PValueMethod, SignificanceMap, significance_map
from evaluator.stats.tables import ScoreCube, ScoreTableError, score_cube, validate_scores

SCHEMA_VERSION = 1


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
) -> dict[str, Any]:
    """Aggregates, bootstrap CIs, significance maps, rank stability and breakdowns of a score table.

    `scores`: long table (case, site, algorithm, organ, metric, value), NaN = not evaluable;
    duplicates are an error naming the cases. `site_is_ood`: site -> out of distribution?
    `case_metadata`: a `case` column plus factor columns (scanner, sex, age, ...).
    Metrics absent from the table are skipped and listed in `parameters.metrics_absent`.
    The structure of the result is documented in this module's docstring.
    """
    table = validate_scores(scores)
    p_method, r_method, i_method = (
        PValueMethod(p_value_method),
        RankMethod(rank_method),
        IntervalMethod(ci_method),
    )
    correction = Correction(breakdown_correction)
    present = [m for m in metrics if (table["metric"] == m).any()]
    if not present:
        raise ScoreTableError(
            f"None of the metrics {list(metrics)} has scores; the table has "
            f"{sorted(table['metric'].unique())}."
        )
    algorithms = tuple(sorted(table["algorithm"].unique()))
    cubes = {m: score_cube(table, m, organs=organs, algorithms=algorithms, validated=True) for m in present}
    first = next(iter(cubes.values()))
    plan = StratifiedBootstrap.for_cube(first, n_resamples=n_bootstrap, seed=seed)
    factors = _factor_labels(first, site_is_ood, case_metadata)
    sites = first.site_names
    site_counts = {s: int((first.sites == s).sum()) for s in sites}
    snapshot: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "parameters": {
            "n_bootstrap": n_bootstrap,
            "seed": seed,
            "alpha": alpha,
            "confidence_level": confidence_level,
            "ci_method": i_method.value,
            "p_value_method": p_method.value,
            "rank_method": r_method.value,
            "significance_correction": "holm",
            "breakdown_correction": correction.value,
            "min_cases_per_group": min_cases_per_group,
            "stratified_by": "site",
            "metrics": present,
            "metrics_absent": [m for m in metrics if m not in present],
            "organs": list(first.organs),
        },
        "algorithms": list(algorithms),
        "sites": [
            {
                "site": s,
                "n_cases": site_counts[s],
                "out_of_distribution": None if site_is_ood is None else site_is_ood.get(s),
            }
            for s in sites
        ],
        "n_cases": len(first.cases),
        "metrics": {},
    }
    for metric, cube in cubes.items():
        snapshot["metrics"][metric] = _metric_section(
            cube,
            plan,
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
    return _json_clean(snapshot)


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
) -> dict[str, Any]:
    summary = summarize(cube)
    means = bootstrap_means(cube, plan)
    intervals = mean_intervals(means, cube, method=i_method, level=level)
    stability = rank_stability(cube, plan, method=r_method, means=means, alpha=alpha, p_value_method=p_method)
    order = [int(i) for i in np.lexsort((np.arange(len(cube.algorithms)), stability.full.rank))]
    differences = pairwise_headline_differences(cube, plan, means, level=level)
    return {
        "organs": list(cube.organs),
        "leaderboard": [
            {
                "algorithm": cube.algorithms[a],
                "rank": int(stability.full.rank[a]),
                "rank_score": stability.full.score[a],
                "mean": summary.headline[a],
                "ci_low": intervals.headline_low[a],
                "ci_high": intervals.headline_high[a],
                "n_missing_cases": int(summary.n_missing[a]),
            }
            for a in order
        ],
        "organ_stats": _organ_stats(cube, summary, intervals),
        "per_site": _per_site(cube, site_is_ood),
        "significance": {
            organ: _significance_panel(significance_map(cube, organ, alpha=alpha, p_value_method=p_method))
            for organ in cube.organs
        },
        "paired_differences": {
            "algorithms": [cube.algorithms[i] for i in order],
            "difference": differences.difference[np.ix_(order, order)],
            "ci_low": differences.ci_low[np.ix_(order, order)],
            "ci_high": differences.ci_high[np.ix_(order, order)],
        },
        "rank_stability": _rank_section(stability, means, order, level),
        "breakdowns": _breakdown_section(cube, factors, alpha, correction, min_cases_per_group),
    }


def _organ_stats(cube: ScoreCube, summary: OrganSummary, intervals: MeanIntervals) -> dict[str, Any]:
    boxes = box_statistics(cube.values.transpose(0, 2, 1))
    return {
        algorithm: {
            organ: {
                "mean": summary.mean[a, o],
                "ci_low": intervals.organ_low[a, o],
                "ci_high": intervals.organ_high[a, o],
                "n_cases": int(summary.n_cases[a, o]),
                "median": summary.median[a, o],
                "p2_5": summary.low[a, o],
                "p97_5": summary.high[a, o],
                "q1": boxes.q1[a, o],
                "q3": boxes.q3[a, o],
                "whisker_low": boxes.whisker_low[a, o],
                "whisker_high": boxes.whisker_high[a, o],
            }
            for o, organ in enumerate(cube.organs)
        }
        for a, algorithm in enumerate(cube.algorithms)
    }


def _per_site(cube: ScoreCube, site_is_ood: Mapping[str, bool] | None) -> dict[str, Any]:
    by_site = group_means(cube, cube.sites.astype(object), factor="site")
    return {
        "sites": list(by_site.groups),
        "out_of_distribution": [None if site_is_ood is None else site_is_ood.get(s) for s in by_site.groups],
        "n_cases": by_site.n_group_cases,
        "headline": {alg: by_site.headline[a] for a, alg in enumerate(cube.algorithms)},
        "organ_means": {
            alg: {organ: by_site.mean[a, :, o] for o, organ in enumerate(cube.organs)}
            for a, alg in enumerate(cube.algorithms)
        },
    }


def _significance_panel(panel: SignificanceMap) -> dict[str, Any]:
    off_diagonal = ~np.eye(len(panel.order), dtype=bool)
    return {
        "order": list(panel.order),
        "medians": panel.medians,
        "better": [
            [bool(v) if off_diagonal[i, j] else None for j, v in enumerate(row)]
            for i, row in enumerate(panel.better)
        ],
        "p_value": panel.p_value,
        "p_adjusted": panel.p_adjusted,
        "n_cases": panel.n_cases,
    }


def _rank_section(
    stability: RankStability, means: BootstrapMeans, order: list[int], level: float
) -> dict[str, Any]:
    low, high = stability.rank_interval(level)
    tau = stability.kendall_tau[~np.isnan(stability.kendall_tau)]
    tau_low, tau_high = (
        (quantiles(tau, q) for q in ((1 - level) / 2, (1 + level) / 2)) if tau.size else (None, None)
    )
    per_organ = {}
    for organ, organ_stability in organ_rank_stability(means).items():
        per_organ[organ] = {
            "algorithms": [organ_stability.algorithms[i] for i in order],
            "full_rank": organ_stability.full.rank[order],
            "rank_counts": organ_stability.rank_counts[order],
            "kendall_tau_mean": float(np.nanmean(organ_stability.kendall_tau))
            if (~np.isnan(organ_stability.kendall_tau)).any()
            else None,
        }
    return {
        "method": stability.method.value,
        "n_resamples": stability.n_resamples,
        "algorithms": [stability.algorithms[i] for i in order],
        "full_rank": stability.full.rank[order],
        "rank_counts": stability.rank_counts[order],
        "median_rank": stability.median_rank[order],
        "rank_ci_low": low[order],
        "rank_ci_high": high[order],
        "kendall_tau": {
            "mean": float(tau.mean()) if tau.size else None,
            "median": float(np.median(tau)) if tau.size else None,
            "ci_low": tau_low,
            "ci_high": tau_high,
        },
        "per_organ": per_organ,
    }


def _breakdown_section(
    cube: ScoreCube,
    factors: Mapping[str, np.ndarray],
    alpha: float,
    correction: Correction,
    min_cases_per_group: int,
) -> dict[str, Any]:
    section: dict[str, Any] = {}
    for factor, labels in factors.items():
        grouped = group_means(cube, labels, factor=factor)
        tests = {}
        for comparison in breakdown(
            cube,
            labels,
            factor=factor,
            alpha=alpha,
            correction=correction,
            min_cases_per_group=min_cases_per_group,
        ):
            tests[comparison.algorithm] = {
                "kruskal_h": comparison.kruskal_h,
                "kruskal_p": comparison.kruskal_p,
                "significant": comparison.significant,
                "excluded_groups": list(comparison.excluded_groups),
                "groups": [vars(g) for g in comparison.groups],
                "pairwise": [vars(p) for p in comparison.pairwise],
            }
        section[factor] = {
            "groups": list(grouped.groups),
            "n_cases": grouped.n_group_cases,
            "headline": {alg: grouped.headline[a] for a, alg in enumerate(cube.algorithms)},
            "tests": tests,
        }
    return section


def _json_clean(value: Any) -> Any:
    """Plain JSON data: NaN/inf -> None, numpy -> Python, tuples/arrays -> lists."""
    if isinstance(value, dict):
        return {str(k): _json_clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_clean(value.tolist())
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, str):
        return str(value)  # also turns StrEnum members into their plain value
    if value is None:
        return None
    raise TypeError(f"Cannot put {type(value).__name__} into a snapshot.")
