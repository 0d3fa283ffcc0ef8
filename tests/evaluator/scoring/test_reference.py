"""The DeepMind reference shim: it is what makes `surface-distance` 0.1 usable under NumPy 2."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np

from evaluator.scoring.reference import deepmind, deepmind_scores

_EMPTY_PREDICTION_CALL = textwrap.dedent(
    """
    import numpy as np
    {setup}
    reference = np.zeros((3, 3, 3), bool); reference[1, 1, 1] = True
    empty = np.zeros((3, 3, 3), bool)
    distances = sd.compute_surface_distances(reference, empty, (1.0, 1.0, 1.0))
    print(sd.compute_robust_hausdorff(distances, 95), sd.compute_dice_coefficient(empty, empty))
    """
)


def _run(setup: str) -> subprocess.CompletedProcess[str]:
    code = _EMPTY_PREDICTION_CALL.format(setup=setup)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_unshimmed_surface_distance_fails_under_numpy_2() -> None:
    result = _run("import surface_distance as sd")
    assert result.returncode != 0
    assert "np.Inf` was removed in the NumPy 2.0 release" in result.stderr


def test_shim_makes_surface_distance_work_under_numpy_2() -> None:
    result = _run("from evaluator.scoring.reference import deepmind; sd = deepmind()")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["inf", "nan"]


def test_shim_leaves_the_global_numpy_untouched() -> None:
    deepmind()
    assert not hasattr(np, "Inf")
    assert not hasattr(np, "NaN")


def test_deepmind_scores_of_identical_masks_are_perfect() -> None:
    mask = np.zeros((5, 5, 5), bool)
    mask[1:4, 1:3, 2:4] = True
    scores = deepmind_scores(mask, mask.copy(), (1.0, 2.0, 0.5), 1.0)
    assert (scores.dsc, scores.nsd, scores.hd95_mm, scores.assd_mm) == (1.0, 1.0, 0.0, 0.0)


def test_deepmind_scores_of_an_empty_prediction_are_worst() -> None:
    mask = np.zeros((4, 4, 4), bool)
    mask[1, 1, 1] = True
    scores = deepmind_scores(mask, np.zeros_like(mask), (1.0, 1.0, 1.0), 1.0)
    assert (scores.dsc, scores.nsd, scores.hd95_mm, scores.assd_mm) == (0.0, 0.0, np.inf, np.inf)
