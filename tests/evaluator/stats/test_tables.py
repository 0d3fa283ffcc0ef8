from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evaluator.stats.tables import DuplicateCaseError, ScoreTableError, score_cube, validate_scores
from evaluator.touchstone.tables import AnomalyKind, DuplicatePolicy, read_touchstone_folder
from tests.evaluator.conftest import REPO_ROOT, long_table

NAN = float("nan")


def test_duplicate_case_rows_raise_an_error_naming_the_case() -> None:
    table = long_table({"alice": {"liver": [0.9, 0.8, 0.7]}}, cases=["c1", "c2", "c3"])
    conflicting = pd.concat([table, table.iloc[[1]].assign(value=0.1)], ignore_index=True)
    with pytest.raises(DuplicateCaseError, match="'c2'.*conflicting values") as error:
        validate_scores(conflicting)
    assert error.value.cases == ("c2",)


def test_identical_duplicate_rows_are_an_error_too() -> None:
    table = long_table({"alice": {"liver": [0.9, 0.8]}}, cases=["c1", "c2"])
    with pytest.raises(DuplicateCaseError, match="'c1'.*identical values"):
        validate_scores(pd.concat([table, table.iloc[[0]]], ignore_index=True))


def test_missing_columns_are_named() -> None:
    table = long_table({"alice": {"liver": [0.9]}}, cases=["c1"]).drop(columns=["site"])
    with pytest.raises(ScoreTableError, match="site"):
        validate_scores(table)


def test_empty_case_ids_are_refused() -> None:
    table = long_table({"alice": {"liver": [0.9, 0.8]}}, cases=["c1", " "])
    with pytest.raises(ScoreTableError, match="'case' has empty cells"):
        validate_scores(table)


def test_a_case_under_two_sites_is_an_error() -> None:
    table = long_table({"alice": {"liver": [0.9]}, "bob": {"liver": [0.8]}}, cases=["c1"])
    table.loc[1, "site"] = "B"
    with pytest.raises(ScoreTableError, match="'c1'.*more than one site"):
        validate_scores(table)


def test_infinite_scores_are_rejected_but_nan_is_not_evaluable() -> None:
    with pytest.raises(ScoreTableError, match="Infinite"):
        validate_scores(long_table({"alice": {"liver": [np.inf, 0.5]}}, cases=["c1", "c2"]))
    validate_scores(long_table({"alice": {"liver": [NAN, 0.5]}}, cases=["c1", "c2"]))


def test_cube_pairs_by_case_id_whatever_the_row_order() -> None:
    table = long_table(
        {
            "alice": {"liver": [0.9, 0.8, NAN], "spleen": [0.5, 0.6, 0.7]},
            "bob": {"liver": [0.7, 0.6, NAN], "spleen": [0.4, 0.3, 0.2]},
        },
        cases=["c1", "c2", "c3"],
    )
    shuffled = table.sample(frac=1.0, random_state=3).reset_index(drop=True)
    ordered, mixed = score_cube(table, "dsc"), score_cube(shuffled, "dsc")
    np.testing.assert_array_equal(ordered.values, mixed.values)
    assert ordered.cases == ("c1", "c2", "c3")
    assert ordered.organs == ("liver", "spleen")  # Touchstone organ order
    assert mixed.values[mixed.algorithm_index("bob"), 1, 1] == 0.3


def test_algorithm_without_a_case_has_nan_and_counts_it_missing() -> None:
    table = long_table({"alice": {"liver": [0.9, 0.8]}, "bob": {"liver": [0.7, 0.6]}}, cases=["c1", "c2"])
    table = table.drop(index=table.index[(table["algorithm"] == "bob") & (table["case"] == "c2")])
    cube = score_cube(table, "dsc")
    assert np.isnan(cube.values[1, 1, 0])
    assert cube.n_missing().tolist() == [0, 1]
    assert cube.has_row.tolist() == [[True, True], [True, False]]


def test_unknown_metric_is_a_clear_error() -> None:
    with pytest.raises(ScoreTableError, match="'nsd'"):
        score_cube(long_table({"alice": {"liver": [0.9]}}, cases=["c1"]), "nsd")


def _write(folder: Path, model: str, metric: str, text: str) -> None:
    (folder / model).mkdir(parents=True, exist_ok=True)
    (folder / model / f"{metric}.csv").write_text(text)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    _write(tmp_path, "alice", "dsc", "name,liver,spleen\nc1,0.9,\nc2,0.8,0.7\nc3,0.5,0.6\n")
    _write(tmp_path, "bob", "dsc", "name,liver,spleen\nc2,0.1,0.2\nc1,0.3,\nc2,0.4,0.5\n")
    return tmp_path


def test_touchstone_folder_with_a_repeated_case_is_refused_by_default(folder: Path) -> None:
    with pytest.raises(DuplicateCaseError, match="'c2'"):
        read_touchstone_folder(folder, metrics=("dsc",))


def test_keep_first_policy_keeps_the_first_row_and_reports_it(folder: Path) -> None:
    loaded = read_touchstone_folder(folder, metrics=("dsc",), duplicates=DuplicatePolicy.KEEP_FIRST)
    cube = score_cube(loaded.scores, "dsc")
    assert cube.values[cube.algorithm_index("bob"), cube.cases.index("c2"), 0] == 0.1
    kinds = {(a.algorithm, a.kind) for a in loaded.anomalies}
    assert ("bob", AnomalyKind.DUPLICATE_CONFLICTING) in kinds
    assert ("bob", AnomalyKind.ROWS_DROPPED) in kinds
    assert ("bob", AnomalyKind.MISSING_CASES) in kinds  # c3


def test_every_row_policy_turns_repeats_into_pseudo_cases(folder: Path) -> None:
    loaded = read_touchstone_folder(folder, metrics=("dsc",), duplicates=DuplicatePolicy.EVERY_ROW)
    bob = loaded.scores.loc[(loaded.scores["algorithm"] == "bob") & (loaded.scores["organ"] == "liver")]
    assert sorted(bob["case"]) == ["c1", "c2", "c2#row4"]


def test_first_n_rows_policy_cuts_the_file(folder: Path) -> None:
    loaded = read_touchstone_folder(
        folder, metrics=("dsc",), duplicates=DuplicatePolicy.FIRST_N_ROWS, n_rows=2
    )
    bob = loaded.scores.loc[(loaded.scores["algorithm"] == "bob") & (loaded.scores["organ"] == "liver")]
    assert sorted(bob["case"]) == ["c1", "c2"]
    assert any(a.kind is AnomalyKind.ROWS_DROPPED and a.algorithm == "alice" for a in loaded.anomalies)


def test_evaluator_stats_never_imports_django() -> None:
    code = (
        "import sys, evaluator.stats, evaluator.figures, evaluator.touchstone.reproduce; "
        "sys.exit('django' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT).returncode == 0
