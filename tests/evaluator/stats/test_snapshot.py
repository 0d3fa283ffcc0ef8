from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from evaluator.stats.compute import compute_snapshot
from evaluator.stats.snapshot import SCHEMA_VERSION, Snapshot, SnapshotSchemaError
from evaluator.stats.tables import DuplicateCaseError, ScoreTableError


@pytest.fixture(scope="module")
def scores() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    cases = [f"case{i:03d}" for i in range(90)]
    sites = [f"site{i % 3}" for i in range(90)]
    skill = {"alice": 0.85, "bob": 0.80, "carol": 0.78}
    for metric in ("dsc", "nsd"):
        for algorithm, level in skill.items():
            for case, site in zip(cases, sites, strict=True):
                for organ in ("liver", "spleen", "gall_bladder"):
                    absent = organ == "gall_bladder" and case.endswith(("1", "2", "3"))
                    value = np.nan if absent else float(np.clip(level + rng.normal(0, 0.05), 0, 1))
                    rows.append((case, site, algorithm, organ, metric, value))
    return pd.DataFrame(rows, columns=["case", "site", "algorithm", "organ", "metric", "value"])


@pytest.fixture(scope="module")
def metadata() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame(
        {
            "case": [f"case{i:03d}" for i in range(90)],
            "sex": rng.choice(["f", "m"], 90),
            "age": rng.uniform(20, 90, 90),
            "scanner": rng.choice(["ge", "siemens", None], 90),
        }
    )


@pytest.fixture(scope="module")
def snapshot(scores: pd.DataFrame, metadata: pd.DataFrame) -> Snapshot:
    return compute_snapshot(
        scores,
        site_is_ood={"site0": False, "site1": False, "site2": True},
        case_metadata=metadata,
        n_bootstrap=300,
        seed=3,
    )


def test_snapshot_is_strict_json_and_reads_back_equal(snapshot: Snapshot) -> None:
    text = json.dumps(snapshot.to_json(), allow_nan=False)
    assert json.loads(text)["schema_version"] == SCHEMA_VERSION
    assert Snapshot.from_json(json.loads(text)) == snapshot


def test_another_schema_version_is_refused_by_name(snapshot: Snapshot) -> None:
    data = snapshot.to_json()
    with pytest.raises(SnapshotSchemaError, match="schema version 0"):
        Snapshot.from_json({**data, "schema_version": 0})
    with pytest.raises(SnapshotSchemaError, match="schema version None"):
        Snapshot.from_json({key: value for key, value in data.items() if key != "schema_version"})


def test_a_renamed_field_is_an_error_not_a_blank(snapshot: Snapshot) -> None:
    data = json.loads(json.dumps(snapshot.to_json()))
    entry = data["metrics"]["dsc"]["leaderboard"][0]
    entry["headline"] = entry.pop("mean")
    with pytest.raises(SnapshotSchemaError, match=r"leaderboard\[0\].*\['mean'\].*\['headline'\]"):
        Snapshot.from_json(data)


def test_a_mistyped_field_is_an_error(snapshot: Snapshot) -> None:
    data = json.loads(json.dumps(snapshot.to_json()))
    data["metrics"]["dsc"]["organ_stats"]["bob"]["liver"]["n_cases"] = "ninety"
    with pytest.raises(SnapshotSchemaError, match="organ_stats.bob.liver.n_cases should be int"):
        Snapshot.from_json(data)
    data = json.loads(json.dumps(snapshot.to_json()))
    data["n_cases"] = None
    with pytest.raises(SnapshotSchemaError, match="Snapshot.n_cases"):
        Snapshot.from_json(data)


def test_snapshot_records_its_parameters(snapshot: Snapshot) -> None:
    parameters = snapshot.parameters
    assert parameters.n_bootstrap == 300 and parameters.seed == 3
    assert parameters.ci_method == "percentile" and parameters.p_value_method == "exact"
    assert parameters.rank_method == "mean_then_rank" and parameters.metrics == ("dsc", "nsd")
    assert [s.out_of_distribution for s in snapshot.sites] == [False, False, True]


