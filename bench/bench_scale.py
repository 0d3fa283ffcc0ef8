"""Touchstone at scale, end to end: `python bench/bench_scale.py` (make bench-scale).

Fills a throwaway PostgreSQL database (default `touchstone_bench`, created and dropped here) with a
Touchstone-sized phase: 5,903 cases in 11 sites, 9 organs, 20 completed submissions, 1.06 M CaseResult
rows with realistic score distributions (per algorithm, organ, site and case; absent organs, missed
organs, refused cases), written by COPY. Then measures, each in a fresh interpreter so that its peak
memory is its own:

* the leaderboard snapshot end to end (`snapshot_compute`: read, statistics at B = 10,000, store),
  its peak RSS, the score-table read alone (COPY and ORM), and the stored snapshot's size;
* the leaderboard page (server time and bytes) and the API leaderboard (server time), cold (first
  request of a process) and warm (median of the next ones), through Django's test Client;
* scoring on a sample of realistic synthetic cases (`evaluator.synthetic`, 512x512 in-plane), per case:
  reading both files with nibabel only, `score_many` on the files, building the reference cache, and
  `score_many` with the cache; CPU seconds (child processes included) extrapolated to core-hours for the
  full phase (cases x submissions).

Each figure is printed with its target and whether it is met. Options: --help.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORGANS = ("aorta", "gall_bladder", "kidney_left", "kidney_right", "liver", "pancreas", "postcava", "spleen", "stomach")
# Mean DSC of a good algorithm per organ (Touchstone's spread: large organs easy, pancreas and gall bladder hard).
ORGAN_LEVEL = {
    "aorta": 0.90, "gall_bladder": 0.80, "kidney_left": 0.92, "kidney_right": 0.92, "liver": 0.96,
    "pancreas": 0.78, "postcava": 0.84, "spleen": 0.95, "stomach": 0.90,
}
TARGETS = {
    "scoring_core_hours": 8.0,
    "snapshot_s": 8.0,
    "snapshot_peak_gb": 0.6,
    "page_warm_ms": 50.0,
    "page_mb": 1.0,
    "api_warm_ms": 30.0,
}


def _parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=5903)
    parser.add_argument("--sites", type=int, default=11)
    parser.add_argument("--submissions", type=int, default=20)
    parser.add_argument("--resamples", type=int, default=10_000)
    parser.add_argument("--scoring-cases", type=int, default=3, help="realistic synthetic cases to score")
    parser.add_argument("--slices", type=int, default=300, help="slices of each synthetic case (512x512 in-plane; Touchstone CTs have ~300)")
    parser.add_argument("--warm-requests", type=int, default=15)
    parser.add_argument("--cores", type=int, default=2, help="CPU cores (and BLAS threads) to use")
    parser.add_argument(
        "--database",
        default=os.environ.get("TOUCHSTONE_BENCH_DATABASE_URL", "postgres://%2Fvar%2Frun%2Fpostgresql/touchstone_bench"),
        help="the throwaway database (dropped and created; its server's 'postgres' database must be reachable)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the bench database and files")
    parser.add_argument("--skip-scoring", action="store_true")
    parser.add_argument("--child", choices=["fill", "snapshot", "page", "api", "scoring"], help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# ---- the parent: database, children, report ------------------------------------------------------------


def main() -> None:
    args = _parse()
    if args.child:
        _run_child(args)
        return
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="touchstone-bench-scale-"))
    print(f"bench-scale: {args.cases} cases x {args.submissions} submissions x 9 organs, {args.sites} sites, "
          f"B = {args.resamples}; database {args.database}; files in {workdir}", flush=True)
    _database(args.database, drop_first=True)
    results: dict[str, dict] = {}
    try:
        for name in ("fill", "snapshot", "page", "api"):  # page and API each in a fresh process: cold is cold
            results[name] = _child(args, name, workdir)
        results["web"] = {**results.pop("page"), **results.pop("api")}
        if not args.skip_scoring:
            results["scoring"] = _child(args, "scoring", workdir)
    finally:
        if not args.keep:
            _database(args.database, drop_first=True, create=False)
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
    _report(args, results)
    print(f"\nbench-scale took {time.perf_counter() - started:.0f} s", flush=True)


def _database(url: str, *, drop_first: bool, create: bool = True) -> None:
    """Drop (and create) the bench database, connecting to its server's maintenance database."""
    import dj_database_url
    import psycopg
    from psycopg import sql

    config = dj_database_url.parse(url)
    name = config["NAME"]
    if not name or name in ("postgres", "template0", "template1"):
        raise SystemExit(f"refusing to drop the database {name!r}; name a throwaway one with --database")
    options = {"dbname": "postgres", "host": config.get("HOST") or None, "port": config.get("PORT") or None,
               "user": config.get("USER") or None, "password": config.get("PASSWORD") or None}
    with psycopg.connect(**{key: value for key, value in options.items() if value}, autocommit=True) as connection:
        if drop_first:
            connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if create:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _child(args: argparse.Namespace, name: str, workdir: Path) -> dict:
    print(f"\n== {name} ==", flush=True)
    environment = {
        **os.environ,
        "DATABASE_URL": args.database,
        "DATA_ROOT": str(workdir / "data"),
        "TOUCHSTONE_DEBUG": "true",
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "CELERY_BROKER_URL": os.environ.get("CELERY_BROKER_URL", "memory://"),
        "PYTHONPATH": f"{ROOT / 'platform'}:{ROOT}",
        "DJANGO_SETTINGS_MODULE": "touchstone_site.settings",
    }
    command = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--workdir", str(workdir)]
    command += [arg for arg in sys.argv[1:]]
    process = subprocess.run(command, env=environment, stdout=subprocess.PIPE, text=True, check=False)
    lines = process.stdout.splitlines()
    for line in lines:
        if not line.startswith("RESULT "):
            print(f"  {line}", flush=True)
    if process.returncode != 0:
        raise SystemExit(f"the {name} measurement failed (exit {process.returncode}); see above")
    return json.loads(next(line for line in reversed(lines) if line.startswith("RESULT "))[len("RESULT "):])


