"""Reproduce Touchstone's published analysis from its per-case CSVs with the platform's own statistics.

    python -m evaluator.touchstone.reproduce DATA_DIR

DATA_DIR is the `touchstone-data` folder (see its README). Prints what matched and the data
anomalies found (duplicate rows, missing cases); exits 1 on any mismatch, 2 if DATA_DIR is
not there. Floats match when |ours - published| <= 1e-12 (float64 rounding of sums in a
different order); how many are bit-identical is printed too.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from evaluator.stats.aggregates import case_scores, distribution, summarize
from evaluator.stats.significance import PValueMethod, order_by_median, significance_map
from evaluator.stats.tables import ScoreCube, score_cube
from evaluator.touchstone.tables import DuplicatePolicy, FileAnomaly, LoadedScores, read_touchstone_folder

FLOAT_TOLERANCE = 1e-12
METRICS = ("dsc", "nsd")
DAP_ATLAS_CASES = 533
HEATMAP_ORGANS = ("spleen", "kidney_right", "kidney_left", "gall_bladder", "liver")

#: Folder name -> display name in the June-2024 heatmaps (Touchstone `plot/PlotGroup.py:rename_model`).
DISPLAY_NAMES = {
    "Swin UNETR": "SwinUNETR",
    "Swin UNETR and CLIP": "SwinUNETR & CLIP",
    "U-Net and CLIP": "U-Net & CLIP",
    "MONAI_LHU-Net": "LHU-Net",
    "MONAI_SegVol": "SegVol",
    "MONAI_Swin_UNETR": "SwinUNETR",
    "MONAI_UCTransNet": "UCTransNet",
    "MONAI_UNEST": "UNEST",
    "MONAI_UNETR": "UNETR",
    "Vision_Language_Swin_UNETR_CLIP": "SwinUNETR & CLIP",
    "Vision_Language_U-Net_CLIP": "U-Net & CLIP",
    "_Diff-UNet": "Diff-UNet",
    "_SAM-Adapter": "SAM-Adapter",
    "nnU-Net_MedNeXt": "MedNeXt",
    "nnU-Net_NexToU": "NexToU",
    "nnU-Net_ResEncL": "nnU-Net ResEncL",
    "nnU-Net_STU-Net": "STU-Net",
    "nnU-Net_U-Net": "nnU-Net U-Net",
}


@dataclass(frozen=True)
class Check:
    """One line of the reproduction table."""

    test: str
    what: str
    matched: int
    total: int
    bit_exact: int | None = None
    max_abs_difference: float | None = None
    mismatches: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.matched == self.total


@dataclass(frozen=True)
class Reproduction:
    checks: tuple[Check, ...]
    anomalies: tuple[tuple[str, FileAnomaly], ...] = field(default=())

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


class _Tally:
    """Counts float comparisons against published values."""

    def __init__(self, test: str, what: str) -> None:
        self.test, self.what = test, what
        self.matched = self.total = self.exact = 0
        self.max_difference = 0.0
        self.mismatches: list[str] = []

    def compare(self, ours: float, published: float, label: str) -> None:
        self.total += 1
        difference = abs(ours - published) if not (np.isnan(ours) and np.isnan(published)) else 0.0
        self.max_difference = max(self.max_difference, difference if np.isfinite(difference) else np.inf)
        self.exact += bool(ours == published or (np.isnan(ours) and np.isnan(published)))
        if difference <= FLOAT_TOLERANCE:
            self.matched += 1
        else:
            self.mismatches.append(f"{label}: ours {ours!r}, published {published!r}")

    def equal(self, ours: object, published: object, label: str) -> None:
        self.total += 1
        if ours == published:
            self.matched += 1
            self.exact += 1
        else:
            self.mismatches.append(f"{label}: ours {ours!r}, published {published!r}")

    def check(self, *, floats: bool = True) -> Check:
        return Check(
            self.test,
            self.what,
            self.matched,
            self.total,
            self.exact if floats else None,
            self.max_difference if floats else None,
            tuple(self.mismatches[:10]),
        )


def _summary_means(expected_dir: Path, metric: str) -> dict[tuple[str, str], float]:
    published: dict[tuple[str, str], float] = {}
    for path in sorted((expected_dir / metric).glob("*_summary.csv")):
        organ = path.name[: -len("_summary.csv")]
        for row in pd.read_csv(path).itertuples():
            published[(str(row.Model), organ)] = float(row.Average_Score)
    return published


def _compare_means(tally: _Tally, cube: ScoreCube, published: dict[tuple[str, str], float]) -> None:
    summary = summarize(cube)
    for (model, organ), value in published.items():
        a, o = cube.algorithm_index(model), cube.organ_index(organ)
        tally.compare(float(summary.mean[a, o]), value, f"{cube.metric} {model} {organ}")


def reproduce_t1(data_dir: Path) -> tuple[list[Check], LoadedScores]:
    """T1: the 342 per-organ means of TotalSegmentator-743, and the 38 nine-organ averages."""
    loaded = read_touchstone_folder(data_dir / "totalsegmentator_743", duplicates=DuplicatePolicy.ERROR)
    means, headline = (
        _Tally("T1", "TotalSegmentator-743 per-organ means"),
        _Tally("T1", "TotalSegmentator-743 headline (AVG9)"),
    )
    long = pd.read_csv(data_dir / "expected" / "published_per_organ_means_long.csv")
    for metric in METRICS:
        cube = score_cube(loaded.scores, metric)
        _compare_means(
            means,
            cube,
            _summary_means(data_dir / "expected/leaderboard_summary/totalsegmentator_results", metric),
        )
        summary = summarize(cube)
        rows = long.loc[
            (long["dataset"] == "TotalSegmentator_743")
            & (long["metric"] == metric)
            & (long["organ"] == "AVG9_mean_of_organ_means")
        ]
        for row in rows.itertuples():
            headline.compare(
                float(summary.headline[cube.algorithm_index(str(row.model))]),
                float(row.mean),
                f"{metric} {row.model}",
            )
    return [means.check(), headline.check()], loaded


def reproduce_t2(data_dir: Path) -> tuple[list[Check], LoadedScores]:
    """T2: DAP Atlas per-organ means under the Leaderboard's rule: the first 533 rows of each file."""
    loaded = read_touchstone_folder(
        data_dir / "dapatlas_533", duplicates=DuplicatePolicy.FIRST_N_ROWS, n_rows=DAP_ATLAS_CASES
    )
    tally = _Tally("T2", "DAP Atlas per-organ means (first 533 rows)")
    for metric in METRICS:
        published = _summary_means(data_dir / "expected/leaderboard_summary/dapatlas_results", metric)
        _compare_means(tally, score_cube(loaded.scores, metric), published)
    return [tally.check()], loaded


