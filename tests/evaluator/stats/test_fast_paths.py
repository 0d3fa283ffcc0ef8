"""The fast paths of the snapshot give the numbers of the straightforward ones, float for float.

Vectorised signed-rank tests against the scalar `signed_rank_pvalues` (SciPy's formulas), the Mann-Whitney U
test against `scipy.stats.mannwhitneyu`, quantiles by partition against the full sort, bootstrap means of
several metrics at once against one at a time, and cubes built from coded scores (the platform's read)
against the long table: the whole snapshot's JSON is equal.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from evaluator.stats.bootstrap import (
    StratifiedBootstrap,
    bootstrap_means,
    bootstrap_means_many,
    percentile_interval,
    quantiles,
)
from evaluator.stats.breakdowns import mann_whitney_two_sided
from evaluator.stats.compute import compute_snapshot, compute_snapshot_from_cubes
from evaluator.stats.significance import PValueMethod, signed_rank_pvalues, signed_rank_pvalues_many
from evaluator.stats.tables import (
    CodedScores,
    DuplicateCaseError,
    ScoreTableError,
    score_cube,
    score_cubes,
    validate_scores,
)

ORGANS = ("liver", "spleen", "pancreas", "gall_bladder")


def _random_phase(seed: int, n_cases: int = 140) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, bool]]:
    """A phase as the platform stores it: every record scores dsc and nsd; absent organs (NaN), failed cases
    (0), tied and identical scores, an algorithm without rows for some cases (and another with rows for one
    organ only), 4 sites, case metadata."""
    rng = np.random.default_rng(seed)
    cases = [f"case{i:04d}" for i in rng.permutation(n_cases)]
    sites = {case: f"S{i % 4}" for i, case in enumerate(cases)}
    algorithms = {"alice / unet": 0.86, "bob / swin": 0.84, "carol / nnunet": 0.80, "dan / tiny": 0.70}
    rows = []
    for algorithm, level in algorithms.items():
        for case in cases:
            if algorithm == "dan / tiny" and case.endswith("7"):
                continue  # no rows: a case the algorithm never returned
            failed = rng.random() < 0.04
            for organ in ORGANS:
                if algorithm == "carol / nnunet" and case.endswith("3") and organ != "gall_bladder":
                    continue  # rows for one organ only: without it, no row for the case
                if organ == "gall_bladder" and case.endswith(("1", "2")):
                    dsc = nsd = np.nan  # absent from the reference
                elif failed:
                    dsc = nsd = 0.0
                else:
                    dsc = float(np.round(np.clip(level + rng.normal(0, 0.08), 0, 1), 2))  # ties
                    nsd = float(np.clip(dsc + rng.normal(0, 0.03), 0, 1))
                rows.append((case, sites[case], algorithm, organ, dsc, nsd))
    wide = pd.DataFrame(rows, columns=["case", "site", "algorithm", "organ", "dsc", "nsd"])
    metadata = pd.DataFrame(
        {
            "case": cases,
            "sex": rng.choice(["F", "M", None], n_cases),
            "age": rng.uniform(10, 90, n_cases),
            "manufacturer": rng.choice(["GE", "Siemens", "Philips"], n_cases),
        }
    )
    return wide, metadata, {"S0": False, "S1": False, "S2": True, "S3": True}


def _coded(wide: pd.DataFrame) -> CodedScores:
    codes = {column: pd.factorize(wide[column]) for column in ("case", "algorithm", "organ")}
    site_of = dict(zip(wide["case"], wide["site"], strict=True))
    names = {column: np.array(list(uniques), dtype=object) for column, (_, uniques) in codes.items()}
    return CodedScores(
        case_names=names["case"],
        case_sites=np.array([site_of[case] for case in names["case"]], dtype=object),
        algorithm_names=names["algorithm"],
        organ_names=names["organ"],
        case=codes["case"][0],
        algorithm=codes["algorithm"][0],
        organ=codes["organ"][0],
        values={metric: wide[metric].to_numpy(dtype=float) for metric in ("dsc", "nsd")},
    )


# --- signed-rank tests ----------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    st.integers(1, 5),
    st.integers(0, 150),
    st.integers(0, 10**6),
    st.sampled_from(list(PValueMethod)),
    st.sampled_from([0.0, 0.3, 0.9]),
)
def test_signed_rank_rows_give_the_scalar_p_values_exactly(
    n_rows: int, n_columns: int, seed: int, method: PValueMethod, missing: float
) -> None:
    rng = np.random.default_rng(seed)
    differences = np.round(
        rng.normal(0.01, 0.05, (n_rows, n_columns)), int(rng.integers(1, 4))
    )  # ties, zeros
    differences[rng.random((n_rows, n_columns)) < missing] = np.nan
    greater, less = signed_rank_pvalues_many(differences, method)
    for row in range(n_rows):
        paired = differences[row, ~np.isnan(differences[row])]
        assert (greater[row], less[row]) == signed_rank_pvalues(paired, method)  # bit for bit


def test_signed_rank_rows_cover_every_branch() -> None:
    rng = np.random.default_rng(4)
    differences = np.full((6, 80), np.nan)
    differences[0, :60] = rng.normal(0.02, 0.1, 60)  # normal approximation, no ties
    differences[1, :70] = np.round(rng.normal(0.02, 0.1, 70), 1)  # ties and zeros
    differences[2, :20] = rng.normal(0.1, 0.1, 20)  # small: exact paths
    differences[3, :40] = 0.0  # nothing to detect
    differences[4, :55] = np.r_[np.zeros(50), rng.normal(0, 1, 5)]  # mostly zeros
    for method in PValueMethod:
        greater, less = signed_rank_pvalues_many(differences, method)
        for row in range(6):
            paired = differences[row, ~np.isnan(differences[row])]
            assert (greater[row], less[row]) == signed_rank_pvalues(paired, method)
        assert (greater[3], less[3]) == (greater[5], less[5]) == (1.0, 1.0)
    exact = stats.wilcoxon(differences[2, :20], alternative="greater").pvalue
    assert signed_rank_pvalues_many(differences, PValueMethod.EXACT)[0][2] == exact


# --- Mann-Whitney U --------------------------------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 60), st.integers(1, 60), st.integers(0, 10**6), st.integers(0, 3))
def test_mann_whitney_is_scipys_exactly(n_a: int, n_b: int, seed: int, decimals: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = rng.normal(0.8, 0.1, n_a), rng.normal(0.78, 0.1, n_b)
    if decimals:
        a, b = np.round(a, decimals), np.round(b, decimals)  # ties within and across the samples
    expected = stats.mannwhitneyu(a, b, alternative="two-sided")
    assert mann_whitney_two_sided(np.sort(a), np.sort(b)) == (
        float(expected.statistic),
        float(expected.pvalue),
    )


def test_mann_whitney_of_identical_values_gives_no_evidence() -> None:
    same = np.full(12, 0.5)
    expected = stats.mannwhitneyu(same, same, alternative="two-sided")
    assert (
        mann_whitney_two_sided(same, same)
        == (float(expected.statistic), float(expected.pvalue))
        == (72.0, 1.0)
    )


# --- quantiles and bootstrap -----------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 400), st.integers(0, 10**6), st.floats(0, 1), st.booleans())
def test_quantiles_by_partition_equal_the_full_sort(n: int, seed: int, q: float, ties: bool) -> None:
    replicates = np.random.default_rng(seed).normal(size=(n, 3, 2))
    if ties:
        replicates = np.round(replicates, 1)
    by_sort = quantiles(replicates, np.full((3, 2), q))  # a per-column level: the sorting branch
    np.testing.assert_array_equal(quantiles(replicates, q), by_sort)
    low, high = percentile_interval(replicates, 0.9)
    np.testing.assert_array_equal(low, quantiles(replicates, np.full((3, 2), 0.05)))
    np.testing.assert_array_equal(high, quantiles(replicates, np.full((3, 2), 0.95)))


def test_bootstrap_means_of_several_metrics_equal_one_at_a_time() -> None:
    wide, _, _ = _random_phase(1, n_cases=60)
    cubes = score_cubes(_coded(wide), organs=ORGANS)
    plan = StratifiedBootstrap.for_cube(cubes["dsc"], n_resamples=600, seed=2)  # 3 blocks, one partial
    together = bootstrap_means_many([cubes["dsc"], cubes["nsd"]], plan)
    for metric, means in zip(("dsc", "nsd"), together, strict=True):
        alone = bootstrap_means(cubes[metric], plan)
        np.testing.assert_array_equal(means.organ_replicates, alone.organ_replicates)
        np.testing.assert_array_equal(means.headline_replicates, alone.headline_replicates)


# --- cubes from coded scores -----------------------------------------------------------------------


@pytest.mark.parametrize("organs", [None, ["spleen", "liver", "kidney_left"]])
def test_cubes_from_coded_scores_are_the_long_tables(organs: list[str] | None) -> None:
    wide, _, _ = _random_phase(2, n_cases=50)
    coded = _coded(wide.sample(frac=1.0, random_state=3))  # records in any order
    table = validate_scores(coded.long_table())
    algorithms = tuple(sorted(table["algorithm"].unique()))
    cubes = score_cubes(coded, organs=organs)
    for metric in ("dsc", "nsd"):
        expected = score_cube(table, metric, organs=organs, algorithms=algorithms, validated=True)
        cube = cubes[metric]
        assert (cube.metric, cube.algorithms, cube.cases, cube.organs) == (
            expected.metric,
            expected.algorithms,
            expected.cases,
            expected.organs,
        )
        np.testing.assert_array_equal(cube.sites, expected.sites)
        assert cube.sites.dtype == expected.sites.dtype
        np.testing.assert_array_equal(cube.values, expected.values)
        np.testing.assert_array_equal(cube.has_row, expected.has_row)


def test_snapshot_from_coded_scores_equals_the_long_table_path() -> None:
    wide, metadata, site_is_ood = _random_phase(5)
    coded = _coded(wide)
    options = dict(site_is_ood=site_is_ood, case_metadata=metadata, n_bootstrap=700, seed=11)
    old = compute_snapshot(coded.long_table(), organs=list(ORGANS), **options)
    new = compute_snapshot_from_cubes(score_cubes(coded, organs=ORGANS), **options)
    assert new.to_json() == old.to_json()
    assert new == old
    # the case count reaches the normal approximation of the significance maps and the breakdowns' tests
    assert new.n_cases > 50 and new.metrics["dsc"].breakdowns["site"].tests


def test_coded_scores_are_validated_as_the_long_table() -> None:
    wide, _, _ = _random_phase(6, n_cases=20)
    duplicated = _coded(pd.concat([wide, wide.iloc[[5]]], ignore_index=True))
    with pytest.raises(DuplicateCaseError) as error:
        score_cubes(duplicated)
    assert error.value.cases == (wide["case"].iloc[5],)
    infinite = wide.copy()
    infinite.loc[3, "nsd"] = np.inf
    with pytest.raises(ScoreTableError, match="Infinite scores for case"):
        score_cubes(_coded(infinite))
    blank = wide.copy()
    blank.loc[blank["algorithm"] == "bob / swin", "algorithm"] = " "
    with pytest.raises(ScoreTableError, match="'algorithm' has empty cells"):
        score_cubes(_coded(blank))
    coded = _coded(wide)
    sites = coded.case_sites.copy()
    sites[0] = "elsewhere"
    two_sites = CodedScores(
        case_names=np.r_[coded.case_names, coded.case_names[:1]],  # one case under a second code and site
        case_sites=np.r_[sites, coded.case_sites[:1]],
        algorithm_names=coded.algorithm_names,
        organ_names=coded.organ_names,
        case=np.where(np.arange(len(coded)) == 0, len(coded.case_names), coded.case),
        algorithm=coded.algorithm,
        organ=coded.organ,
        values=coded.values,
    )
    with pytest.raises(ScoreTableError, match="more than one site"):
        score_cubes(two_sites)
    assert score_cubes(_coded(wide.iloc[:0])) == {}