def _verdict(value: float, target: float) -> str:
    return "met" if value <= target else "NOT MET"


def _report(args: argparse.Namespace, results: dict[str, dict]) -> None:
    fill, snap, web = results["fill"], results["snapshot"], results["web"]
    print("\n== figures (this machine; targets from issue 14) ==")
    rows = [
        ("phase filled (COPY)", f"{fill['results']:,} CaseResult rows in {fill['seconds']:.1f} s", "", ""),
        ("score table read, COPY", f"{snap['read_copy_s']:.2f} s ({snap['long_rows']:,} long rows)", "", ""),
        ("score table read, ORM (before)", f"{snap['read_orm_s']:.2f} s", "", ""),
        (f"snapshot end to end (B = {args.resamples})", f"{snap['seconds']:.2f} s",
         f"< {TARGETS['snapshot_s']:g} s", _verdict(snap["seconds"], TARGETS["snapshot_s"])),
        ("  read / statistics / rows + JSON + store", " / ".join(
            f"{snap['parts'].get(key, 0.0):.2f}" for key in ("read", "statistics", "rest")) + " s", "", ""),
        ("  peak RSS after the read / after the statistics", " / ".join(
            f"{snap['parts'].get(f'peak_gb_after_{key}', 0.0):.3f}" for key in ("read", "statistics")) + " GB", "", ""),
        ("snapshot peak RSS", f"{snap['peak_gb']:.3f} GB", f"< {TARGETS['snapshot_peak_gb']:g} GB",
         _verdict(snap["peak_gb"], TARGETS["snapshot_peak_gb"])),
        ("  of which the interpreter + Django before reading", f"{snap['baseline_gb']:.3f} GB", "", ""),
        ("stored snapshot size", f"{snap['stored_mb']:.2f} MB JSON ({snap['stored_toast_mb']:.2f} MB in PostgreSQL)",
         "", ""),
        ("leaderboard page, cold", f"{web['page_cold_ms']:.0f} ms", "", ""),
        ("leaderboard page, warm", f"{web['page_warm_ms']:.1f} ms", f"< {TARGETS['page_warm_ms']:g} ms",
         _verdict(web["page_warm_ms"], TARGETS["page_warm_ms"])),
        ("leaderboard page weight", f"{web['page_mb']:.3f} MB", f"< {TARGETS['page_mb']:g} MB",
         _verdict(web["page_mb"], TARGETS["page_mb"])),
        ("API leaderboard, cold", f"{web['api_cold_ms']:.0f} ms", "", ""),
        ("API leaderboard, warm", f"{web['api_warm_ms']:.1f} ms ({web['api_kb']:.0f} kB)",
         f"< {TARGETS['api_warm_ms']:g} ms", _verdict(web["api_warm_ms"], TARGETS["api_warm_ms"])),
    ]
    if "scoring" in results:
        sc = results["scoring"]
        full = args.cases * args.submissions
        rows += [
            ("scoring sample", f"{sc['cases']} cases, {sc['shape']}, {sc['reference_mb']:.2f} MB reference .nii.gz", "", ""),
            ("read both files only (nibabel)", f"{sc['read_cpu_s']:.3f} core-s/case", "", ""),
            ("score, reference file", f"{sc['uncached_cpu_s']:.3f} core-s/case "
             f"= {sc['uncached_cpu_s'] * full / 3600:.1f} core-h for {full:,}", "", ""),
            ("build reference cache (once per case)", f"{sc['build_cpu_s']:.3f} core-s/case, "
             f"{sc['cache_mb']:.1f} MB/case on disk", "", ""),
            ("score, reference cache", f"{sc['cached_cpu_s']:.3f} core-s/case", "", ""),
            ("full phase with the cache", f"{sc['cached_cpu_s'] * full / 3600:.1f} core-h "
             f"(+ {sc['build_cpu_s'] * args.cases / 3600:.2f} core-h building)",
             f"<= {TARGETS['scoring_core_hours']:g} core-h",
             _verdict(sc["cached_cpu_s"] * full / 3600, TARGETS["scoring_core_hours"])),
            ("cached scores identical to uncached", "yes" if sc["identical"] else "NO", "identical",
             "met" if sc["identical"] else "NOT MET"),
        ]
    width = max(len(row[0]) for row in rows) + 2
    for name, value, target, verdict in rows:
        print(f"{name:<{width}}{value:<58}{target:<16}{verdict}")


