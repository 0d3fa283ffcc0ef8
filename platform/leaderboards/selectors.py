"""Reads for leaderboards: which submissions are ranked, and their per-case scores as a long table."""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np
import pandas as pd
from django.core.cache import cache
from django.db import connection
from django.db.models import Avg
from psycopg import sql

from benchmarks.models import Case, Organ, Phase
from evaluator.stats.snapshot import Snapshot
from evaluator.stats.tables import CodedScores
from leaderboards.models import LeaderboardSnapshot, PublicPick
from submissions.models import CaseResult, Submission

METRICS = ("dsc", "nsd")


def ranked_submissions(*, phase: Phase) -> list[Submission]:
    """One completed, not disqualified submission per team: the one the phase's `public_row` setting picks
    (latest; best headline DSC; or the team's pick, else its latest), so a team cannot fill the board with
    names to probe the hidden set."""
    completed = list(
        Submission.objects.filter(phase=phase, state=Submission.State.COMPLETED, disqualification__isnull=True)
        .select_related("team", "image")
        .order_by("completed_at", "pk")
    )
    by_team: dict[int, list[Submission]] = {}
    for submission in completed:
        by_team.setdefault(submission.team_id, []).append(submission)
    if phase.public_row == Phase.PublicRow.BEST:
        headline = headline_dsc(submission_ids=[s.pk for s in completed])
        return [max(runs, key=lambda s: (headline.get(s.pk, -1.0), s.completed_at, s.pk)) for runs in by_team.values()]
    picks: dict[int, int] = {}
    if phase.public_row == Phase.PublicRow.TEAM_PICK:
        picks = dict(PublicPick.objects.filter(phase=phase).values_list("team_id", "submission_id"))
    chosen = []
    for team_id, runs in by_team.items():
        picked = next((s for s in runs if s.pk == picks.get(team_id)), None)
        chosen.append(picked or runs[-1])
    return chosen


def headline_dsc(*, submission_ids: list[int]) -> dict[int, float]:
    """Headline DSC per submission, as the leaderboard defines it: unweighted mean of the organ means over
    evaluable cases (a missed organ counts 0; an organ absent from the reference is skipped)."""
    organ_means = (
        CaseResult.objects.filter(submission_id__in=submission_ids, dsc__isnull=False)
        .values_list("submission_id", "organ_id")
        .annotate(mean=Avg("dsc"))
    )
    by_submission: dict[int, list[float]] = {}
    for submission_id, _, mean in organ_means:
        by_submission.setdefault(submission_id, []).append(float(mean))
    return {pk: sum(means) / len(means) for pk, means in by_submission.items()}


def display_name(submission: Submission) -> str:
    return f"{submission.team.name} / {submission.algorithm}"


def score_table(*, submissions: list[Submission]) -> pd.DataFrame:
    """Per-case scores, long: case, site, algorithm, organ, metric, value (NaN: organ not in the reference)."""
    names = {submission.pk: display_name(submission) for submission in submissions}
    rows = CaseResult.objects.filter(submission__in=submissions).values_list(
        "submission_id", "case__case_id", "case__site__code", "organ__name", *METRICS
    )
    records = []
    for submission_id, case_id, site, organ, *values in rows:
        for metric, value in zip(METRICS, values, strict=True):
            records.append((case_id, site, names[submission_id], organ, metric, value))
    table = pd.DataFrame.from_records(records, columns=["case", "site", "algorithm", "organ", "metric", "value"])
    table["value"] = table["value"].astype(float)
    return table


_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_RECORD = np.dtype([("case", ">i8"), ("organ", ">i8"), *[(metric, ">f8") for metric in METRICS]])


def score_table_copy(*, submissions: list[Submission]) -> pd.DataFrame:
    """`score_table`, read with one binary COPY (`coded_scores`): the same long table (same columns, dtypes and
    rows; row order may differ) without a Python object per database row. Falls back to `score_table` on
    databases other than PostgreSQL (the embedded SQLite of the demo)."""
    if connection.vendor != "postgresql" or not submissions:
        return score_table(submissions=submissions)
    coded = coded_scores(submissions=submissions)
    return coded.long_table() if len(coded) else score_table(submissions=[])


