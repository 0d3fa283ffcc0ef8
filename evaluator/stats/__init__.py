"""Honest statistics for leaderboards: aggregates, bootstrap CIs, significance maps, rank stability, breakdowns.

Pure numpy/scipy/pandas; never imports Django. Start from a long table of per-case scores
(`tables.validate_scores`, `tables.score_cube`); `compute.compute_snapshot` runs everything
the leaderboard pages show, as a typed `snapshot.Snapshot`.
"""

from evaluator.stats.aggregates import (
    DistanceMeans,
    OrganSummary,
    case_scores,
    distance_means,
    distribution,
    group_means,
    summarize,
)
from evaluator.stats.bootstrap import (
    BootstrapMeans,
    IntervalMethod,
    PairedDifference,
    StratifiedBootstrap,
    bootstrap_means,
    mean_intervals,
    paired_difference,
)
from evaluator.stats.breakdowns import Correction, GroupComparison, age_bands, breakdown, compare_groups
from evaluator.stats.compute import compute_snapshot
from evaluator.stats.ranking import RankMethod, RankStability, rank_algorithms, rank_stability
from evaluator.stats.significance import (
    PValueMethod,
    SignificanceMap,
    holm_adjust,
    signed_rank_pvalues,
    significance_map,
)
from evaluator.stats.snapshot import Snapshot, SnapshotSchemaError
from evaluator.stats.tables import (
    DuplicateCaseError,
    ScoreCube,
    ScoreTableError,
    score_cube,
    validate_scores,
)

__all__ = [
    "BootstrapMeans",
    "Correction",
    "DistanceMeans",
    "DuplicateCaseError",
    "GroupComparison",
    "IntervalMethod",
    "OrganSummary",
    "PValueMethod",
    "PairedDifference",
    "RankMethod",
    "RankStability",
    "ScoreCube",
    "ScoreTableError",
    "SignificanceMap",
    "Snapshot",
    "SnapshotSchemaError",
    "StratifiedBootstrap",
    "age_bands",
    "bootstrap_means",
    "breakdown",
    "case_scores",
    "compare_groups",
    "compute_snapshot",
    "distance_means",
    "distribution",
    "group_means",
    "holm_adjust",
    "mean_intervals",
    "paired_difference",
    "rank_algorithms",
    "rank_stability",
    "score_cube",
    "signed_rank_pvalues",
    "significance_map",
    "summarize",
    "validate_scores",
]