# ---- children --------------------------------------------------------------------------------------------


def _run_child(args: argparse.Namespace) -> None:
    if args.child != "scoring":
        for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[variable] = str(args.cores)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[: args.cores]))
    sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]
    import django

    django.setup()
    measure = {"fill": _fill, "snapshot": _measure_snapshot, "page": _measure_web, "api": _measure_web,
               "scoring": _measure_scoring}[args.child]
    result = measure(args)
    print("RESULT " + json.dumps(result), flush=True)


def _fill(args: argparse.Namespace) -> dict:
    """Migrate, then a Touchstone-sized phase: small tables by the ORM, the big ones by COPY."""
    import numpy as np
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from benchmarks.models import Benchmark, Case, Organ, Phase, Site
    from submissions.models import AlgorithmImage, CaseResult, Job, Submission
    from teams.models import Team

    started = time.perf_counter()
    call_command("migrate", verbosity=0)
    print(f"migrated in {time.perf_counter() - started:.1f} s", flush=True)
    started = time.perf_counter()
    rng = np.random.default_rng(14)
    benchmark = Benchmark.objects.create(slug="touchstone-scale", name="Touchstone at scale", bootstrap_samples=args.resamples)
    organs = [Organ.objects.create(benchmark=benchmark, label=i, name=name) for i, name in enumerate(ORGANS, 1)]
    sites = [
        Site.objects.create(benchmark=benchmark, code=f"S{i:02d}", name=f"Hospital {i}", out_of_distribution=i >= 8)
        for i in range(args.sites)
    ]
    # Sites of unequal size, as in Touchstone (a few large hospitals, many small ones).
    weights = rng.dirichlet(np.full(args.sites, 1.5))
    site_of_case = rng.choice(args.sites, size=args.cases, p=weights)
    manufacturers = ("Siemens", "GE", "Philips", "Canon")
    Case.objects.bulk_create(
        [
            Case(
                benchmark=benchmark, site=sites[int(site_of_case[i])], case_id=f"case_{i:05d}",
                image_path=f"images/case_{i:05d}.nii.gz", reference_path=f"labels/case_{i:05d}.nii.gz",
                metadata={"manufacturer": manufacturers[int(site_of_case[i]) % 4], "sex": "FM"[i % 2],
                          "age": int(rng.integers(20, 90))},
            )
            for i in range(args.cases)
        ],
        batch_size=2000,
    )
    cases = list(Case.objects.filter(benchmark=benchmark).order_by("case_id").values_list("pk", "site_id"))
    phase = Phase.objects.create(benchmark=benchmark, slug="touchstone-scale-final", name="Final")
    through = Phase.cases.through
    _copy_rows(connection, through._meta.db_table, ["phase_id", "case_id"],
               [np.full(len(cases), phase.pk), np.array([pk for pk, _ in cases])])
    submissions, jobs = [], []
    for number in range(args.submissions):
        team = Team.objects.create(slug=f"team-{number:02d}", name=f"Team {number:02d}")
        image = AlgorithmImage.objects.create(team=team, sha256=f"{number:064x}", size_bytes=1, tar_path="x.tar")
        submission = Submission.objects.create(
            team=team, phase=phase, image=image, algorithm=f"algo-{number:02d}",
            state=Submission.State.COMPLETED, completed_at=timezone.now(),
        )
        submissions.append(submission)
        jobs.append(Job.objects.create(submission=submission, index=0, state=Job.State.SUCCEEDED))
    rows = _scores(rng, cases, sites, organs, submissions, jobs)
    _copy_rows(connection, CaseResult._meta.db_table, list(rows), list(rows.values()), model=CaseResult)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {CaseResult._meta.db_table}")
    count = CaseResult.objects.count()
    seconds = time.perf_counter() - started
    print(f"filled {count:,} CaseResult rows in {seconds:.1f} s", flush=True)
    return {"results": count, "seconds": seconds, "phase_id": phase.pk}


