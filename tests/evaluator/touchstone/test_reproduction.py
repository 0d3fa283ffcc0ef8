"""Reproduction of Touchstone's published results (T1, T2, T3, T5 of touchstone-data/README.md).

Runs on the real published data in `../shared/touchstone-data` (or $TOUCHSTONE_DATA_DIR);
skipped where it is absent, failed where it is absent under CI=true. Uses the same
library functions as the platform, through `evaluator.touchstone.reproduce`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from evaluator.stats.significance import PValueMethod
from evaluator.stats.tables import DuplicateCaseError
from evaluator.touchstone.reproduce import (
    Check,
    Reproduction,
    format_report,
    main,
    reproduce_all,
    reproduce_t5,
)
from evaluator.touchstone.tables import AnomalyKind, DuplicatePolicy, read_touchstone_folder
from tests.evaluator.conftest import require_touchstone_data


@pytest.fixture(scope="module")
def reproduction(touchstone_data: Path) -> Reproduction:
    return reproduce_all(touchstone_data)


def _check(reproduction: Reproduction, test: str, what: str) -> Check:
    [check] = [c for c in reproduction.checks if c.test == test and what in c.what]
    return check


def test_t1_all_342_per_organ_means_on_totalsegmentator_743_bit_for_bit(reproduction: Reproduction) -> None:
    check = _check(reproduction, "T1", "per-organ means")
    assert (check.matched, check.total, check.bit_exact) == (342, 342, 342), check.mismatches


def test_t1_headline_is_the_published_nine_organ_average(reproduction: Reproduction) -> None:
    check = _check(reproduction, "T1", "headline")
    assert (check.matched, check.total) == (38, 38), check.mismatches


def test_t2_dap_atlas_means_under_the_first_533_rows_rule(reproduction: Reproduction) -> None:
    check = _check(reproduction, "T2", "DAP Atlas")
    assert (check.matched, check.total) == (270, 270), check.mismatches


def test_t2_duplicated_and_missing_rows_are_reported(reproduction: Reproduction) -> None:
    found = {
        (a.algorithm, a.metric, a.kind): len(a.cases)
        for dataset, a in reproduction.anomalies
        if dataset == "DAP Atlas"
    }
    assert found[("nnU-Net_STU-Net", "dsc", AnomalyKind.DUPLICATE_CONFLICTING)] == 354
    assert found[("Vision_Language_U-Net_CLIP", "dsc", AnomalyKind.DUPLICATE_IDENTICAL)] == 2
    assert found[("nnU-Net_STU-Net", "nsd", AnomalyKind.MISSING_CASES)] == 18
    missing_743 = {
        a.algorithm: len(a.cases)
        for dataset, a in reproduction.anomalies
        if dataset == "TotalSegmentator-743" and a.kind is AnomalyKind.MISSING_CASES and a.metric == "dsc"
    }
    assert missing_743 == {"nnU-Net_STU-Net_H": 87, "nnU-Net_STU-Net_L": 87}


def test_t2_platform_rule_refuses_the_duplicated_files_and_names_the_cases(touchstone_data: Path) -> None:
    with pytest.raises(DuplicateCaseError, match="AutoPET_0410759456_20805"):
        read_touchstone_folder(touchstone_data / "dapatlas_533", duplicates=DuplicatePolicy.ERROR)


@pytest.mark.parametrize(
    "what",
    [
        "TotalSegmentator-743 medians",
        "TotalSegmentator-743 2.5-97.5",
        "DAP Atlas (every row) medians",
        "DAP Atlas (every row) 2.5-97.5",
    ],
)
def test_t3_median_and_percentile_tables(reproduction: Reproduction, what: str) -> None:
    check = _check(reproduction, "T3", what)
    assert check.total == (380 if "TotalSegmentator" in what else 300)
    assert check.matched == check.total, check.mismatches


def test_t5_all_3920_significance_decisions_and_15_orders(reproduction: Reproduction) -> None:
    decisions = _check(reproduction, "T5", "significance decisions")
    orders = _check(reproduction, "T5", "model orders")
    assert (decisions.matched, decisions.total) == (3920, 3920), decisions.mismatches
    assert (orders.matched, orders.total) == (15, 15), orders.mismatches


def test_t5_with_todays_exact_p_values_one_published_cell_flips(touchstone_data: Path) -> None:
    [decisions, _] = reproduce_t5(touchstone_data, PValueMethod.EXACT)[0]
    assert decisions.total - decisions.matched == 1
    assert "TotalSegmentator_officialtest gall_bladder" in decisions.mismatches[0]


def test_command_prints_the_table_and_exits_zero(
    touchstone_data: Path, capsys: pytest.CaptureFixture[str], reproduction: Reproduction
) -> None:
    assert "ALL MATCHED" in format_report(reproduction)
    assert main([str(touchstone_data)]) == 0
    out = capsys.readouterr().out
    assert "342/342" in out and "3920/3920" in out and "duplicate rows, conflicting values" in out


def test_command_exits_two_without_data(tmp_path: Path) -> None:
    assert main([str(tmp_path)]) == 2


def test_absent_data_is_a_skip_locally_and_a_failure_under_ci(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOUCHSTONE_DATA_DIR", str(tmp_path / "nowhere"))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="nowhere"):
        require_touchstone_data()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        require_touchstone_data()