def _range_text(low: float, high: float) -> str:
    return f"{100 * low:.1f} - {100 * high:.1f}"


def _compare_tables(medians: _Tally, ranges: _Tally, cube: ScoreCube, table_dir: Path) -> None:
    summary = summarize(cube)
    whole_case = distribution(case_scores(cube, skip_missing_organs=False))
    for path in sorted(table_dir.glob("*_table.csv")):
        organ = path.name[: -len("_table.csv")]
        table = pd.read_csv(path)
        for model, published_median, published_range in zip(
            table["Model_name"], table["Median"], table["95% CI"], strict=True
        ):
            a = cube.algorithm_index(str(model))
            if organ == "mean":
                median, low, high = whole_case.median[a], whole_case.low[a], whole_case.high[a]
            else:
                o = cube.organ_index(organ)
                median, low, high = summary.median[a, o], summary.low[a, o], summary.high[a, o]
            label = f"{cube.metric} {model} {organ}"
            medians.compare(float(median), float(published_median), label)
            ranges.equal(_range_text(low, high), str(published_range), label)


def reproduce_t3(data_dir: Path, totalsegmentator: LoadedScores) -> tuple[list[Check], LoadedScores]:
    """T3: median and 2.5-97.5 percentile tables; the Leaderboard counted every row of a file."""
    dap = read_touchstone_folder(data_dir / "dapatlas_533", duplicates=DuplicatePolicy.EVERY_ROW)
    checks = []
    for name, loaded, folder in (
        ("TotalSegmentator-743", totalsegmentator, "totalsegmentator_results"),
        ("DAP Atlas (every row)", dap, "dapatlas_results"),
    ):
        medians, ranges = _Tally("T3", f"{name} medians"), _Tally("T3", f"{name} 2.5-97.5 ranges")
        for metric in METRICS:
            _compare_tables(
                medians,
                ranges,
                score_cube(loaded.scores, metric),
                data_dir / "expected/leaderboard_tables" / folder / metric,
            )
        checks += [medians.check(), ranges.check(floats=False)]
    return checks, dap


def _test_split(data_dir: Path) -> set[str]:
    meta = pd.read_csv(data_dir / "metadata" / "metaTotalSeg.csv", sep=";", encoding="utf-8-sig")
    return set(meta.loc[meta["split"] == "test", "image_id"].astype(str))