def _scores(rng, cases, sites, organs, submissions, jobs) -> dict:
    """Columns of CaseResult rows: DSC/NSD around per-algorithm, organ, site and case effects."""
    import numpy as np

    n_cases, n_organs, n_algorithms = len(cases), len(organs), len(submissions)
    site_index = {site.pk: i for i, site in enumerate(sites)}
    case_site = np.array([site_index[site_id] for _, site_id in cases])
    ood = np.array([site.out_of_distribution for site in sites])
    skill = np.sort(rng.normal(0.0, 0.03, n_algorithms))[::-1] - np.linspace(0, 0.06, n_algorithms)
    level = np.array([ORGAN_LEVEL[organ.name] for organ in organs])
    case_effect = rng.normal(0, 0.04, n_cases) - 0.05 * ood[case_site] + rng.normal(0, 0.02, len(sites))[case_site]
    shape = (n_algorithms, n_cases, n_organs)
    logit_mean = np.log(level / (1 - level))[None, None, :] + 6 * (skill[:, None, None] + case_effect[None, :, None])
    dsc = 1 / (1 + np.exp(-(logit_mean + rng.normal(0, 0.6, shape))))
    nsd = np.clip(dsc + 0.04 + rng.normal(0, 0.05, shape), 0, 1)
    absent = np.broadcast_to(rng.random((1, n_cases, n_organs)) < 0.03, shape)  # organ not in the reference
    missed = (rng.random(shape) < 0.004) & ~absent  # organ present, not predicted
    refused = np.broadcast_to(rng.random((n_algorithms, n_cases, 1)) < 0.002, shape) & ~absent  # no valid output
    dsc[missed | refused], nsd[missed | refused] = 0.0, 0.0
    dsc[absent], nsd[absent] = np.nan, np.nan
    status = np.where(absent, "absent", np.where(refused, "refused", np.where(missed, "missed", "scored")))
    hd95 = np.where(missed | refused | absent, np.nan, np.round(40 * (1 - dsc) ** 1.5 + rng.gamma(2, 0.8, shape), 3))
    volume = np.where(absent, np.nan, rng.gamma(4, 60, (1, n_cases, n_organs)).repeat(n_algorithms, 0))
    algorithm_of = np.arange(n_algorithms)[:, None, None]
    return {
        "submission_id": np.broadcast_to(np.array([s.pk for s in submissions])[algorithm_of], shape).ravel(),
        "job_id": np.broadcast_to(np.array([j.pk for j in jobs])[algorithm_of], shape).ravel(),
        "case_id": np.broadcast_to(np.array([pk for pk, _ in cases])[None, :, None], shape).ravel(),
        "organ_id": np.broadcast_to(np.array([o.pk for o in organs])[None, None, :], shape).ravel(),
        "status": status.ravel(),
        "dsc": dsc.ravel(),
        "nsd": nsd.ravel(),
        "hd95_mm": hd95.ravel(),
        "assd_mm": np.where(np.isnan(hd95), np.nan, hd95 / 3).ravel(),
        "reference_volume_ml": volume.ravel(),
        "predicted_volume_ml": np.where(np.isnan(dsc), np.nan, volume * np.nan_to_num(dsc, nan=1.0)).ravel(),
        "refusal": np.where(refused, "missing_output", "").ravel(),
        "message": np.where(refused, "No output for this case.", "").ravel(),
    }


