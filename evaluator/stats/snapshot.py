"""The leaderboard snapshot: every statistic the pages, API, charts and CLI show, as frozen dataclasses.

`evaluator.stats.compute.compute_snapshot(scores, ...)` builds it; pages read it by attribute only. `Snapshot.to_json()` is plain JSON
data (NaN and infinities as null, `schema_version` included); `Snapshot.from_json()` reads it back and raises
`SnapshotSchemaError` for another schema version or a missing, unexpected or mistyped field, so a renamed
field fails at once instead of showing as a blank cell.

Conventions: a number that does not exist (no evaluable case, a diagonal cell) is None; names are strings;
a per-algorithm tuple follows the order its section names (`algorithms`, `order`); a matrix is a tuple of
rows, row i against column j.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any, Self

# Bump when a field is added, removed, renamed or changes meaning; stored snapshots of another version are
# refused by `Snapshot.from_json` and recomputed by the platform.
SCHEMA_VERSION = 1

Numbers = tuple[float | None, ...]
Matrix = tuple[Numbers, ...]


class SnapshotSchemaError(ValueError):
    """Snapshot data this version cannot read: another schema version, or a field missing, unexpected or of
    the wrong type. Recompute the snapshot from the scores."""


class _Json:
    """Frozen dataclass <-> plain JSON data, driven by the field annotations."""

    def to_json(self) -> dict[str, Any]:
        encoded = _encode(self)
        assert isinstance(encoded, dict)
        return encoded

    @classmethod
    def from_json(cls, data: Any) -> Self:
        decoded: Self = _decode(cls, data, cls.__name__)
        return decoded


# --- the snapshot ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Parameters(_Json):
    """How the snapshot was computed (benchmark settings and what the scores held)."""

    n_bootstrap: int
    seed: int
    alpha: float
    confidence_level: float
    ci_method: str
    p_value_method: str
    rank_method: str
    significance_correction: str
    breakdown_correction: str
    min_cases_per_group: int
    stratified_by: str
    metrics: tuple[str, ...]  # computed, in the order asked
    metrics_absent: tuple[str, ...]  # asked for but without scores
    organs: tuple[str, ...]


@dataclass(frozen=True)
class Site(_Json):
    site: str
    n_cases: int
    out_of_distribution: bool | None  # None: the benchmark did not say


@dataclass(frozen=True)
class LeaderboardEntry(_Json):
    """One algorithm's headline (unweighted mean of organ means) with its bootstrap CI and rank.

    `rank_score`: what the rank method ranked on (the headline; the mean per-case rank, lower is better; or
    the mean number of significant wins per organ). `n_missing_cases`: cases with no score at all.
    """

    algorithm: str
    rank: int
    rank_score: float | None
    mean: float | None
    ci_low: float | None
    ci_high: float | None
    n_missing_cases: int


@dataclass(frozen=True)
class OrganStats(_Json):
    """One organ of one algorithm: mean over the N = `n_cases` evaluable cases with its bootstrap CI, and the
    spread of cases: median, 2.5-97.5 percentile reference range (not a CI), box-plot quartiles and whiskers."""

    mean: float | None
    ci_low: float | None
    ci_high: float | None
    n_cases: int
    median: float | None
    p2_5: float | None
    p97_5: float | None
    q1: float | None
    q3: float | None
    whisker_low: float | None
    whisker_high: float | None


@dataclass(frozen=True)
class PerSite(_Json):
    """Headline and organ means within each site; `headline[alg][s]` is site `sites[s]`."""

    sites: tuple[str, ...]
    out_of_distribution: tuple[bool | None, ...]
    n_cases: tuple[int, ...]
    headline: dict[str, Numbers]
    organ_means: dict[str, dict[str, Numbers]]


@dataclass(frozen=True)
class SignificancePanel(_Json):
    """One organ's significance map: `better[i][j]`: `order[i]` is significantly better than `order[j]`
    (one-sided Wilcoxon signed-rank, Holm-corrected over the panel). Algorithms best median first; the
    diagonal is None."""

    order: tuple[str, ...]
    medians: Numbers
    better: tuple[tuple[bool | None, ...], ...]
    p_value: Matrix
    p_adjusted: Matrix
    n_cases: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class PairedDifferences(_Json):
    """Paired bootstrap differences of the headline, row minus column, in leaderboard order."""

    algorithms: tuple[str, ...]
    difference: Matrix
    ci_low: Matrix
    ci_high: Matrix


@dataclass(frozen=True)
class KendallTau(_Json):
    """Kendall's tau-b between each bootstrap ranking and the full-data one."""

    mean: float | None
    median: float | None
    ci_low: float | None
    ci_high: float | None


@dataclass(frozen=True)
class OrganRankStability(_Json):
    """One organ's ranks (mean then rank) over the resamples, in leaderboard order."""

    algorithms: tuple[str, ...]
    full_rank: tuple[int, ...]
    rank_counts: tuple[tuple[int, ...], ...]
    kendall_tau_mean: float | None


@dataclass(frozen=True)
class RankStabilitySummary(_Json):
    """Ranks over the bootstrap resamples, in leaderboard order: `rank_counts[a][k]` = resamples ranking
    algorithm a at rank k + 1; `rank_ci_low/high`: the range of its bootstrap ranks at the confidence level."""

    method: str
    n_resamples: int
    algorithms: tuple[str, ...]
    full_rank: tuple[int, ...]
    rank_counts: tuple[tuple[int, ...], ...]
    median_rank: Numbers
    rank_ci_low: Numbers
    rank_ci_high: Numbers
    kendall_tau: KendallTau
    per_organ: dict[str, OrganRankStability]


