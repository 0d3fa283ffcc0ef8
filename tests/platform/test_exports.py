"""Exports of a phase checked against the stored scores; the HD95/ASSD worst-case convention in aggregates."""

from __future__ import annotations

import io
import json
import zipfile

import pandas as pd
import pytest
from django.core.management import call_command

from benchmarks.models import Benchmark, Phase
from leaderboards import exports, services
from leaderboards.visibility import ANONYMOUS, STAFF
from submissions.models import CaseResult, Submission
from submissions.selectors import results_summary
from tests.factories import (
    CaseFactory,
    JobFactory,
    OrganFactory,
    PhaseFactory,
    SiteFactory,
    SubmissionFactory,
)
from tests.platform.scored_phase import ALGORITHMS, scored_phase

pytestmark = pytest.mark.django_db


def test_staff_export_holds_every_stored_score_and_the_snapshot(tmp_path):
    phase = scored_phase(cases_per_site=4, n_bootstrap=50)
    call_command("export_phase", phase.slug, str(tmp_path))
    stored = pd.DataFrame.from_records(
        CaseResult.objects.filter(submission__phase=phase).values_list(
            "submission_id", "case__case_id", "organ__name", "dsc", "nsd", "hd95_mm"
        ),
        columns=["submission_id", "case", "organ", "dsc", "nsd", "hd95_mm"],
    ).astype({"dsc": float, "nsd": float, "hd95_mm": float})
    key = ["submission_id", "case", "organ"]
    for frame in (pd.read_csv(tmp_path / "case_scores.csv"), pd.read_parquet(tmp_path / "case_scores.parquet")):
        merged = stored.merge(frame, on=key, suffixes=("", "_export"), validate="one_to_one")
        assert len(merged) == len(stored) == len(frame)
        for column in ("dsc", "nsd", "hd95_mm"):
            pd.testing.assert_series_equal(merged[column], merged[f"{column}_export"], check_names=False)

    snapshot, statistics = services.snapshot_current(phase=phase)
    board = pd.read_csv(tmp_path / "leaderboard.csv")
    assert list(board["team"] + " / " + board["algorithm"]) == [row["name"] for row in snapshot.rows]
    best = statistics.metrics["dsc"].leaderboard[0]
    assert board.loc[0, "dsc"] == pytest.approx(best.mean) and board.loc[0, "dsc_ci_low"] == pytest.approx(best.ci_low)
    assert json.loads((tmp_path / "snapshot.json").read_text())["statistics"] == snapshot.statistics
    figure = json.loads((tmp_path / "figures" / "dsc_forest.json").read_text())
    assert figure["data"] and "layout" in figure
    assert "not installed" in (tmp_path / "README.txt").read_text()  # PNG: says why there is none


def test_the_public_export_is_the_published_board_without_per_case_scores():
    phase = scored_phase(cases_per_site=4, n_bootstrap=50)
    Phase.objects.filter(pk=phase.pk).update(leaderboard_visibility=Phase.Visibility.EMBARGOED)
    phase.refresh_from_db()
    with pytest.raises(exports.ExportRefused, match="embargoed"):
        exports.phase_export(phase=phase, viewer=ANONYMOUS)
    published = services.snapshot_publish(phase_id=phase.pk)
    archive = zipfile.ZipFile(io.BytesIO(exports.phase_export_zip(phase=phase, viewer=ANONYMOUS)))
    names = {name.split("/", 1)[1] for name in archive.namelist()}
    assert {"leaderboard.csv", "leaderboard.json", "snapshot.json", "README.txt"} <= names
    assert not {"case_scores.csv", "case_scores.parquet"} & names
    record = json.loads(archive.read(f"{phase.slug}/leaderboard.json"))["publication"]
    assert record["content_sha256"] == published.content_sha256
    assert published.content_sha256 in archive.read(f"{phase.slug}/README.txt").decode()
    assert len(json.loads(archive.read(f"{phase.slug}/leaderboard.json"))["rows"]) == len(ALGORITHMS)
    assert "case_scores.csv" in exports.phase_export(phase=phase, viewer=STAFF)


def missed_liver(*, worst_mm: float | None) -> Submission:
    """One organ over three cases: HD95 10 and 20 mm, then missed (no distance); ASSD 1 and 2 mm, then missed."""
    benchmark = Benchmark.objects.create(
        slug="liver", name="Liver", leaderboard_distances=worst_mm is not None, distance_worst_mm=worst_mm
    )
    liver = OrganFactory(benchmark=benchmark, name="liver", label=5)
    site = SiteFactory(benchmark=benchmark)
    submission = SubmissionFactory(phase=PhaseFactory(benchmark=benchmark), state=Submission.State.COMPLETED)
    job = JobFactory(submission=submission)
    for dsc, hd95_mm, assd_mm, status in ((0.9, 10.0, 1.0, "scored"), (0.8, 20.0, 2.0, "scored"), (0.0, None, None, "missed")):
        CaseResult.objects.create(
            submission=submission, job=job, case=CaseFactory(site=site), organ=liver, status=status,
            dsc=dsc, nsd=dsc, hd95_mm=hd95_mm, assd_mm=assd_mm,
        )
    submission.phase.cases.set(benchmark.cases.all())
    return submission


def test_a_missed_organ_counts_at_the_benchmarks_worst_distance():
    submission = missed_liver(worst_mm=500.0)
    (organ,) = results_summary(submission=submission)["organs"]
    assert organ["hd95_mm"] == pytest.approx((10 + 20 + 500) / 3)
    assert organ["assd_mm"] == pytest.approx((1 + 2 + 500) / 3)
    assert organ["hd95_n_infinite"] == 1
    snapshot = services.snapshot_compute(phase_id=submission.phase_id, n_bootstrap=100)
    (row,) = snapshot.rows
    assert row["hd95"]["headline"] == pytest.approx((10 + 20 + 500) / 3)
    assert row["hd95"]["organs"]["liver"] == {"mean": pytest.approx(530 / 3), "n": 3, "n_worst": 1}
    assert row["hd95"]["worst_mm"] == 500.0


def test_without_a_worst_distance_a_missed_organ_is_counted_beside_the_mean(client):
    submission = missed_liver(worst_mm=None)
    (organ,) = results_summary(submission=submission)["organs"]
    assert (organ["hd95_mm"], organ["hd95_n_infinite"]) == (15.0, 1)
    (row,) = services.snapshot_compute(phase_id=submission.phase_id, n_bootstrap=100).rows
    assert "hd95" not in row  # not on the leaderboard without the benchmark's convention


def test_distances_on_the_leaderboard_need_the_worst_case_distance():
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="worst-case distance"):
        Benchmark(slug="b", name="B", leaderboard_distances=True).full_clean()