def _copy_rows(connection, table: str, columns: list[str], values: list, *, model=None) -> None:
    """COPY columns of equal length into `table` as CSV (NaN as NULL); other model fields get their default."""
    import pandas as pd

    frame = pd.DataFrame(dict(zip(columns, values, strict=True)))
    if model is not None:  # fields added to the model later: their (constant) defaults
        for field in model._meta.concrete_fields:
            if field.primary_key or field.column in frame.columns:
                continue
            frame[field.column] = field.get_default()
    buffer = frame.to_csv(index=False, header=False, na_rep="\\N")
    connection.ensure_connection()
    names = ", ".join(f'"{column}"' for column in frame.columns)
    with connection.connection.cursor() as cursor:
        with cursor.copy(f"COPY \"{table}\" ({names}) FROM STDIN (FORMAT CSV, NULL '\\N')") as copy:
            copy.write(buffer)


def _peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def _rss_gb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e9


def _measure_snapshot(args: argparse.Namespace) -> dict:
    import pandas as pd  # noqa: F401 - imported before the baseline is taken, as the snapshot needs it
    from django.db import connection

    import evaluator.stats.snapshot  # noqa: F401
    from benchmarks.models import Phase
    from leaderboards import selectors, services

    phase = Phase.objects.get(slug="touchstone-scale-final")
    connection.ensure_connection()
    parts = _timing_wrappers(services)
    baseline = _rss_gb()
    started = time.perf_counter()
    snapshot = services.snapshot_compute(phase_id=phase.pk, n_bootstrap=args.resamples)
    seconds = time.perf_counter() - started
    parts = {**parts, "rest": seconds - parts.get("read", 0.0) - parts.get("statistics", 0.0)}  # a copy
    peak = _peak_gb()
    print(f"snapshot {snapshot.pk}: {seconds:.2f} s, peak RSS {peak:.3f} GB", flush=True)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT octet_length(statistics::text) + octet_length(rows::text), "
            "pg_column_size(statistics) + pg_column_size(rows) FROM leaderboards_leaderboardsnapshot WHERE id = %s",
            [snapshot.pk],
        )
        stored_bytes, toast_bytes = cursor.fetchone()
    submissions = selectors.ranked_submissions(phase=phase)
    started = time.perf_counter()
    table = selectors.score_table_copy(submissions=submissions)
    read_copy = time.perf_counter() - started
    long_rows = len(table)
    del table
    started = time.perf_counter()
    selectors.score_table(submissions=submissions)
    read_orm = time.perf_counter() - started
    print(f"score table: COPY {read_copy:.2f} s, ORM {read_orm:.2f} s", flush=True)
    return {
        "seconds": seconds, "peak_gb": peak, "baseline_gb": baseline, "snapshot_id": snapshot.pk,
        "stored_mb": stored_bytes / 1e6, "stored_toast_mb": toast_bytes / 1e6, "read_copy_s": read_copy,
        "read_orm_s": read_orm, "long_rows": long_rows, "parts": parts,
    }


