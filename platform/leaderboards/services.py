"""Computes leaderboard snapshots off the request path: ranked rows plus the statistics."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import time

import numpy as np
import pandas as pd
from django.db.models import Count, Q
from django.utils import timezone

from benchmarks.models import Phase
from evaluator.scoring.reference_cache import EVALUATOR_VERSION
from evaluator.stats.compute import compute_snapshot_from_cubes
from evaluator.stats.snapshot import SCHEMA_VERSION, Snapshot, SnapshotSchemaError
from evaluator.stats.tables import score_cubes
from leaderboards import selectors
from leaderboards.models import LeaderboardSnapshot
from leaderboards.selectors import METRICS
from submissions.models import CaseResult, Submission
from submissions.selectors import distance_summary

# Case metadata the leaderboard breaks results down by (scalar values; "age" is banded by the statistics).
BREAKDOWN_FIELDS = ("manufacturer", "scanner_model", "sex", "age")

logger = logging.getLogger(__name__)


def leaderboard_rows(
    *, submissions, statistics: Snapshot | None, organs: list[str], distances: dict[int, dict] | None = None
) -> list[dict]:
    """One row per algorithm, read from the statistics (no second aggregation): per-organ means with N
    (NaN excluded), headline = unweighted mean of organ means; ordered and ranked as the statistics ranked
    the DSC headline (the benchmark's rank method; ties share a rank). `distances`: per submission, the
    HD95/ASSD columns of `distance_columns` (benchmarks that show them)."""
    failures = dict(
        CaseResult.objects.filter(submission__in=submissions)
        .values_list("submission_id")
        .annotate(n=Count("case", filter=~Q(refusal=""), distinct=True))
    )
    sections = {metric: statistics.metrics.get(metric) if statistics else None for metric in METRICS}
    boards = {
        metric: {entry.algorithm: entry for entry in section.leaderboard} if section else {}
        for metric, section in sections.items()
    }
    rows = []
    for submission in submissions:
        name = selectors.display_name(submission)
        headline = boards["dsc"].get(name)
        row = {
            "submission_id": submission.pk,
            "team": submission.team.name,
            "algorithm": submission.algorithm,
            "name": name,
            "completed_at": submission.completed_at.isoformat() if submission.completed_at else None,
            "rank": headline.rank if headline else None,
            "cases": statistics.n_cases - headline.n_missing_cases if statistics and headline else 0,
            "failed_cases": int(failures.get(submission.pk, 0)),
        }
        for metric, section in sections.items():
            entry = boards[metric].get(name)
            organ_stats = section.organ_stats.get(name, {}) if section else {}
            row[metric] = {
                "headline": entry.mean if entry else None,
                "organs": {
                    organ: {
                        "mean": organ_stats[organ].mean if organ in organ_stats else None,
                        "n": organ_stats[organ].n_cases if organ in organ_stats else 0,
                    }
                    for organ in organs
                },
            }
        rows.append(row)
    if distances is not None:
        for row in rows:
            row.update(distances.get(row["submission_id"], {}))
    order = {name: position for position, name in enumerate(boards["dsc"])}
    return sorted(rows, key=lambda row: (order.get(row["name"], len(order)), row["name"]))


def snapshot_compute(*, phase_id: int, n_bootstrap: int | None = None) -> LeaderboardSnapshot:
    """Rank the phase's latest submissions and compute their statistics; store them as a snapshot."""
    phase = Phase.objects.select_related("benchmark").get(pk=phase_id)
    started = time.perf_counter()
    submissions = selectors.ranked_submissions(phase=phase)
    organs = list(phase.benchmark.organs.values_list("name", flat=True))
    # Cubes straight from the coded read: no long table of 2 M rows to build and validate again.
    cubes = score_cubes(selectors.coded_scores(submissions=submissions), organs=organs)
    statistics = None
    if len(submissions) >= 1 and cubes:
        sites = dict(phase.benchmark.sites.values_list("code", "out_of_distribution"))
        metadata = pd.DataFrame.from_records(
            [
                {"case": case_id, **{key: meta.get(key) for key in BREAKDOWN_FIELDS if key in meta}}
                for case_id, meta in phase.cases.values_list("case_id", "metadata")
            ]
        )
        statistics = compute_snapshot_from_cubes(
            cubes,
            site_is_ood=sites,
            case_metadata=metadata,
            metrics=METRICS,
            n_bootstrap=n_bootstrap or phase.benchmark.bootstrap_samples,
            seed=phase.benchmark.bootstrap_seed,
            ci_method=phase.benchmark.ci_method,
            p_value_method=phase.benchmark.p_value_method,
            rank_method=phase.benchmark.rank_method,
        )
    distances = (
        distance_columns(submissions=submissions, organs=organs, worst_mm=phase.benchmark.distance_worst_mm)
        if phase.benchmark.leaderboard_distances
        else None
    )
    return LeaderboardSnapshot.objects.create(
        phase=phase,
        submission_ids=[s.pk for s in submissions],
        rows=leaderboard_rows(submissions=submissions, statistics=statistics, organs=organs, distances=distances),
        statistics=statistics.to_json() if statistics else {},
        compute_seconds=time.perf_counter() - started,
    )


def snapshot_current(*, phase: Phase) -> tuple[LeaderboardSnapshot | None, Snapshot | None]:
    """The phase's latest snapshot and its statistics, read by attribute (None: no snapshot, or no scores yet).

    A snapshot stored by another schema version (an older release) is recomputed and stored now, so an old
    snapshot either loads or is replaced, and a page never fails or shows blanks because of it.
    """
    stored = selectors.latest_snapshot(phase=phase)
    if stored is None:
        return stored, None
    try:
        return stored, selectors.snapshot_statistics(stored)  # parsed once per stored snapshot
    except SnapshotSchemaError as error:
        logger.warning("Recomputing leaderboard snapshot %s of phase %s: %s", stored.pk, phase.slug, error)
    fresh = snapshot_compute(phase_id=phase.pk)
    return fresh, selectors.snapshot_statistics(fresh)


def distance_columns(*, submissions, organs: list[str], worst_mm: float | None) -> dict[int, dict]:
    """Per submission: HD95 and ASSD per organ and headline (mean of organ means), with a missed organ or a
    case without valid output counted at the benchmark's worst-case distance (`Benchmark.distance_worst_mm`).
    One query for all the submissions (they share the phase, so `worst_mm`)."""
    by_submission: dict[int, list] = {submission.pk: [] for submission in submissions}
    for row in (
        CaseResult.objects.filter(submission__in=submissions)
        .order_by("submission_id", "organ__label", "case__case_id")
        .values_list("submission_id", "organ__name", "status", "hd95_mm", "assd_mm", named=True)
    ):
        by_submission[row.submission_id].append(row)
    columns: dict[int, dict] = {}
    for submission in submissions:
        rows = by_submission[submission.pk]
        columns[submission.pk] = {}
        for metric, field in (("hd95", "hd95_mm"), ("assd", "assd_mm")):
            means = distance_summary(rows, organs, field, worst_mm=worst_mm)
            organ_values = {
                organ: {
                    "mean": None if np.isnan(means.mean_mm[o]) else float(means.mean_mm[o]),
                    "n": int(means.n_finite[o] + means.n_infinite[o]),
                    "n_worst": int(means.n_infinite[o]),
                }
                for o, organ in enumerate(organs)
            }
            finite = [v["mean"] for v in organ_values.values() if v["mean"] is not None]
            columns[submission.pk][metric] = {
                "headline": sum(finite) / len(finite) if finite else None,
                "worst_mm": worst_mm,
                "organs": organ_values,
            }
    return columns


class PublicationRefused(Exception):
    """The phase cannot be published as it is; the message says what to change."""


def snapshot_content(snapshot: LeaderboardSnapshot) -> dict:
    """What a publication's hash covers: the numbers and how they were computed (not when)."""
    return {
        "phase": snapshot.phase.slug,
        "benchmark": snapshot.phase.benchmark.slug,
        "submission_ids": snapshot.submission_ids,
        "rows": snapshot.rows,
        "statistics": snapshot.statistics,
        "evaluator_version": snapshot.evaluator_version,
        "settings": snapshot.settings,
        "image_digests": snapshot.image_digests,
    }


def content_sha256(content: dict) -> str:
    """sha256 of the canonical JSON (sorted keys, no spaces, UTF-8, no NaN): anyone can recompute it."""
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def evaluator_version() -> str:
    try:
        package = importlib.metadata.version("touchstone")
    except importlib.metadata.PackageNotFoundError:  # a bare checkout
        package = "0"
    return f"touchstone {package}; snapshot schema {SCHEMA_VERSION}; scoring {EVALUATOR_VERSION}"


def phase_settings(phase: Phase) -> dict:
    """The benchmark and phase settings a publication records."""
    benchmark = phase.benchmark
    return {
        "benchmark": {
            field: getattr(benchmark, field)
            for field in (
                "slug", "name", "nsd_tolerance_mm", "nsd_definition", "bootstrap_samples", "bootstrap_seed",
                "ci_method", "p_value_method", "rank_method", "leaderboard_distances", "distance_worst_mm",
            )
        },
        "organs": {organ.name: {"label": organ.label, "nsd_tolerance_mm": organ.tolerance_mm}
                   for organ in benchmark.organs.all()},
        "phase": {
            field: getattr(phase, field)
            for field in ("slug", "name", "leaderboard_visibility", "public_row", "time_limit_per_case_s",
                          "memory_mb", "cpus", "gpu")
        },
        "cases": phase.cases.count(),
    }


def snapshot_publish(*, phase_id: int, user=None) -> LeaderboardSnapshot:
    """Recompute the phase's leaderboard and store it as a frozen, citable publication: evaluator version,
    settings, image digests and the sha256 of its canonical JSON. From then on everyone sees it."""
    phase = Phase.objects.select_related("benchmark").get(pk=phase_id)
    if phase.leaderboard_visibility == Phase.Visibility.PRIVATE:
        raise PublicationRefused(
            f"Phase '{phase.slug}' has a private leaderboard (teams see only their own rows). "
            "Set it to public or embargoed before publishing."
        )
    snapshot = snapshot_compute(phase_id=phase.pk)
    images = Submission.objects.filter(pk__in=snapshot.submission_ids).select_related("image")
    snapshot.evaluator_version = evaluator_version()
    snapshot.settings = json.loads(json.dumps(phase_settings(phase)))
    snapshot.image_digests = {
        str(s.pk): {"tar_sha256": s.image.sha256, "config_digest": s.image.docker_image_id} for s in images
    }
    snapshot.content_sha256 = content_sha256(snapshot_content(snapshot))
    snapshot.published_at = timezone.now()
    snapshot.published_by = user
    snapshot.save(update_fields=["evaluator_version", "settings", "image_digests", "content_sha256",
                                 "published_at", "published_by"])
    return snapshot