@dataclass(frozen=True)
class BreakdownGroup(_Json):
    group: str
    n_cases: int
    mean: float | None
    median: float | None


@dataclass(frozen=True)
class BreakdownPair(_Json):
    """A Mann-Whitney U test between two groups, corrected over the pairs."""

    group_a: str
    group_b: str
    u_statistic: float | None
    p_value: float | None
    p_adjusted: float | None
    significant: bool


@dataclass(frozen=True)
class BreakdownTest(_Json):
    """One algorithm's Kruskal-Wallis test across the groups, on per-case scores (mean of the case's
    evaluable organs); groups with too few cases are excluded from the test."""

    kruskal_h: float | None
    kruskal_p: float | None
    significant: bool
    excluded_groups: tuple[str, ...]
    groups: tuple[BreakdownGroup, ...]
    pairwise: tuple[BreakdownPair, ...]


@dataclass(frozen=True)
class Breakdown(_Json):
    """Results by one factor (site, distribution, scanner, sex, age band, ...): the headline within each
    group (mean of organ means) and the tests per algorithm."""

    groups: tuple[str, ...]
    n_cases: tuple[int, ...]
    headline: dict[str, Numbers]
    tests: dict[str, BreakdownTest]


@dataclass(frozen=True)
class MetricSection(_Json):
    """Every statistic of one metric. `leaderboard` is best first; `organ_stats[alg][organ]`."""

    organs: tuple[str, ...]
    leaderboard: tuple[LeaderboardEntry, ...]
    organ_stats: dict[str, dict[str, OrganStats]]
    per_site: PerSite
    significance: dict[str, SignificancePanel]
    paired_differences: PairedDifferences
    rank_stability: RankStabilitySummary
    breakdowns: dict[str, Breakdown]


@dataclass(frozen=True)
class Snapshot(_Json):
    """The statistics of a leaderboard: its parameters, algorithms (sorted), sites, and one section per
    computed metric."""

    parameters: Parameters
    algorithms: tuple[str, ...]
    sites: tuple[Site, ...]
    n_cases: int
    metrics: dict[str, MetricSection]

    def section(self, metric: str) -> MetricSection:
        """The statistics of `metric`; a KeyError naming the metrics there are otherwise."""
        try:
            return self.metrics[metric]
        except KeyError:
            raise KeyError(f"The snapshot has no metric {metric!r}; it has {list(self.metrics)}.") from None

    def to_json(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, **super().to_json()}

    @classmethod
    def from_json(cls, data: Any) -> Self:
        """Read stored snapshot data; `SnapshotSchemaError` when it is of another schema version or malformed."""
        if not isinstance(data, dict):
            raise SnapshotSchemaError(f"A snapshot is a JSON object, not {type(data).__name__}.")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise SnapshotSchemaError(
                f"The snapshot has schema version {version!r}; this version reads {SCHEMA_VERSION}. Recompute it."
            )
        return super().from_json({key: value for key, value in data.items() if key != "schema_version"})


# --- JSON codec ----------------------------------------------------------------------------------------------
def _encode(value: Any) -> Any:
    if isinstance(value, _Json):
        return {field.name: _encode(getattr(value, field.name)) for field in dataclasses.fields(value)}  # type: ignore[arg-type]
    if isinstance(value, tuple):
        return [_encode(item) for item in value]
    if isinstance(value, dict):
        return {key: _encode(item) for key, item in value.items()}
    return value


_FIELD_TYPES: dict[type, dict[str, Any]] = {}


def _field_types(kind: type) -> dict[str, Any]:
    """The resolved annotations of a snapshot class (`from __future__` leaves them as strings)."""
    if kind not in _FIELD_TYPES:
        _FIELD_TYPES[kind] = typing.get_type_hints(kind)
    return _FIELD_TYPES[kind]


def _decode(kind: Any, value: Any, path: str) -> Any:
    """`value` read as `kind`, checked all the way down; `path` names the place in a message."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (types.UnionType, typing.Union):  # X | None
        if value is None:
            return None
        (inner,) = (arg for arg in args if arg is not type(None))
        return _decode(inner, value, path)
    if isinstance(kind, type) and issubclass(kind, _Json):
        if not isinstance(value, dict):
            raise _mistyped(path, "an object", value)
        names = [field.name for field in dataclasses.fields(kind)]  # type: ignore[arg-type]
        missing, unexpected = sorted(set(names) - value.keys()), sorted(value.keys() - set(names))
        if missing or unexpected:
            raise SnapshotSchemaError(
                f"{path} has missing field(s) {missing} and unexpected field(s) {unexpected}. Recompute the snapshot."
            )
        types_ = _field_types(kind)
        return kind(**{name: _decode(types_[name], value[name], f"{path}.{name}") for name in names})
    if origin is tuple:
        if not isinstance(value, list):
            raise _mistyped(path, "a list", value)
        return tuple(_decode(args[0], item, f"{path}[{i}]") for i, item in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise _mistyped(path, "an object", value)
        return {key: _decode(args[1], item, f"{path}.{key}") for key, item in value.items()}
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind in (int, str, bool) and type(value) is kind:
        return value
    raise _mistyped(path, getattr(kind, "__name__", str(kind)), value)


def _mistyped(path: str, expected: str, value: Any) -> SnapshotSchemaError:
    return SnapshotSchemaError(f"{path} should be {expected}, not {value!r:.60}. Recompute the snapshot.")