def _timing_wrappers(services) -> dict[str, float]:
    """Time the parts of `snapshot_compute` (read, statistics) by wrapping the functions it calls."""
    parts: dict[str, float] = {}

    def timed(name, function):
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                parts[name] = parts.get(name, 0.0) + time.perf_counter() - started
                parts[f"peak_gb_after_{name}"] = _peak_gb()
        return wrapper

    # the read: the binary COPY into coded arrays, then the per-metric cubes (validated) built from them
    services.selectors.coded_scores = timed("read", services.selectors.coded_scores)
    services.score_cubes = timed("read", services.score_cubes)
    services.compute_snapshot_from_cubes = timed("statistics", services.compute_snapshot_from_cubes)
    return parts


def _measure_web(args: argparse.Namespace) -> dict:
    from django.test import Client

    from teams import services as team_services
    from teams.models import Team

    token = team_services.token_issue(team=Team.objects.get(slug="team-00"), name="bench")
    client = Client(headers={"Authorization": f"Bearer {token}"})  # a team reading the board, as the CLI does
    figures = {}
    urls = {"page": "/phases/touchstone-scale-final/", "api": "/api/v1/phases/touchstone-scale-final/leaderboard/"}
    name = args.child  # one of the two, each measured in its own fresh process
    url = urls[name]
    times = []
    size = 0
    for _ in range(1 + args.warm_requests):
        started = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"{url} answered {response.status_code}")
        size = len(response.content)
    missing = [f"algo-{number:02d}" for number in range(args.submissions)
               if f"algo-{number:02d}".encode() not in response.content]
    if missing:  # a page without the board would be measured fast and mean nothing
        raise SystemExit(f"{url} does not show {missing}")
    figures[f"{name}_cold_ms"] = times[0]
    figures[f"{name}_warm_ms"] = statistics.median(times[1:])
    figures[f"{name}_bytes"] = size
    print(f"{url}: cold {times[0]:.0f} ms, warm {figures[f'{name}_warm_ms']:.1f} ms, {size:,} bytes", flush=True)
    if "page_bytes" in figures:
        figures["page_mb"] = figures["page_bytes"] / 1e6
    if "api_bytes" in figures:
        figures["api_kb"] = figures["api_bytes"] / 1e3
    return figures


# ---- scoring -------------------------------------------------------------------------------------------


def _write_scoring_cases(args: argparse.Namespace, folder: Path) -> list[tuple[Path, Path]]:
    """Realistic synthetic references (one per default site, in turn) and perturbed predictions of them."""
    from dataclasses import replace

    import nibabel as nib

    from evaluator.synthetic import benchmark as synthetic

    sites = synthetic.default_sites("realistic")
    pairs = []
    for index in range(args.scoring_cases):
        site = sites[index % len(sites)]
        length_mm = site.shape[2] * site.spacing_mm[2]
        site = replace(site, shape=(512, 512, args.slices),
                       spacing_mm=(site.spacing_mm[0], site.spacing_mm[1], round(length_mm / args.slices, 4)))
        started = time.perf_counter()
        case = synthetic.generate_case(site, index)
        reference = folder / f"{case.case_id}_reference.nii.gz"
        prediction = folder / f"{case.case_id}_prediction.nii.gz"
        nib.save(case.labels_nifti(), reference)
        nib.save(nib.Nifti1Image(_perturbed(case.labels, case.spacing_mm, index), case.affine), prediction)
        print(f"case {case.case_id} {case.labels.shape} written in {time.perf_counter() - started:.1f} s", flush=True)
        pairs.append((reference, prediction))
    return pairs


