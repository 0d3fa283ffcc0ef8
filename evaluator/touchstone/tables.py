"""Touchstone's published per-case CSV folders, read with their quirks reported (duplicates, missing cases).

The platform's own score tables never go through here; this is how the reproduction of Touchstone's
published tables (`evaluator.touchstone.reproduce`) gets its long tables.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from evaluator.stats.tables import (
    _CONTROL_RUN,
    SCORE_COLUMNS,
    DuplicateCaseError,
    ScoreTableError,
    _name_cases,
)


class DuplicatePolicy(enum.StrEnum):
    """What to do with a per-case CSV that lists a case more than once.

    ERROR: refuse (the platform's rule). KEEP_FIRST: keep the first row of each case
    (Touchstone's significance maps). FIRST_N_ROWS: keep the first `n_rows` rows of
    the file and count every one of them (the Leaderboard's summary means).
    EVERY_ROW: count every row (the Leaderboard's median tables). Under the last two,
    a repeated row becomes its own pseudo-case `"<case>#row<line>"` so that the
    strict long table still holds; the anomaly report lists them.
    """

    ERROR = "error"
    KEEP_FIRST = "keep_first"
    FIRST_N_ROWS = "first_n_rows"
    EVERY_ROW = "every_row"


class AnomalyKind(enum.StrEnum):
    DUPLICATE_IDENTICAL = "duplicate rows, identical values"
    DUPLICATE_CONFLICTING = "duplicate rows, conflicting values"
    MISSING_CASES = "cases missing"
    INVALID_CASE_ID = "case id with control characters"
    ROWS_DROPPED = "rows dropped by the duplicate policy"


@dataclass(frozen=True)
class FileAnomaly:
    """Something wrong with one per-case CSV, reported rather than hidden."""

    algorithm: str
    metric: str
    path: str
    kind: AnomalyKind
    cases: tuple[str, ...]
    detail: str

    def describe(self, max_cases: int = 3) -> str:
        shown = _name_cases(list(self.cases[:max_cases]))
        more = f" and {len(self.cases) - max_cases} more" if len(self.cases) > max_cases else ""
        return f"{self.kind.value}: {len(self.cases)} case(s) ({shown}{more}); {self.detail}"


@dataclass(frozen=True)
class LoadedScores:
    """A long score table read from CSV files, with the anomalies found on the way."""

    scores: pd.DataFrame
    anomalies: tuple[FileAnomaly, ...]


def read_case_csv(path: Path) -> pd.DataFrame:
    """Read one Touchstone per-case CSV (`name,<organ>,...`; empty cell or `nan` = not evaluable)."""
    frame = pd.read_csv(path, dtype={"name": str})
    if "name" not in frame.columns:
        raise ScoreTableError(f"{path} has no 'name' column; expected Touchstone's per-case format.")
    return frame


def read_touchstone_folder(
    folder: Path,
    *,
    metrics: Sequence[str] = ("dsc", "nsd"),
    site: str = "all",
    duplicates: DuplicatePolicy = DuplicatePolicy.ERROR,
    n_rows: int | None = None,
    cases: Iterable[str] | None = None,
    rename: Mapping[str, str] | None = None,
) -> LoadedScores:
    """Read `<folder>/<model>/<metric>.csv` files into one long score table.

    Each file has one row per case and one column per organ. `cases` keeps only
    those case ids; `rename` maps folder names to display names; `duplicates` (with
    `n_rows` for FIRST_N_ROWS) says how repeated case ids are handled. Duplicates,
    cases missing relative to the other models and malformed case ids are returned
    as `anomalies`. With `DuplicatePolicy.ERROR`, a duplicate raises `DuplicateCaseError`.
    """
    folder = Path(folder)
    keep = None if cases is None else set(cases)
    frames: list[pd.DataFrame] = []
    anomalies: list[FileAnomaly] = []
    for model_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        algorithm = (rename or {}).get(model_dir.name, model_dir.name)
        for metric in metrics:
            path = model_dir / f"{metric}.csv"
            if not path.exists():
                continue
            wide = read_case_csv(path)
            if keep is not None:
                wide = wide.loc[wide["name"].isin(keep)]
            wide, found = _apply_duplicate_policy(wide, algorithm, metric, str(path), duplicates, n_rows)
            anomalies.extend(found)
            bad_ids = [n for n in wide["name"].unique() if _CONTROL_RUN.search(n)]
            if bad_ids:
                anomalies.append(
                    FileAnomaly(
                        algorithm,
                        metric,
                        str(path),
                        AnomalyKind.INVALID_CASE_ID,
                        tuple(bad_ids),
                        "kept as its own case; it pairs with no other model",
                    )
                )
            long = wide.melt(id_vars="name", var_name="organ", value_name="value")
            long = long.rename(columns={"name": "case"})
            long["site"] = site
            long["algorithm"] = algorithm
            long["metric"] = metric
            frames.append(long[list(SCORE_COLUMNS)])
    if not frames:
        raise ScoreTableError(f"No <model>/<metric>.csv files for {list(metrics)} under {folder}.")
    scores = pd.concat(frames, ignore_index=True)
    anomalies.extend(_missing_case_anomalies(scores, folder))
    return LoadedScores(scores=scores, anomalies=tuple(anomalies))


def _apply_duplicate_policy(
    wide: pd.DataFrame,
    algorithm: str,
    metric: str,
    path: str,
    policy: DuplicatePolicy,
    n_rows: int | None,
) -> tuple[pd.DataFrame, list[FileAnomaly]]:
    found: list[FileAnomaly] = []
    repeated = wide["name"].duplicated(keep=False)
    if repeated.any():
        rows = wide.loc[repeated]
        distinct = rows.drop_duplicates()
        conflicting = distinct["name"].duplicated(keep=False)
        for kind, names in (
            (AnomalyKind.DUPLICATE_CONFLICTING, distinct.loc[conflicting, "name"].unique()),
            (
                AnomalyKind.DUPLICATE_IDENTICAL,
                rows.loc[~rows["name"].isin(distinct.loc[conflicting, "name"]), "name"].unique(),
            ),
        ):
            if len(names):
                found.append(
                    FileAnomaly(
                        algorithm,
                        metric,
                        path,
                        kind,
                        tuple(names),
                        f"{len(wide)} rows for {wide['name'].nunique()} distinct cases; "
                        f"policy {policy.value!r}",
                    )
                )
    if policy is DuplicatePolicy.ERROR:
        if repeated.any():
            names = wide.loc[repeated, "name"].unique().tolist()
            raise DuplicateCaseError(
                f"{path} lists {len(names)} case(s) more than once: {_name_cases(names)}. "
                "Fix the file, or read it with an explicit DuplicatePolicy.",
                names,
            )
        return wide, found
    if policy is DuplicatePolicy.KEEP_FIRST:
        kept = wide.drop_duplicates("name", keep="first")
        if len(kept) < len(wide):
            dropped = wide.loc[wide["name"].duplicated(keep="first"), "name"].unique()
            found.append(
                FileAnomaly(
                    algorithm,
                    metric,
                    path,
                    AnomalyKind.ROWS_DROPPED,
                    tuple(dropped),
                    f"kept the first row of each case, dropped {len(wide) - len(kept)} rows",
                )
            )
        return kept, found
    if policy is DuplicatePolicy.FIRST_N_ROWS:
        if n_rows is None:
            raise ValueError("DuplicatePolicy.FIRST_N_ROWS needs n_rows.")
        if len(wide) > n_rows:
            dropped = wide.iloc[n_rows:]["name"].unique()
            found.append(
                FileAnomaly(
                    algorithm,
                    metric,
                    path,
                    AnomalyKind.ROWS_DROPPED,
                    tuple(dropped),
                    f"kept the first {n_rows} of {len(wide)} rows",
                )
            )
        wide = wide.iloc[:n_rows]
    # FIRST_N_ROWS and EVERY_ROW count each remaining row: repeats become pseudo-cases.
    wide = wide.copy()
    later = wide["name"].duplicated(keep="first").to_numpy()
    line = np.arange(len(wide)) + 2  # line number in the file, after the header
    names = wide["name"].to_numpy(dtype=object)
    names[later] = [f"{n}#row{k}" for n, k in zip(names[later], line[later], strict=True)]
    wide["name"] = names
    return wide, found


def _missing_case_anomalies(scores: pd.DataFrame, folder: Path) -> list[FileAnomaly]:
    found: list[FileAnomaly] = []
    real = scores.loc[~scores["case"].str.contains("#row", regex=False)]
    for metric, rows in real.groupby("metric", sort=True):
        universe = set(rows["case"])
        for algorithm, own in rows.groupby("algorithm", sort=True):
            missing = sorted(universe - set(own["case"]))
            if missing:
                found.append(
                    FileAnomaly(
                        str(algorithm),
                        str(metric),
                        str(folder),
                        AnomalyKind.MISSING_CASES,
                        tuple(missing),
                        f"{len(missing)} of {len(universe)} cases have no row; means use the "
                        "cases present, comparisons pair by case id",
                    )
                )
    return found
