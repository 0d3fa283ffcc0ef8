"""A phase's data as files, for papers and archives: only what the caller may see (see `visibility`).

Files: `leaderboard.csv` / `leaderboard.json` (rows with headline CIs and rank ranges), `snapshot.json` (the
full statistics, `Snapshot.to_json()`, with the publication record), `case_scores.csv` / `case_scores.parquet`
(per case and organ, only submissions whose per-case results the caller may see), `figures/<name>.json`
(plotly figure JSON) and `README.txt`. The dashboard, the API and `manage.py export_phase` all call
`phase_export`.
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import pandas as pd

from benchmarks.models import Phase
from evaluator import figures as figures_lib
from leaderboards import summaries
from leaderboards.visibility import Board, BoardScope, Viewer, board_for, can_see_case_results
from submissions.models import CaseResult, Submission

CASE_COLUMNS = (
    "submission_id", "team", "algorithm", "case", "site", "organ", "status", "dsc", "nsd", "hd95_mm", "assd_mm",
    "predicted_volume_ml", "refusal",
)
PNG_NOTE = (
    "Figures are plotly figure JSON (open with plotly.io.from_json or Plotly.newPlot). PNG/SVG need plotly's "
    "static export (kaleido and a browser), which is not installed on this platform."
)


class ExportRefused(Exception):
    """The caller may not see anything of this phase (embargoed or private, and not their rows)."""


def publication_record(board: Board) -> dict[str, Any]:
    snapshot = board.snapshot
    if snapshot is None:
        return {"published": False}
    return {
        "published": snapshot.is_published,
        "snapshot_id": snapshot.pk,
        "computed_at": snapshot.created_at.isoformat(),
        "published_at": snapshot.published_at.isoformat() if snapshot.published_at else None,
        "evaluator_version": snapshot.evaluator_version or None,
        "content_sha256": snapshot.content_sha256 or None,
        "settings": snapshot.settings or None,
        "image_digests": snapshot.image_digests or None,
    }


def leaderboard_rows(board: Board) -> list[dict[str, Any]]:
    """The board's rows with headline CIs and rank ranges (what the page and the API show)."""
    intervals, ranges = summaries.headline_intervals(board.statistics), summaries.rank_ranges(board.statistics)
    return [
        {
            **row,
            **{metric: {**row[metric], "ci": intervals.get(row["name"], {}).get(metric)} for metric in ("dsc", "nsd")},
            "rank_range": ranges.get(row["name"]),
        }
        for row in board.rows
    ]


def leaderboard_frame(rows: list[dict[str, Any]], organs: list[str]) -> pd.DataFrame:
    records = []
    for row in rows:
        record: dict[str, Any] = {
            "rank": row["rank"], "team": row["team"], "algorithm": row["algorithm"],
            "submission_id": row["submission_id"], "cases": row["cases"], "failed_cases": row["failed_cases"],
        }
        for metric in ("dsc", "nsd"):
            ci = row[metric].get("ci") or (None, None)
            record[f"{metric}"] = row[metric]["headline"]
            record[f"{metric}_ci_low"], record[f"{metric}_ci_high"] = ci
            for organ in organs:
                values = row[metric]["organs"].get(organ, {})
                record[f"{metric}_{organ}"] = values.get("mean")
                record[f"{metric}_{organ}_n"] = values.get("n")
        for metric in ("hd95", "assd"):
            if metric in row:
                record[f"{metric}_mm"] = row[metric]["headline"]
                record[f"{metric}_worst_mm"] = row[metric]["worst_mm"]
        rank_range = row.get("rank_range") or {}
        record["rank_low"], record["rank_high"] = rank_range.get("low"), rank_range.get("high")
        records.append(record)
    return pd.DataFrame.from_records(records)


