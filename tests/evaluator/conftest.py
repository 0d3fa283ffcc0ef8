"""Fixtures for the statistics tests: small score tables built by hand, and the Touchstone data folder."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def touchstone_data_dir() -> Path:
    """`$TOUCHSTONE_DATA_DIR`, else `../shared/touchstone-data` next to the repository."""
    configured = os.environ.get("TOUCHSTONE_DATA_DIR")
    return Path(configured) if configured else REPO_ROOT.parent / "shared" / "touchstone-data"


def require_touchstone_data() -> Path:
    """The data folder, or a skip (a failure under CI=true) saying where it was looked for."""
    folder = touchstone_data_dir()
    if (folder / "expected").is_dir():
        return folder
    message = (
        f"Touchstone reproduction data not found at {folder}. Put the touchstone-data folder there "
        "or set TOUCHSTONE_DATA_DIR; it stays outside the repository."
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " (CI=true: the reproduction tests must run.)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def touchstone_data() -> Path:
    """The published Touchstone data; skipped where absent, a failure where absent under CI."""
    return require_touchstone_data()


def long_table(
    values: dict[str, dict[str, list[float]]],
    *,
    cases: list[str],
    sites: list[str] | None = None,
    metric: str = "dsc",
) -> pd.DataFrame:
    """Long table from {algorithm: {organ: per-case values}} (NaN allowed)."""
    sites = sites if sites is not None else ["A"] * len(cases)
    rows = []
    for algorithm, by_organ in values.items():
        for organ, column in by_organ.items():
            for case, site, value in zip(cases, sites, column, strict=True):
                rows.append((case, site, algorithm, organ, metric, value))
    return pd.DataFrame(rows, columns=["case", "site", "algorithm", "organ", "metric", "value"])


@pytest.fixture
def random_scores() -> Callable[..., pd.DataFrame]:
    """Random long tables: skill differences between algorithms, site shifts, a shared NaN mask."""

    def build(
        *,
        cases: int = 60,
        algorithms: int = 4,
        organs: tuple[str, ...] = ("liver", "spleen", "aorta"),
        sites: int = 3,
        metrics: tuple[str, ...] = ("dsc",),
        seed: int = 0,
        nan_share: float = 0.2,
    ) -> pd.DataFrame:
        rng = np.random.default_rng(seed)
        site_of_case = [f"site{int(s)}" for s in rng.integers(0, sites, cases)]
        skill = np.linspace(0.85, 0.75, algorithms)
        evaluable = rng.random((cases, len(organs))) > nan_share
        rows = []
        for metric in metrics:
            for a in range(algorithms):
                noise = rng.normal(0, 0.05, (cases, len(organs)))
                for c in range(cases):
                    for o, organ in enumerate(organs):
                        value = float(np.clip(skill[a] + noise[c, o], 0, 1)) if evaluable[c, o] else np.nan
                        rows.append((f"case{c:03d}", site_of_case[c], f"alg{a}", organ, metric, value))
        return pd.DataFrame(rows, columns=["case", "site", "algorithm", "organ", "metric", "value"])

    return build