def coded_scores(*, submissions: list[Submission]) -> CodedScores:
    """The submissions' per-case scores as integer codes into name tables (`evaluator.stats.tables.CodedScores`):
    what the statistics need (`score_cubes`), without a long table of 2 million Python strings.

    On PostgreSQL one `COPY (SELECT ...) TO STDOUT (FORMAT BINARY)` straight into numpy arrays: PostgreSQL packs
    each submission's rows into one bytea of fixed-size binary records (case id, organ id, then each metric as
    big-endian float8, NULL sent as NaN), so the COPY sends one row per submission (libpq hands COPY data over
    row by row: a million rows would cost a Python call each) and each is parsed by a single `np.frombuffer`;
    names are looked up by integer codes. Elsewhere (SQLite) the ORM's rows, coded.
    """
    names = {submission.pk: display_name(submission) for submission in submissions}
    if not names:
        return _coded([], np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64), {}, {})
    if connection.vendor != "postgresql":
        rows = list(
            CaseResult.objects.filter(submission__in=submissions).values_list("submission_id", "case_id", "organ_id", *METRICS)
        )
        columns = list(zip(*rows, strict=True)) if rows else [()] * (3 + len(METRICS))
        submission_pks, case_pks, organ_pks = (np.asarray(column, dtype=np.int64) for column in columns[:3])
        values = {
            metric: np.array([np.nan if v is None else v for v in column], dtype=np.float64)
            for metric, column in zip(METRICS, columns[3:], strict=True)
        }
        return _coded(submissions, submission_pks, case_pks, organ_pks, values, names)
    column = {name: CaseResult._meta.get_field(name).column for name in ("submission", "case", "organ", *METRICS)}
    record = sql.SQL(" || ").join(
        [sql.SQL("int8send({}::int8)").format(sql.Identifier(column[name])) for name in ("case", "organ")]
        + [sql.SQL("float8send(COALESCE({}, 'NaN')::float8)").format(sql.Identifier(column[m])) for m in METRICS]
    )
    query = sql.SQL(
        "COPY (SELECT {submission}::int8, string_agg({record}, ''::bytea) FROM {table} "
        "WHERE {submission} = ANY({pks}) GROUP BY {submission}) TO STDOUT (FORMAT BINARY)"
    ).format(
        record=record,
        table=sql.Identifier(CaseResult._meta.db_table),
        submission=sql.Identifier(column["submission"]),
        pks=sql.Literal(sorted(names)),
    )
    connection.ensure_connection()
    with connection.connection.cursor() as cursor, cursor.copy(query) as copy:
        data = b"".join(bytes(block) for block in copy)
    parts = _copy_submission_records(data)
    submission_pks = np.repeat([pk for pk, _ in parts], [part.size for _, part in parts]).astype(np.int64)
    records = np.concatenate([part for _, part in parts]) if parts else np.empty(0, _RECORD)
    del data, parts  # the records are a copy
    values = {name: records[name].astype(np.float64) for name in METRICS}
    return _coded(
        submissions, submission_pks, records["case"].astype(np.int64), records["organ"].astype(np.int64), values, names
    )


def _coded(
    submissions: list[Submission],
    submission_pks: np.ndarray,
    case_pks: np.ndarray,
    organ_pks: np.ndarray,
    values: dict[str, np.ndarray],
    names: dict[int, str],
) -> CodedScores:
    """Code the primary keys of the records into dense name tables (one entry per key the records use)."""
    benchmarks = Phase.objects.filter(pk__in={submission.phase_id for submission in submissions}).values("benchmark")
    case_code, case_keys = _dense_codes(case_pks)
    organ_code, organ_keys = _dense_codes(organ_pks)
    algorithm_code, algorithm_keys = _dense_codes(submission_pks)
    cases = {
        pk: (case_id, site)
        for pk, case_id, site in Case.objects.filter(benchmark__in=benchmarks, pk__in=case_keys.tolist()).values_list(
            "pk", "case_id", "site__code"
        )
    }
    organs = dict(Organ.objects.filter(pk__in=organ_keys.tolist()).values_list("pk", "name"))
    if any(pk not in cases for pk in case_keys.tolist()) or any(pk not in organs for pk in organ_keys.tolist()):
        raise ValueError("a score names a case, organ or submission that does not exist")
    return CodedScores(
        case_names=_object_names([cases[pk][0] for pk in case_keys.tolist()]),
        case_sites=_object_names([cases[pk][1] for pk in case_keys.tolist()]),
        algorithm_names=_object_names([names[pk] for pk in algorithm_keys.tolist()]),
        organ_names=_object_names([organs[pk] for pk in organ_keys.tolist()]),
        case=case_code,
        algorithm=algorithm_code,
        organ=organ_code,
        values=values,
    )