def test_leaderboard_rows_are_ranked_with_headline_and_ci(snapshot: Snapshot) -> None:
    rows = snapshot.metrics["dsc"].leaderboard
    assert [r.algorithm for r in rows][0] == "alice"
    assert [r.rank for r in rows] == [1, 2, 3]
    for row in rows:
        assert row.ci_low < row.mean < row.ci_high
        organ_means = [
            snapshot.metrics["dsc"].organ_stats[row.algorithm][o].mean
            for o in snapshot.metrics["dsc"].organs
        ]
        assert row.mean == pytest.approx(np.mean(organ_means))


def test_organ_stats_count_evaluable_cases(snapshot: Snapshot) -> None:
    stats = snapshot.metrics["nsd"].organ_stats["bob"]
    assert stats["liver"].n_cases == 90 and stats["gall_bladder"].n_cases == 63
    assert stats["liver"].ci_low < stats["liver"].mean < stats["liver"].ci_high


def test_significance_maps_for_every_organ(snapshot: Snapshot) -> None:
    maps = snapshot.metrics["dsc"].significance
    assert set(maps) == {"gall_bladder", "liver", "spleen"}
    liver = maps["liver"]
    assert liver.order[0] == "alice"
    assert liver.better[0][0] is None and liver.better[0][2] is True


def test_rank_stability_and_breakdowns_are_present(snapshot: Snapshot) -> None:
    section = snapshot.metrics["dsc"]
    stability = section.rank_stability
    assert stability.n_resamples == 300
    assert [sum(row) for row in stability.rank_counts] == [300, 300, 300]
    assert -1 <= stability.kendall_tau.median <= 1
    assert set(section.breakdowns) == {"site", "distribution", "sex", "age_band", "scanner"}
    site = section.breakdowns["site"]
    assert site.groups == ("site0", "site1", "site2") and sum(site.n_cases) == 90
    assert set(site.tests) == {"alice", "bob", "carol"}
    assert section.per_site.out_of_distribution == (False, False, True)
    differences = section.paired_differences
    assert differences.difference[0][0] == 0.0 and differences.difference[0][1] > 0


def test_same_seed_same_snapshot(scores: pd.DataFrame) -> None:
    one = compute_snapshot(scores, metrics=("dsc",), n_bootstrap=100, seed=5)
    two = compute_snapshot(scores.sample(frac=1.0, random_state=2), metrics=("dsc",), n_bootstrap=100, seed=5)
    assert one == two


def test_duplicate_rows_are_refused(scores: pd.DataFrame) -> None:
    with pytest.raises(DuplicateCaseError, match="case007"):
        compute_snapshot(pd.concat([scores, scores.iloc[[7 * 3]]]), n_bootstrap=50)


def test_absent_metrics_are_skipped_and_listed(scores: pd.DataFrame) -> None:
    result = compute_snapshot(scores.loc[scores["metric"] == "dsc"], n_bootstrap=50)
    assert result.parameters.metrics_absent == ("nsd",) and list(result.metrics) == ["dsc"]
    with pytest.raises(ScoreTableError, match="hd95"):
        compute_snapshot(scores, metrics=("hd95",), n_bootstrap=50)


def test_bca_and_other_rank_methods_run(scores: pd.DataFrame) -> None:
    result = compute_snapshot(
        scores,
        metrics=("dsc",),
        n_bootstrap=100,
        ci_method="bca",
        rank_method="rank_then_mean",
        p_value_method="normal",
    )
    assert result.metrics["dsc"].rank_stability.method == "rank_then_mean"
    json.dumps(result.to_json(), allow_nan=False)


def test_a_single_submission_on_one_site_still_gives_a_valid_snapshot() -> None:
    rows = [
        (f"c{i}", "S1", "solo", organ, "dsc", 0.8 + 0.01 * i)
        for i in range(5)
        for organ in ("liver", "spleen")
    ]
    table = pd.DataFrame(rows, columns=["case", "site", "algorithm", "organ", "metric", "value"])
    result = compute_snapshot(table, organs=["liver", "spleen", "aorta"], n_bootstrap=50, ci_method="bca")
    json.dumps(result.to_json(), allow_nan=False)
    section = result.metrics["dsc"]
    assert section.leaderboard[0].rank == 1
    assert section.organ_stats["solo"]["aorta"].mean is None
    assert section.breakdowns == {}
    assert section.rank_stability.kendall_tau.median is None
