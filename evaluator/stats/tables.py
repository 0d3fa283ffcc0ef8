"""The long table of per-case scores: validation and the dense per-metric cube.

Every statistic in `evaluator.stats` starts from a long table with one row per
(case, site, algorithm, organ, metric) and a `value` (NaN = organ not evaluable for
that case). `score_cube` validates it and lays it out as a dense array so that
algorithms are always paired by case id, never by row position.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from evaluator.scoring.organs import TOUCHSTONE_ORGAN_NAMES

SCORE_COLUMNS: tuple[str, ...] = ("case", "site", "algorithm", "organ", "metric", "value")


_MAX_NAMED_CASES = 10
_CONTROL_RUN = re.compile(r"[\x00-\x1f\x7f]+")


class ScoreTableError(ValueError):
    """The long table of scores cannot be used as it is; the message says what to fix."""


class DuplicateCaseError(ScoreTableError):
    """Two or more rows score the same case, algorithm, organ and metric.

    `cases` names every affected case id, so the person importing the scores can
    find them; duplicates are never silently kept or dropped.
    """

    def __init__(self, message: str, cases: Sequence[str]) -> None:
        super().__init__(message)
        self.cases = tuple(cases)


def printable_case(case: str) -> str:
    """A case id fit for a message: runs of control characters shown as <N control characters>."""
    return _CONTROL_RUN.sub(lambda m: f"<{len(m.group())} control characters>", case)


def _name_cases(cases: Sequence[str]) -> str:
    shown = ", ".join(repr(printable_case(str(c))) for c in cases[:_MAX_NAMED_CASES])
    more = len(cases) - _MAX_NAMED_CASES
    return shown + (f" and {more} more" if more > 0 else "")


def validate_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """Check a long table of scores and return a normalised copy.

    Requirements: the columns of `SCORE_COLUMNS`; case, site, algorithm, organ and
    metric are non-empty strings; value is a float that is finite or NaN (NaN means
    the organ is not evaluable for the case); each case belongs to exactly one site;
    at most one row per (case, algorithm, organ, metric). Exact duplicates and
    conflicting duplicates are both errors (`DuplicateCaseError`) that name the cases.

    >>> table = pd.DataFrame({"case": ["c1", "c1"], "site": ["A", "A"], "algorithm": ["x", "x"],
    ...                       "organ": ["liver", "liver"], "metric": ["dsc", "dsc"], "value": [0.9, 0.8]})
    >>> validate_scores(table)
    Traceback (most recent call last):
    ...
    evaluator.stats.tables.DuplicateCaseError: Case(s) 'c1' have more than one row for the same algorithm, organ and metric (conflicting values; e.g. algorithm 'x', organ 'liver', metric 'dsc'). Remove the extra rows or fix the case ids, then import again.
    """
    missing = [c for c in SCORE_COLUMNS if c not in scores.columns]
    if missing:
        raise ScoreTableError(
            f"The score table lacks the column(s) {missing}; it needs {list(SCORE_COLUMNS)}."
        )
    table = pd.DataFrame({c: scores[c] for c in SCORE_COLUMNS}).reset_index(drop=True)
    for column in SCORE_COLUMNS[:-1]:
        if table[column].isna().any() or any(not str(v).strip() for v in table[column].unique()):
            raise ScoreTableError(f"The column {column!r} has empty cells; every row needs a {column}.")
        table[column] = table[column].astype(str)
    try:
        table["value"] = pd.to_numeric(table["value"], errors="raise").astype("float64")
    except (TypeError, ValueError) as error:
        raise ScoreTableError(f"The column 'value' must hold numbers (NaN allowed): {error}") from error
    if np.isinf(table["value"].to_numpy()).any():
        bad = table.loc[np.isinf(table["value"].to_numpy()), "case"].unique().tolist()
        raise ScoreTableError(
            f"Infinite scores for case(s) {_name_cases(bad)}; use NaN for 'not evaluable' "
            "and the worst finite score for a failed case."
        )
    _check_duplicates(table)
    if len(table):
        _check_one_site_per_case(table)
    return table


def _check_duplicates(table: pd.DataFrame) -> None:
    key = ["case", "algorithm", "organ", "metric"]
    codes = [pd.factorize(table[c])[0].astype(np.int64) for c in key]
    sizes = [int(c.max()) + 1 if len(c) else 1 for c in codes]
    flat = codes[0]
    for code, size in zip(codes[1:], sizes[1:], strict=True):
        flat = flat * size + code
    _, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
    duplicated = counts[inverse] > 1
    if not duplicated.any():
        return
    rows = table.loc[duplicated]
    conflicting = rows.groupby(key, sort=False)["value"].nunique(dropna=False) > 1
    cases = rows["case"].drop_duplicates().tolist()
    first = rows.iloc[0]
    kind = "conflicting values" if conflicting.any() else "identical values"
    raise DuplicateCaseError(
        f"Case(s) {_name_cases(cases)} have more than one row for the same algorithm, organ and metric "
        f"({kind}; e.g. algorithm {first['algorithm']!r}, organ {first['organ']!r}, metric {first['metric']!r}). "
        "Remove the extra rows or fix the case ids, then import again.",
        cases,
    )


def _check_one_site_per_case(table: pd.DataFrame) -> None:
    case_code, case_names = pd.factorize(table["case"])
    site_code, _ = pd.factorize(table["site"])
    pairs = np.unique(case_code.astype(np.int64) * (int(site_code.max()) + 1) + site_code)
    per_case = np.bincount(pairs // (int(site_code.max()) + 1), minlength=len(case_names))
    if (per_case > 1).any():
        bad = [str(c) for c in case_names[per_case > 1]]
        raise ScoreTableError(
            f"Case(s) {_name_cases(bad)} are listed under more than one site; a case belongs to one site."
        )


@dataclass(frozen=True)
class ScoreCube:
    """Scores of one metric laid out densely: `values[algorithm, case, organ]`.

    `cases` are sorted case ids; `sites[i]` is the site of `cases[i]`. NaN in `values`
    means "no value": the organ is not evaluable for that case, or the algorithm has
    no row for the case (then `has_row[algorithm, case]` is False). Cases are shared
    by every algorithm, so index `i` is the same case for all of them (pairing by id).
    """

    metric: str
    algorithms: tuple[str, ...]
    cases: tuple[str, ...]
    sites: np.ndarray
    organs: tuple[str, ...]
    values: np.ndarray
    has_row: np.ndarray

    @property
    def evaluable(self) -> np.ndarray:
        """Boolean array (algorithm, case, organ): True where a value exists."""
        return ~np.isnan(self.values)

    @property
    def site_names(self) -> tuple[str, ...]:
        """Distinct sites, sorted."""
        return tuple(sorted(set(self.sites.tolist())))

    def algorithm_index(self, algorithm: str) -> int:
        try:
            return self.algorithms.index(algorithm)
        except ValueError:
            raise KeyError(f"No scores for algorithm {algorithm!r}; known: {list(self.algorithms)}") from None

    def organ_index(self, organ: str) -> int:
        try:
            return self.organs.index(organ)
        except ValueError:
            raise KeyError(f"No scores for organ {organ!r}; known: {list(self.organs)}") from None

    def n_missing(self) -> np.ndarray:
        """Cases without any row for each algorithm, shape (algorithm,)."""
        return (~self.has_row).sum(axis=1)


def score_cube(
    scores: pd.DataFrame,
    metric: str,
    *,
    organs: Sequence[str] | None = None,
    algorithms: Sequence[str] | None = None,
    validated: bool = False,
) -> ScoreCube:
    """Validate `scores` (unless `validated`) and lay out one metric as a `ScoreCube`.

    The case universe is every case of the table (any metric), so cubes of different
    metrics of the same table share their cases and bootstrap resamples. Organs
    default to the Touchstone order when they are Touchstone organs, otherwise to
    their order of appearance; algorithms default to sorted names.
    """
    table = scores if validated else validate_scores(scores)
    cases = np.array(sorted(table["case"].unique()), dtype=object)
    site_of_case = table.drop_duplicates("case").set_index("case")["site"]
    rows = table.loc[table["metric"] == metric]
    if rows.empty:
        raise ScoreTableError(
            f"No scores for metric {metric!r}; the table has {sorted(table['metric'].unique())}."
        )
    organ_names = tuple(organs) if organs is not None else _default_organs(rows["organ"])
    algorithm_names = (
        tuple(algorithms) if algorithms is not None else tuple(sorted(rows["algorithm"].unique()))
    )
    rows = rows.loc[rows["organ"].isin(organ_names) & rows["algorithm"].isin(algorithm_names)]
    case_code = pd.Categorical(rows["case"], categories=cases).codes
    algorithm_code = pd.Categorical(rows["algorithm"], categories=algorithm_names).codes
    organ_code = pd.Categorical(rows["organ"], categories=organ_names).codes
    values = np.full((len(algorithm_names), len(cases), len(organ_names)), np.nan)
    values[algorithm_code, case_code, organ_code] = rows["value"].to_numpy()
    has_row = np.zeros((len(algorithm_names), len(cases)), dtype=bool)
    has_row[algorithm_code, case_code] = True
    return ScoreCube(
        metric=metric,
        algorithms=algorithm_names,
        cases=tuple(cases.tolist()),
        sites=site_of_case.loc[cases].to_numpy(dtype=str),
        organs=organ_names,
        values=values,
        has_row=has_row,
    )


def _default_organs(organ_column: pd.Series) -> tuple[str, ...]:
    present = list(pd.unique(organ_column))
    if set(present) <= set(TOUCHSTONE_ORGAN_NAMES):
        return tuple(o for o in TOUCHSTONE_ORGAN_NAMES if o in present)
    return tuple(present)


@dataclass(frozen=True, eq=False)
class CodedScores:
    """The long table of scores as integer codes: one record per (case, algorithm, organ), every metric a column.

    Record r scores case `case_names[case[r]]` (of site `case_sites[case[r]]`), algorithm
    `algorithm_names[algorithm[r]]` and organ `organ_names[organ[r]]`; `values[metric][r]` is its
    score (NaN = not evaluable). A name table may hold a name twice (two database rows with one
    name): records are matched by name, as in the long table. What a database read hands over
    without building a Python string per row; `long_table()` is the same scores as a long table.
    """

    case_names: np.ndarray
    case_sites: np.ndarray
    algorithm_names: np.ndarray
    organ_names: np.ndarray
    case: np.ndarray
    algorithm: np.ndarray
    organ: np.ndarray
    values: dict[str, np.ndarray]

    def __len__(self) -> int:
        return int(self.case.size)

    def long_table(self) -> pd.DataFrame:
        """The long table (`SCORE_COLUMNS`): for each metric in turn, one row per record."""
        repeats = len(self.values)
        metric = np.empty(len(self) * repeats, dtype=object)
        for position, name in enumerate(self.values):
            metric[position * len(self) : (position + 1) * len(self)] = name
        return pd.DataFrame(
            {
                "case": np.tile(_object_array(self.case_names)[self.case], repeats),
                "site": np.tile(_object_array(self.case_sites)[self.case], repeats),
                "algorithm": np.tile(_object_array(self.algorithm_names)[self.algorithm], repeats),
                "organ": np.tile(_object_array(self.organ_names)[self.organ], repeats),
                "metric": metric,
                "value": np.concatenate([np.asarray(v, dtype=np.float64) for v in self.values.values()])
                if self.values
                else np.empty(0),
            }
        )


def _object_array(names: np.ndarray | Sequence[str]) -> np.ndarray:
    array = np.empty(len(names), dtype=object)
    array[:] = list(names)
    return array


def _resolve_names(names: np.ndarray, codes: np.ndarray, column: str) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct names among those `codes` use, and each code's index among them (checked non-empty)."""
    used = np.flatnonzero(np.bincount(codes, minlength=len(names)) > 0)
    labels = _object_array(names)[used]
    if any(pd.isna(label) or not str(label).strip() for label in labels):
        raise ScoreTableError(f"The column {column!r} has empty cells; every row needs a {column}.")
    distinct, inverse = np.unique(_object_array([str(label) for label in labels]), return_inverse=True)
    index = np.full(len(names), -1, dtype=np.int64)
    index[used] = np.ravel(inverse)
    return distinct, index