def _perturbed(labels, spacing_mm, seed: int):
    """A plausible prediction: each organ's boundary moved by ~1-2 mm with smooth noise, shifted a voxel,
    one organ missed in one case out of three, stray false-positive blobs."""
    import numpy as np
    from scipy import ndimage

    rng = np.random.default_rng(seed + 100)
    prediction = np.zeros(labels.shape, np.uint8, order="F")
    boxes = ndimage.find_objects(labels)
    for label, box in enumerate(boxes, start=1):
        if box is None or (seed % 3 == 0 and label == 2):
            continue
        box = tuple(slice(max(s.start - 6, 0), min(s.stop + 6, n)) for s, n in zip(box, labels.shape, strict=True))
        organ = labels[box] == label
        signed = ndimage.distance_transform_edt(~organ, sampling=spacing_mm) - ndimage.distance_transform_edt(
            organ, sampling=spacing_mm
        )
        noise = ndimage.gaussian_filter(rng.normal(0, 1, organ.shape), 3) * 8
        mask = signed < rng.uniform(-1.2, 1.2) + noise
        mask = np.roll(mask, tuple(int(v) for v in rng.integers(-1, 2, 3)), axis=(0, 1, 2))
        target = prediction[box]
        target[mask & (target == 0)] = label
    for _ in range(8):
        centre = rng.integers(10, np.array(labels.shape) - 10)
        radius = rng.integers(2, 5, 3)
        prediction[tuple(slice(c - r, c + r) for c, r in zip(centre, radius, strict=True))] = rng.integers(1, 10)
    return prediction


def _cpu_with_children() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _best_cpu(repeat: int, work) -> tuple[float, object]:
    """The least CPU seconds (children included) of `repeat` runs, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        started = _cpu_with_children()
        result = work()
        best = min(best, _cpu_with_children() - started)
    return best, result


def _measure_scoring(args: argparse.Namespace) -> dict:
    import math

    import nibabel as nib
    import numpy as np

    from evaluator.scoring import reference_cache
    from evaluator.scoring.cases import score_many
    from evaluator.scoring.organs import TOUCHSTONE_ORGANS

    folder = Path(args.workdir) / "scoring"
    folder.mkdir(parents=True, exist_ok=True)
    pairs = _write_scoring_cases(args, folder)
    cache_root = folder / "cache"
    totals = {"read": 0.0, "uncached": 0.0, "build": 0.0, "cached": 0.0}
    identical = True
    cache_bytes = 0
    for number, (reference, prediction) in enumerate(pairs):
        def read_both(reference=reference, prediction=prediction):
            return [np.asanyarray(nib.load(path).dataobj) for path in (reference, prediction)]

        read, _ = _best_cpu(3, read_both)
        uncached, [plain] = _best_cpu(3, lambda reference=reference, prediction=prediction: score_many(
            [(reference, prediction)], TOUCHSTONE_ORGANS, processes=1))
        build, entry = _best_cpu(1, lambda reference=reference, number=number: reference_cache.build(
            cache_root, "bench", f"case{number}", reference))

        def cached_score(reference=reference, prediction=prediction, number=number):
            found = reference_cache.lookup(cache_root, "bench", f"case{number}", reference)
            assert found is not None
            return score_many([(reference, prediction)], TOUCHSTONE_ORGANS, processes=1, reference_caches=[found])

        cached, [fast] = _best_cpu(3, cached_score)
        same = plain.refusal == fast.refusal and all(
            all(a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))
                for a, b in zip(vars(x).values(), vars(y).values(), strict=True))
            for x, y in zip(plain.organs, fast.organs, strict=True)
        )
        identical &= same
        cache_bytes += sum(path.stat().st_size for path in Path(entry).iterdir())
        dsc = ", ".join(f"{organ.dsc:.2f}" for organ in plain.organs)
        print(f"{reference.name}: read {read:.3f}, score {uncached:.3f}, build {build:.3f}, cached {cached:.3f} "
              f"core-s; DSC {dsc}; identical {same}", flush=True)
        for key, value in (("read", read), ("uncached", uncached), ("build", build), ("cached", cached)):
            totals[key] += value
    count = len(pairs)
    return {
        "cases": count,
        "shape": f"512x512x{args.slices}",
        "reference_mb": sum(reference.stat().st_size for reference, _ in pairs) / count / 1e6,
        "read_cpu_s": totals["read"] / count,
        "uncached_cpu_s": totals["uncached"] / count,
        "build_cpu_s": totals["build"] / count,
        "cached_cpu_s": totals["cached"] / count,
        "cache_mb": cache_bytes / count / 1e6,
        "identical": identical,
    }


if __name__ == "__main__":
    main()