def case_scores(*, viewer: Viewer, board: Board) -> pd.DataFrame:
    """Per case and organ of the board's submissions whose per-case results the viewer may see."""
    allowed = [
        s.pk
        for s in Submission.objects.filter(pk__in=board.submission_ids).select_related("phase")
        if can_see_case_results(viewer, s)
    ]
    rows = (
        CaseResult.objects.filter(submission_id__in=allowed)
        .order_by("submission_id", "case__case_id", "organ__label")
        .values_list(
            "submission_id", "submission__team__name", "submission__algorithm", "case__case_id", "case__site__code",
            "organ__name", "status", "dsc", "nsd", "hd95_mm", "assd_mm", "predicted_volume_ml", "refusal",
        )
    )
    frame = pd.DataFrame.from_records(list(rows), columns=list(CASE_COLUMNS))
    for column in ("dsc", "nsd", "hd95_mm", "assd_mm", "predicted_volume_ml"):
        frame[column] = frame[column].astype(float)
    return frame


def figure_files(board: Board) -> dict[str, bytes]:
    statistics = board.statistics
    if statistics is None or board.scope is not BoardScope.FULL:
        return {}
    files = {}
    for metric in statistics.metrics:
        figures = {
            "forest": figures_lib.forest_plot(statistics, metric),
            "rank_stability": figures_lib.rank_stability_plot(statistics, metric),
            "sites": figures_lib.site_heatmap(statistics, metric),
            "boxplots": figures_lib.organ_boxplots(statistics, metric),
        }
        for organ in statistics.metrics[metric].organs:
            figures[f"significance_{organ}"] = figures_lib.significance_heatmap(statistics, metric, organ)
        for name, figure in figures.items():
            files[f"figures/{metric}_{name}.json"] = figure.to_json().encode()
    return files


def phase_export(*, phase: Phase, viewer: Viewer) -> dict[str, bytes]:
    """{file name: bytes} of everything about `phase` that `viewer` may see; `ExportRefused` if nothing."""
    board = board_for(viewer, phase)
    if board.scope is BoardScope.NONE:
        raise ExportRefused(
            f"The leaderboard of phase '{phase.slug}' is {phase.get_leaderboard_visibility_display().lower()}; "
            "nothing of it can be exported until the organizers publish it."
        )
    organs = list(phase.benchmark.organs.values_list("name", flat=True))
    rows = leaderboard_rows(board)
    record = publication_record(board)
    files: dict[str, bytes] = {
        "leaderboard.json": _json({"phase": phase.slug, "publication": record, "rows": rows}),
        "leaderboard.csv": leaderboard_frame(rows, organs).to_csv(index=False).encode(),
    }
    if board.scope is BoardScope.FULL and board.snapshot is not None:
        files["snapshot.json"] = _json(
            {"phase": phase.slug, "publication": record, "statistics": board.snapshot.statistics}
        )
    cases = case_scores(viewer=viewer, board=board)
    if not cases.empty:
        files["case_scores.csv"] = cases.to_csv(index=False).encode()
        buffer = io.BytesIO()
        cases.to_parquet(buffer, index=False)
        files["case_scores.parquet"] = buffer.getvalue()
    files.update(figure_files(board))
    files["README.txt"] = _readme(phase, record, sorted(files)).encode()
    return files


def phase_export_zip(*, phase: Phase, viewer: Viewer) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in phase_export(phase=phase, viewer=viewer).items():
            archive.writestr(f"{phase.slug}/{name}", data)
    return buffer.getvalue()


def _json(data: Any) -> bytes:
    return json.dumps(data, indent=1, ensure_ascii=False, allow_nan=False, default=str).encode()


def _readme(phase: Phase, record: dict[str, Any], names: list[str]) -> str:
    lines = [f"Touchstone export of phase '{phase.slug}' ({phase}).", ""]
    if record.get("published"):
        lines += [
            f"Published leaderboard, frozen {record['published_at']}.",
            f"Evaluator: {record['evaluator_version']}",
            f"Content sha256: {record['content_sha256']} (sha256 of the canonical JSON of phase, benchmark,",
            "submission_ids, rows, statistics, evaluator_version, settings and image_digests: sorted keys,",
            "separators ',' and ':', UTF-8).",
        ]
    else:
        lines.append("Live leaderboard (not a publication): it changes as submissions complete.")
    lines += ["", PNG_NOTE, "", "Files:", *[f"  {name}" for name in names + ["README.txt"]]]
    return "\n".join(lines) + "\n"