def score_cubes(scores: CodedScores, *, organs: Sequence[str] | None = None) -> dict[str, ScoreCube]:
    """Validate coded scores and lay out each metric as a `ScoreCube`, without a long table.

    The cubes `compute_snapshot` builds from `scores.long_table()` (every metric of the records,
    algorithms sorted, all cases of the table, organs as `score_cube` picks them), number for
    number, and the checks of `validate_scores` on the arrays: names non-empty, no infinite value,
    one site per case, at most one record per (case, algorithm, organ); a failed check raises the
    error `validate_scores` raises. (A database read cannot hold duplicates, its rows are unique
    per submission, case and organ, but a duplicated name could; the check costs one `bincount`.)
    No records: no cubes.
    """
    if len(scores) == 0:
        return {}
    case_labels, case_index = _resolve_names(scores.case_names, scores.case, "case")
    algorithm_labels, algorithm_index = _resolve_names(scores.algorithm_names, scores.algorithm, "algorithm")
    organ_labels, organ_index = _resolve_names(scores.organ_names, scores.organ, "organ")
    _resolve_names(scores.case_sites, scores.case, "site")
    record_case, record_algorithm, record_organ = (
        case_index[scores.case],
        algorithm_index[scores.algorithm],
        organ_index[scores.organ],
    )
    for metric, values in scores.values.items():
        if not metric.strip():
            raise ScoreTableError("The column 'metric' has empty cells; every row needs a metric.")
        infinite = np.isinf(values)
        if infinite.any():
            bad = pd.unique(case_labels[record_case[infinite]]).tolist()
            raise ScoreTableError(
                f"Infinite scores for case(s) {_name_cases(bad)}; use NaN for 'not evaluable' "
                "and the worst finite score for a failed case."
            )
    cells = (record_case * len(algorithm_labels) + record_algorithm) * len(organ_labels) + record_organ
    if np.bincount(cells).max() > 1:
        validate_scores(scores.long_table())  # raises DuplicateCaseError, naming the cases
    site_of_code = _object_array([str(site) for site in scores.case_sites])
    sites = np.empty(len(case_labels), dtype=object)
    used_codes = np.flatnonzero(case_index >= 0)
    sites[case_index[used_codes]] = site_of_code[used_codes]
    if (sites[case_index[used_codes]] != site_of_code[used_codes]).any():
        _check_one_site_per_case(
            pd.DataFrame({"case": case_labels[record_case], "site": site_of_code[scores.case]})
        )
    if organs is not None:
        organ_names = tuple(organs)
    else:
        seen, first_seen = np.unique(record_organ, return_index=True)
        organ_names = _default_organs(pd.Series(organ_labels[seen[np.argsort(first_seen)]]))
    position = {str(name): i for i, name in enumerate(organ_labels)}
    organ_column = np.full(len(organ_labels), -1, dtype=np.int64)
    for column, name in enumerate(organ_names):
        if name in position:
            organ_column[position[name]] = column
    record_column = organ_column[record_organ]
    keep = record_column >= 0
    kept_algorithm, kept_case, kept_column = record_algorithm[keep], record_case[keep], record_column[keep]
    has_row = np.zeros((len(algorithm_labels), len(case_labels)), dtype=bool)
    has_row[kept_algorithm, kept_case] = True
    cubes = {}
    for metric, values in scores.values.items():
        cube_values = np.full((len(algorithm_labels), len(case_labels), len(organ_names)), np.nan)
        cube_values[kept_algorithm, kept_case, kept_column] = np.asarray(values, dtype=np.float64)[keep]
        cubes[metric] = ScoreCube(
            metric=metric,
            algorithms=tuple(str(a) for a in algorithm_labels),
            cases=tuple(str(c) for c in case_labels),
            sites=np.array([str(s) for s in sites], dtype=str),
            organs=organ_names,
            values=cube_values,
            has_row=has_row.copy(),
        )
    return cubes
