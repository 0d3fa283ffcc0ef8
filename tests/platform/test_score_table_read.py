"""The COPY read of the score table returns exactly the ORM read's table, on PostgreSQL."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from django.db import connection

from leaderboards import selectors
from submissions.models import CaseResult
from tests.conftest import unavailable
from tests.platform.scored_phase import ALGORITHMS, scored_phase

pytestmark = pytest.mark.django_db


def _sorted(table: pd.DataFrame) -> pd.DataFrame:
    return table.sort_values(["algorithm", "case", "organ", "metric"]).reset_index(drop=True)


@pytest.fixture
def phase():
    if connection.vendor != "postgresql":
        unavailable("the COPY read is PostgreSQL's; set DATABASE_URL (make test does)")
    return scored_phase(cases_per_site=5, n_bootstrap=100)


def test_the_copy_read_returns_the_orm_table(phase) -> None:
    submissions = selectors.ranked_submissions(phase=phase)
    fast = selectors.score_table_copy(submissions=submissions)
    slow = selectors.score_table(submissions=submissions)
    assert list(fast.columns) == list(slow.columns)
    assert len(fast) == len(slow) == 2 * CaseResult.objects.filter(submission__in=submissions).count()
    pd.testing.assert_frame_equal(_sorted(fast), _sorted(slow), check_exact=True)
    assert set(fast["algorithm"]) == set(ALGORITHMS)
    # NULL (organ absent from the reference) comes back as NaN, and refused cases as 0.
    absent = CaseResult.objects.filter(submission__in=submissions, dsc__isnull=True).count()
    assert absent > 0 and fast["value"].isna().sum() == 2 * absent
    assert (fast["value"] == 0.0).sum() == (slow["value"] == 0.0).sum() > 0


def test_the_copy_read_of_one_submission_reads_only_its_rows(phase) -> None:
    [first, *_] = selectors.ranked_submissions(phase=phase)
    table = selectors.score_table_copy(submissions=[first])
    assert set(table["algorithm"]) == {selectors.display_name(first)}
    pd.testing.assert_frame_equal(
        _sorted(table), _sorted(selectors.score_table(submissions=[first])), check_exact=True
    )
    value = CaseResult.objects.filter(submission=first, dsc__isnull=False).first()
    row = table[(table["case"] == value.case.case_id) & (table["organ"] == value.organ.name) & (table["metric"] == "dsc")]
    assert math.isclose(row["value"].item(), value.dsc, rel_tol=0, abs_tol=0)


def test_no_submissions_give_an_empty_table(phase) -> None:
    assert selectors.score_table_copy(submissions=[]).empty