def _dense_codes(pks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(code of each key, the distinct keys): codes 0..k-1 by a table indexed by key (no sort, no hashing per row)."""
    if not pks.size:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    if pks.min() < 0:
        raise ValueError("a score names a case, organ or submission that does not exist")
    used = np.zeros(int(pks.max()) + 1, dtype=bool)
    used[pks] = True
    keys = np.flatnonzero(used)
    lookup = np.zeros(used.size, dtype=np.int64)
    lookup[keys] = np.arange(keys.size)
    return lookup[pks], keys


def _object_names(names: list[str]) -> np.ndarray:
    array = np.empty(len(names), dtype=object)
    array[:] = names
    return array


def _copy_submission_records(data: bytes) -> list[tuple[int, np.ndarray]]:
    """(submission id, its records) from binary COPY rows of (int8, bytea of `_RECORD`s)."""
    if not data.startswith(_COPY_SIGNATURE) or data[-2:] != b"\xff\xff":
        raise ValueError("PostgreSQL did not send binary COPY data")
    position = 19 + int.from_bytes(data[15:19], "big")
    parts = []
    while position < len(data) - 2:
        fields, id_length = int.from_bytes(data[position : position + 2], "big"), int.from_bytes(
            data[position + 2 : position + 6], "big"
        )
        if fields != 2 or id_length != 8:
            raise ValueError("unexpected binary COPY layout")
        submission_pk = int.from_bytes(data[position + 6 : position + 14], "big", signed=True)
        length = int.from_bytes(data[position + 14 : position + 18], "big")
        start = position + 18
        if length % _RECORD.itemsize:
            raise ValueError("unexpected binary COPY layout")
        parts.append((submission_pk, np.frombuffer(data, _RECORD, length // _RECORD.itemsize, start)))
        position = start + length
    return parts


# Parsed statistics of the last few stored snapshots, per process. A stored snapshot's statistics never
# change (a recomputation is a new row), and `Snapshot` is a tree of frozen dataclasses, so one parsed
# object serves every request; parsing a Touchstone-sized snapshot costs ~0.4 s, far more than a page.
_PARSED_STATISTICS: OrderedDict[tuple[int, str], Snapshot] = OrderedDict()
_PARSED_STATISTICS_KEPT = 4
_PARSED_STATISTICS_LOCK = threading.Lock()


def _snapshot_key(snapshot: LeaderboardSnapshot) -> tuple[int, str]:
    return snapshot.pk, snapshot.created_at.isoformat() if snapshot.created_at else ""


def snapshot_statistics(snapshot: LeaderboardSnapshot) -> Snapshot | None:
    """`Snapshot.from_json(snapshot.statistics)`, parsed once per process per stored snapshot; None when the
    snapshot has no statistics. Raises `SnapshotSchemaError` as `Snapshot.from_json` does (never kept)."""
    key = _snapshot_key(snapshot)
    with _PARSED_STATISTICS_LOCK:
        parsed = _PARSED_STATISTICS.get(key)
        if parsed is not None:
            _PARSED_STATISTICS.move_to_end(key)
            return parsed
    if not snapshot.statistics:
        return None
    parsed = Snapshot.from_json(snapshot.statistics)
    with _PARSED_STATISTICS_LOCK:
        _PARSED_STATISTICS[key] = parsed
        while len(_PARSED_STATISTICS) > _PARSED_STATISTICS_KEPT:
            _PARSED_STATISTICS.popitem(last=False)
    return parsed


def snapshot_figures(*, snapshot: LeaderboardSnapshot, statistics: Snapshot, metric: str, organ: str | None) -> dict:
    """The leaderboard figures (`charts.leaderboard_figures`) of a stored snapshot's full statistics, built once
    per (snapshot, metric, organ) and kept in Django's cache: they depend on nothing else, and building them
    is most of a page's time. Only for a board that shows the statistics (`statistics` is `snapshot`'s own)."""
    snapshot_id, created = _snapshot_key(snapshot)
    key = f"touchstone:leaderboard-figures:{snapshot_id}:{created}:{metric}:{organ}"
    figures = cache.get(key)
    if figures is None:
        from leaderboards import charts  # plotly, only where figures are drawn

        figures = charts.leaderboard_figures(statistics, metric=metric, organ=organ)
        cache.set(key, figures, timeout=None)
    return figures


def latest_snapshot(*, phase: Phase) -> LeaderboardSnapshot | None:
    # The statistics (MBs of JSON) load only when read: `snapshot_statistics` usually has them parsed.
    return LeaderboardSnapshot.objects.filter(phase=phase).defer("statistics").order_by("-created_at", "-pk").first()


def published_snapshot(*, phase: Phase) -> LeaderboardSnapshot | None:
    """The phase's latest publication (frozen, citable), or None if it was never published."""
    return (
        LeaderboardSnapshot.objects.filter(phase=phase, published_at__isnull=False)
        .order_by("-published_at", "-pk")
        .first()
    )
