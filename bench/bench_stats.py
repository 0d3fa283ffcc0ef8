"""Benchmark of the leaderboard statistics: `python bench/bench_stats.py` (make bench-stats).

Synthetic scores for 6,000 cases x 9 organs x 20 algorithms in 11 sites, B = 10,000:
times our bootstrap (CIs + rank distributions) against a straightforward per-resample
numpy loop (run on a smaller B and scaled), then the whole snapshot (aggregates, CIs,
9 significance maps, rank stability, breakdowns). The target: snapshot < 60 s on
2 cores, peak memory < 4 GB. Threads are pinned to `--cores` before numpy loads.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=6000)
    parser.add_argument("--organs", type=int, default=9)
    parser.add_argument("--algorithms", type=int, default=20)
    parser.add_argument("--sites", type=int, default=11)
    parser.add_argument("--resamples", type=int, default=10_000)
    parser.add_argument(
        "--naive-resamples", type=int, default=200, help="B of the per-resample loop, scaled up"
    )
    parser.add_argument("--cores", type=int, default=2, help="CPU cores (and BLAS threads) to use")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


ARGS = _parse()
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = str(ARGS.cores)
if hasattr(os, "sched_setaffinity"):
    _available = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, set(_available[: ARGS.cores]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import resource  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from evaluator.scoring.organs import TOUCHSTONE_ORGAN_NAMES as TOUCHSTONE_ORGANS  # noqa: E402
from evaluator.stats.bootstrap import (  # noqa: E402
    StratifiedBootstrap,
    bootstrap_means,
    mean_intervals,
    percentile_interval,
)
from evaluator.stats.compute import compute_snapshot  # noqa: E402
from evaluator.stats.ranking import rank_descending, rank_stability  # noqa: E402
from evaluator.stats.tables import score_cube  # noqa: E402


def synthetic_scores(cases: int, organs: int, algorithms: int, sites: int, seed: int) -> pd.DataFrame:
    """DSC-like scores in [0, 1]: algorithm skill + site shift + case difficulty + noise.

    About 15% of (case, organ) cells are not evaluable (NaN, the same for every
    algorithm, as a ground-truth property); 1% of (algorithm, case) are failures scored 0.
    """
    rng = np.random.default_rng(seed)
    organ_names = list(TOUCHSTONE_ORGANS[:organs]) + [
        f"organ_{i}" for i in range(organs - len(TOUCHSTONE_ORGANS))
    ]
    site_of_case = rng.integers(0, sites, cases)
    skill = rng.normal(0.0, 0.02, algorithms)
    organ_level = rng.uniform(0.7, 0.95, organs)
    site_shift = rng.normal(0.0, 0.03, sites)
    difficulty = rng.normal(0.0, 0.05, (cases, organs))
    evaluable = rng.random((cases, organs)) > 0.15
    values = (
        organ_level[None, None, :]
        + skill[:, None, None]
        + site_shift[site_of_case][None, :, None]
        + difficulty[None]
        + rng.normal(0.0, 0.05, (algorithms, cases, organs))
    )
    values = np.clip(values, 0.0, 1.0)
    values[rng.random((algorithms, cases)) < 0.01] = 0.0
    values = np.where(evaluable[None], values, np.nan)
    a, c, o = np.meshgrid(np.arange(algorithms), np.arange(cases), np.arange(organs), indexing="ij")
    case_names = np.array([f"case{i:05d}" for i in range(cases)], dtype=object)
    return pd.DataFrame(
        {
            "case": case_names[c.ravel()],
            "site": np.array([f"site{i:02d}" for i in range(sites)], dtype=object)[site_of_case[c.ravel()]],
            "algorithm": np.array([f"algorithm{i:02d}" for i in range(algorithms)], dtype=object)[a.ravel()],
            "organ": np.array(organ_names, dtype=object)[o.ravel()],
            "metric": "dsc",
            "value": values.ravel(),
        }
    )


def naive_loop(cube, plan: StratifiedBootstrap, n_resamples: int) -> tuple[np.ndarray, np.ndarray]:
    """One resample at a time: gather the drawn cases, nanmean per organ, headline, ranks."""
    organ = np.empty((n_resamples, len(cube.algorithms), len(cube.organs)))
    ranks = np.empty((n_resamples, len(cube.algorithms)), dtype=int)
    for r, indices in enumerate(plan.iter_case_indices(n_resamples)):
        sample = cube.values[:, indices, :]
        with np.errstate(invalid="ignore"):
            organ[r] = np.nanmean(sample, axis=1)
        ranks[r] = rank_descending(np.nanmean(organ[r], axis=1))
    percentile_interval(organ)
    return organ, ranks


def main() -> None:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"cores: {ARGS.cores} (affinity {sorted(os.sched_getaffinity(0))}); numpy {np.__version__}; "
        f"load average before: {load} (other work on these cores slows every timing)"
    )
    started = time.perf_counter()
    scores = synthetic_scores(ARGS.cases, ARGS.organs, ARGS.algorithms, ARGS.sites, ARGS.seed)
    print(
        f"synthetic table: {len(scores):,} rows ({ARGS.cases} cases x {ARGS.organs} organs x "
        f"{ARGS.algorithms} algorithms, {ARGS.sites} sites) in {time.perf_counter() - started:.1f} s"
    )
    cube = score_cube(scores, "dsc")
    plan = StratifiedBootstrap.for_cube(cube, n_resamples=ARGS.resamples, seed=ARGS.seed)

    started = time.perf_counter()
    means = bootstrap_means(cube, plan)
    mean_intervals(means, cube)
    stability = rank_stability(cube, plan, means=means)
    ours = time.perf_counter() - started
    print(f"ours  (CIs + rank distributions), B = {ARGS.resamples:,}: {ours:8.2f} s")

    b = min(ARGS.naive_resamples, ARGS.resamples)
    started = time.perf_counter()
    naive_means, naive_ranks = naive_loop(cube, plan, b)
    naive = (time.perf_counter() - started) * ARGS.resamples / b
    print(f"naive per-resample loop, B = {b:,}, scaled to {ARGS.resamples:,}: {naive:8.2f} s")
    print(f"speed-up ours vs naive: {naive / ours:.1f}x")
    agree = np.nanmax(np.abs(naive_means - means.organ_replicates[:b]))
    same_ranks = bool((naive_ranks == stability.bootstrap_ranks[:b]).all())
    print(
        f"same draws, same answers: max |organ mean difference| = {agree:.2e}; ranks identical: {same_ranks}"
    )

    started = time.perf_counter()
    snapshot = compute_snapshot(
        scores,
        metrics=("dsc",),
        n_bootstrap=ARGS.resamples,
        seed=ARGS.seed,
        site_is_ood={f"site{i:02d}": i >= ARGS.sites - 2 for i in range(ARGS.sites)},
    )
    whole = time.perf_counter() - started
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(
        f"whole snapshot (validation, aggregates, CIs, {len(snapshot.metrics['dsc'].significance)} "
        f"significance maps, rank stability, paired differences, breakdowns): {whole:8.2f} s"
    )
    print(f"peak RSS of this process: {peak_gb:.2f} GB")
    print(
        f"targets: snapshot < 60 s: {'ok' if whole < 60 else 'MISSED'}; "
        f"peak memory < 4 GB: {'ok' if peak_gb < 4 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
