"""The public pages in a real headless Chromium (Debian's), served by the live Django server on PostgreSQL.

The statistics are computed by the real snapshot task code from stored per-case scores; the test checks
that plotly drew every figure and that the numbers on the page are the snapshot's numbers.
Screenshots are written to pytest's tmp_path (and to $TOUCHSTONE_SCREENSHOTS when set, for people to look).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from leaderboards.selectors import latest_snapshot
from submissions.models import Submission
from tests.platform.conftest import sign_in_member
from tests.platform.scored_phase import ALGORITHMS, scored_phase

pytestmark = pytest.mark.django_db(transaction=True)


def screenshot(page, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if target := os.environ.get("TOUCHSTONE_SCREENSHOTS"):
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / path.name)
        # Readable slices of a long page, one screen each.
        height = page.evaluate("document.body.scrollHeight")
        for number, top in enumerate(range(0, height, 1000)):
            clip = {"x": 0, "y": top, "width": 1400, "height": min(1000, height - top)}
            page.screenshot(path=str(Path(target) / f"{name}-{number}.png"), full_page=True, clip=clip)


def drawn(page, selector: str) -> bool:
    """plotly has drawn the figure inside `selector` (its SVG exists and has a size)."""
    box = page.locator(f"{selector} .main-svg").first.bounding_box()
    return box is not None and box["width"] > 100 and box["height"] > 100


def test_leaderboard_shows_confidence_intervals_significance_and_rank_stability(live_server, page, tmp_path):
    phase = scored_phase()
    snapshot = latest_snapshot(phase=phase)
    dsc = snapshot.statistics["metrics"]["dsc"]
    page.goto(f"{live_server.url}/phases/{phase.slug}/")
    page.wait_for_selector("#significance .main-svg")
    screenshot(page, tmp_path, "leaderboard")

    assert page.errors == []
    for figure in ("forest", "forest-organ", "significance", "rank-stability", "sites", "boxplots"):
        assert drawn(page, f"#{figure}"), f"figure {figure} was not drawn"

    # The table's order, headline CIs and rank ranges are the snapshot's.
    names = page.locator("#leaderboard tr td:nth-child(2)").all_inner_texts()
    assert names == [row["name"] for row in snapshot.rows]
    assert set(names) == set(ALGORITHMS)
    best = dsc["leaderboard"][0]
    first_row = page.locator("#leaderboard tr").nth(1).inner_text()
    assert f"{100 * best['ci_low']:.1f}" in first_row and f"{100 * best['ci_high']:.1f}" in first_row
    stability = dsc["rank_stability"]
    low, high = round(stability["rank_ci_low"][0]), round(stability["rank_ci_high"][0])
    rank_cell = page.locator("#leaderboard tr").nth(1).locator("td").nth(4).inner_text()
    assert rank_cell.split()[0] == (str(low) if low == high else f"{low}–{high}")

    # The significance map draws one cell per ordered pair, yellow exactly where the snapshot says "better".
    panel = dsc["significance"]["spleen"]
    yellow = sum(bool(v) for row in panel["better"] for v in row)
    assert 0 < yellow < len(ALGORITHMS) * (len(ALGORITHMS) - 1)
    heatmap_z = page.evaluate("document.getElementById('chart-significance').data[0].z")
    assert sum(v == 1 for row in heatmap_z for v in row) == yellow

    # Paired differences: green where the interval is above 0, red below, as many as the snapshot has.
    paired = dsc["paired_differences"]
    above = sum(
        1 for i, row in enumerate(paired["ci_low"]) for j, low in enumerate(row) if i != j and low and low > 0
    )
    assert page.locator("#differences td.better").count() == above > 0

    # Breakdowns: the out-of-distribution site is flagged for every algorithm (it is built to be harder).
    hospital = page.locator("#breakdown-site")
    assert hospital.locator("td.flag").count() == len(ALGORITHMS)
    assert "HRH vs NGH" in hospital.inner_text()
    assert page.locator("#breakdown-distribution").count() == 1


def test_leaderboard_switches_metric_and_organ(live_server, page, tmp_path):
    phase = scored_phase()
    page.goto(f"{live_server.url}/phases/{phase.slug}/")
    page.select_option("#chooser select[name=organ]", "liver")
    page.wait_for_url("**organ=liver**")
    page.select_option("#chooser select[name=metric]", "nsd")
    page.wait_for_url("**metric=nsd**")
    page.wait_for_selector("#significance .main-svg")
    screenshot(page, tmp_path, "leaderboard-nsd-liver")
    assert page.errors == []
    assert page.locator("h2#statistics").inner_text() == "Statistics (NSD)"
    title = page.evaluate("document.getElementById('chart-significance').layout.title.text")
    assert title.startswith("NSD liver")


def test_submission_page_shows_its_standing_charts_and_jobs(live_server, page, tmp_path):
    phase = scored_phase()
    snapshot = latest_snapshot(phase=phase)
    last = snapshot.rows[-1]
    page.goto(f"{live_server.url}/submissions/{last['submission_id']}/")
    page.wait_for_selector(".main-svg")
    screenshot(page, tmp_path, "submission")
    assert page.errors == []
    assert page.locator(".main-svg").count() >= 2
    assert page.locator("#standing").inner_text().splitlines()[1] == f"{len(ALGORITHMS)} of {len(ALGORITHMS)}"
    organ_rows = page.locator("#organ-table tr")
    assert organ_rows.count() == 1 + 5
    liver = snapshot.statistics["metrics"]["dsc"]["organ_stats"][last["name"]]["liver"]
    assert f"{100 * liver['ci_low']:.1f}–{100 * liver['ci_high']:.1f}" in page.locator("#organ-table").inner_text()
    # Per-site results are live numbers beyond the public row: the team's members see them, visitors do not.
    assert page.locator("#site-table").count() == 0
    sign_in_member(page, live_server, Submission.objects.get(pk=last["submission_id"]).team)
    page.reload()
    page.wait_for_selector("#site-table")
    screenshot(page, tmp_path, "submission-as-member")
    # The one case without valid output is counted at its site.
    assert "1" in page.locator("#site-table tr", has_text="North General").locator("td").nth(2).inner_text()