def reproduce_t5(
    data_dir: Path, p_value_method: PValueMethod = PValueMethod.NORMAL
) -> tuple[list[Check], list[tuple[str, FileAnomaly]]]:
    """T5: the 3,920 cells and 15 model orders of the June-2024 DSC significance heatmaps.

    As Touchstone: the model order is the median over every row of a file, the tests pair
    cases by id keeping the first row of a repeated id.
    """
    expected = pd.read_csv(data_dir / "expected" / "heatmap_jun2024_dsc_significance.csv")
    panels = (
        ("TotalSegmentator_all1228", "totalsegmentator_1228_jun2024_dsc", None),
        ("TotalSegmentator_officialtest", "totalsegmentator_1228_jun2024_dsc", _test_split(data_dir)),
        ("DAPAtlas_533", "dapatlas_533", None),
    )
    cells, orders = (
        _Tally("T5", f"significance decisions ({p_value_method.value})"),
        _Tally("T5", "model orders by median"),
    )
    anomalies: list[tuple[str, FileAnomaly]] = []
    for dataset, folder, cases in panels:
        paired, every_row = (
            read_touchstone_folder(
                data_dir / folder, metrics=("dsc",), cases=cases, rename=DISPLAY_NAMES, duplicates=policy
            )
            for policy in (DuplicatePolicy.KEEP_FIRST, DuplicatePolicy.EVERY_ROW)
        )
        anomalies += [(dataset, a) for a in paired.anomalies]
        paired_cube, row_cube = score_cube(paired.scores, "dsc"), score_cube(every_row.scores, "dsc")
        for organ in HEATMAP_ORGANS:
            panel_rows = expected.loc[(expected["dataset"] == dataset) & (expected["organ"] == organ)]
            published_order = tuple(
                panel_rows.drop_duplicates("x_algorithm").sort_values("x_rank_by_median")["x_algorithm"]
            )
            order = order_by_median(row_cube.values[:, :, row_cube.organ_index(organ)], row_cube.algorithms)
            orders.equal(order, published_order, f"{dataset} {organ}")
            panel = significance_map(paired_cube, organ, p_value_method=p_value_method, order=order)
            for row in panel_rows.itertuples():
                cells.equal(
                    int(panel.is_better(str(row.x_algorithm), str(row.y_algorithm))),
                    int(row.x_significantly_better_than_y),
                    f"{dataset} {organ} {row.x_algorithm} > {row.y_algorithm}",
                )
    return [cells.check(floats=False), orders.check(floats=False)], anomalies


def reproduce_all(data_dir: Path) -> Reproduction:
    """Run T1, T2, T3 and T5; collect every data anomaly met on the way."""
    data_dir = Path(data_dir)
    t1, totalsegmentator = reproduce_t1(data_dir)
    t2, dap_first_rows = reproduce_t2(data_dir)
    t3, _ = reproduce_t3(data_dir, totalsegmentator)
    t5, heatmap_anomalies = reproduce_t5(data_dir)
    anomalies = [("TotalSegmentator-743", a) for a in totalsegmentator.anomalies]
    anomalies += [("DAP Atlas", a) for a in dap_first_rows.anomalies]
    anomalies += heatmap_anomalies
    return Reproduction(tuple(t1 + t2 + t3 + t5), tuple(anomalies))


def format_report(reproduction: Reproduction) -> str:
    """The table printed by the command."""
    lines = [f"{'test':<5} {'what':<52} {'matched':>13} {'bit-exact':>10} {'max |diff|':>11}  status"]
    for c in reproduction.checks:
        exact = "" if c.bit_exact is None else str(c.bit_exact)
        diff = "" if c.max_abs_difference is None else f"{c.max_abs_difference:.1e}"
        lines.append(
            f"{c.test:<5} {c.what:<52} {f'{c.matched}/{c.total}':>13} {exact:>10} {diff:>11}  "
            f"{'ok' if c.ok else 'MISMATCH'}"
        )
        lines += [f"        {m}" for m in c.mismatches]
    lines.append("")
    lines.append("Data anomalies found (reported; each test applies its documented rule):")
    grouped: dict[tuple[str, str, str, tuple[str, ...], str], list[str]] = {}
    for dataset, anomaly in reproduction.anomalies:
        key = (dataset, anomaly.metric, anomaly.kind.value, anomaly.cases, anomaly.describe())
        if anomaly.algorithm not in grouped.setdefault(key, []):
            grouped[key].append(anomaly.algorithm)
    for (dataset, metric, _, _, description), algorithms in grouped.items():
        who = ", ".join(algorithms) if len(algorithms) <= 3 else f"{len(algorithms)} models"
        lines.append(f"  {dataset} {metric} [{who}]: {description}")
    lines.append("")
    lines.append("ALL MATCHED" if reproduction.ok else "MISMATCHES: see the lines marked MISMATCH above")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m evaluator.touchstone.reproduce",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("data_dir", type=Path, help="the touchstone-data folder")
    args = parser.parse_args(argv)
    if not (args.data_dir / "expected").is_dir():
        print(f"{args.data_dir} is not a touchstone-data folder (no expected/ inside).", file=sys.stderr)
        return 2
    reproduction = reproduce_all(args.data_dir)
    print(format_report(reproduction))
    return 0 if reproduction.ok else 1


if __name__ == "__main__":
    sys.exit(main())
