"""score_case: DeepMind's numbers for every organ, Touchstone's conventions, hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from evaluator.scoring.cases import NsdDefinition, OrganScore, OrganStatus, score_case
from evaluator.scoring.organs import OrganSpec
from evaluator.scoring.reference import deepmind_scores
from tests.evaluator.strategies import label_maps, predictions_of, spacings

ORGANS = (OrganSpec(1, "liver"), OrganSpec(2, "spleen", 2.0), OrganSpec(3, "pancreas", 0.75))
UNIT = (1.0, 1.0, 1.0)


@st.composite
def cases(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    reference = draw(label_maps(max_side=12, max_label=3))
    return reference, draw(predictions_of(reference, max_label=3))


def _assert_agrees_with_deepmind(
    score: OrganScore, reference: np.ndarray, prediction: np.ndarray, spacing, organ: OrganSpec
) -> None:
    in_reference, in_prediction = reference == organ.label, prediction == organ.label
    voxel_ml = spacing[0] * spacing[1] * spacing[2] / 1000
    assert score.predicted_volume_ml == pytest.approx(np.count_nonzero(in_prediction) * voxel_ml, rel=1e-12)
    if not in_reference.any():
        assert score.status is OrganStatus.ABSENT
        assert all(math.isnan(v) for v in (score.dsc, score.nsd, score.hd95_mm, score.assd_mm))
        return
    expected = deepmind_scores(in_reference, in_prediction, spacing, organ.nsd_tolerance_mm)
    assert score.status is (OrganStatus.SCORED if in_prediction.any() else OrganStatus.MISSED)
    assert score.reference_volume_ml == pytest.approx(np.count_nonzero(in_reference) * voxel_ml, rel=1e-12)
    assert abs(score.dsc - expected.dsc) <= 1e-9
    assert abs(score.nsd - expected.nsd) <= 1e-9
    for ours, theirs in ((score.hd95_mm, expected.hd95_mm), (score.assd_mm, expected.assd_mm)):
        assert ours == theirs or abs(ours - theirs) <= 1e-6


@settings(max_examples=200, deadline=None)
@given(case=cases(), spacing=spacings)
def test_every_organ_agrees_with_deepmind(case: tuple[np.ndarray, np.ndarray], spacing) -> None:
    reference, prediction = case
    scores = score_case(reference, prediction, spacing, ORGANS)
    assert [score.label for score in scores] == [1, 2, 3]
    for score, organ in zip(scores, ORGANS, strict=True):
        _assert_agrees_with_deepmind(score, reference, prediction, spacing, organ)


def test_a_realistic_case_agrees_with_deepmind() -> None:
    rng = np.random.default_rng(11)
    grid = np.indices((48, 44, 36)).astype(float)
    reference = np.zeros((48, 44, 36), np.uint8, order="F")
    for label, centre, radii in (
        (1, (20, 20, 18), (14, 12, 10)),
        (2, (36, 30, 16), (7, 6, 9)),
        (3, (28, 10, 20), (10, 3, 4)),
    ):
        inside = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii, strict=True)) < 1
        reference[inside & (reference == 0)] = label
    prediction = np.roll(ndimage.grey_dilation(reference, size=(2, 1, 2)), (1, -1, 0), axis=(0, 1, 2))
    prediction[rng.random(prediction.shape) < 0.002] = 2  # stray voxels everywhere
    spacing = (0.78125, 0.78125, 2.5)
    for score, organ in zip(score_case(reference, prediction, spacing, ORGANS), ORGANS, strict=True):
        assert score.status is OrganStatus.SCORED
        _assert_agrees_with_deepmind(score, reference, prediction, spacing, organ)


def test_organs_touching_the_volume_border_agree_with_deepmind() -> None:
    reference = np.ones((6, 5, 4), np.uint8)
    reference[:, :, 0] = 2
    prediction = reference.copy()
    prediction[0] = 0
    spacing = (0.9, 1.3, 2.0)
    for score, organ in zip(score_case(reference, prediction, spacing, ORGANS), ORGANS, strict=True):
        _assert_agrees_with_deepmind(score, reference, prediction, spacing, organ)


def _single_voxels(shift_axis: int) -> tuple[np.ndarray, np.ndarray]:
    reference = np.zeros((3, 3, 3), np.uint8)
    reference[1, 1, 1] = 1
    return reference, np.roll(reference, 1, axis=shift_axis)


def test_single_voxel_shifted_by_one_voxel_hand_computed() -> None:
    # Each voxel has 8 corner surfels of equal area; 4 corners are shared (0 mm), 4 are one voxel
    # (2 mm along axis 0) from the other surface, in both directions.
    reference, prediction = _single_voxels(shift_axis=0)
    [tight] = score_case(reference, prediction, (2.0, 1.0, 1.0), [OrganSpec(1, "dot", 1.0)])
    [loose] = score_case(reference, prediction, (2.0, 1.0, 1.0), [OrganSpec(1, "dot", 2.0)])
    assert (tight.dsc, tight.nsd, tight.hd95_mm, tight.assd_mm) == (0.0, 0.5, 2.0, 1.0)
    assert loose.nsd == 1.0
    assert tight.reference_volume_ml == tight.predicted_volume_ml == pytest.approx(0.002)


def test_single_voxel_shifted_along_a_thick_axis_hand_computed() -> None:
    reference, prediction = _single_voxels(shift_axis=2)
    [score] = score_case(reference, prediction, (1.0, 1.0, 3.0), [OrganSpec(1, "dot", 1.5)])
    assert (score.dsc, score.nsd, score.hd95_mm, score.assd_mm) == (0.0, 0.5, 3.0, 1.5)


def test_identical_masks_score_perfectly() -> None:
    reference = np.zeros((4, 4, 4), np.uint8)
    reference[1:3, 1:3, 1:3] = 1
    [score] = score_case(reference, reference.copy(), (0.5, 0.5, 2.0), [OrganSpec(1, "cube")])
    assert (score.status, score.dsc, score.nsd, score.hd95_mm, score.assd_mm) == (
        OrganStatus.SCORED,
        1.0,
        1.0,
        0.0,
        0.0,
    )
    assert score.reference_volume_ml == pytest.approx(8 * 0.5 * 0.5 * 2.0 / 1000)


def test_organ_missed_by_the_prediction_scores_worst() -> None:
    reference, _ = _single_voxels(0)
    [score] = score_case(reference, np.zeros_like(reference), UNIT, [OrganSpec(1, "dot")])
    assert (score.status, score.dsc, score.nsd, score.hd95_mm, score.assd_mm) == (
        OrganStatus.MISSED,
        0.0,
        0.0,
        math.inf,
        math.inf,
    )
    assert score.predicted_volume_ml == 0.0


def test_organ_absent_from_the_reference_is_not_evaluable_but_its_predicted_volume_is_reported() -> None:
    prediction, _ = _single_voxels(0)
    [false_positive] = score_case(
        np.zeros_like(prediction), prediction, (1.0, 2.0, 5.0), [OrganSpec(1, "dot")]
    )
    [both_empty] = score_case(
        np.zeros_like(prediction), np.zeros_like(prediction), UNIT, [OrganSpec(1, "dot")]
    )
    for score in (false_positive, both_empty):
        assert score.status is OrganStatus.ABSENT
        assert all(math.isnan(v) for v in (score.dsc, score.nsd, score.hd95_mm, score.assd_mm))
        assert score.reference_volume_ml == 0.0
    assert false_positive.predicted_volume_ml == pytest.approx(0.01)
    assert both_empty.predicted_volume_ml == 0.0


def test_labels_outside_the_organ_list_are_ignored_and_order_is_kept() -> None:
    reference = np.zeros((5, 5, 5), np.uint8)
    reference[0, 0, 0], reference[2, 2, 2], reference[4, 4, 4] = 1, 2, 7
    scores = score_case(reference, reference.copy(), UNIT, [OrganSpec(2, "b"), OrganSpec(1, "a")])
    assert [(s.label, s.name, s.dsc) for s in scores] == [(2, "b", 1.0), (1, "a", 1.0)]


def _monai_voxel_nsd(reference: np.ndarray, prediction: np.ndarray, spacing, tolerance_mm: float) -> float:
    """MONAI's compute_surface_dice(use_subvoxels=False), re-derived with scipy for one organ."""
    edges_gt = reference ^ ndimage.binary_erosion(reference)
    edges_pred = prediction ^ ndimage.binary_erosion(prediction)
    to_gt = ndimage.distance_transform_edt(~edges_gt, sampling=spacing)[edges_pred].astype(np.float32)
    to_pred = ndimage.distance_transform_edt(~edges_pred, sampling=spacing)[edges_gt].astype(np.float32)
    within = np.sum(to_gt <= np.float32(tolerance_mm)) + np.sum(to_pred <= np.float32(tolerance_mm))
    return float(within / (to_gt.size + to_pred.size))


@settings(max_examples=100, deadline=None)
@given(case=cases(), spacing=spacings)
def test_voxel_nsd_is_monai_border_voxel_definition(case: tuple[np.ndarray, np.ndarray], spacing) -> None:
    reference, prediction = case
    scores = score_case(reference, prediction, spacing, ORGANS, NsdDefinition.VOXEL)
    surfel_scores = score_case(reference, prediction, spacing, ORGANS)
    for score, surfel_score, organ in zip(scores, surfel_scores, ORGANS, strict=True):
        assert (score.dsc, score.hd95_mm, score.status) == (
            surfel_score.dsc,
            surfel_score.hd95_mm,
            surfel_score.status,
        )
        if score.status is OrganStatus.SCORED:
            expected = _monai_voxel_nsd(
                reference == organ.label, prediction == organ.label, spacing, organ.nsd_tolerance_mm
            )
            assert abs(score.nsd - expected) <= 1e-12


def test_voxel_nsd_of_a_shifted_single_voxel_hand_computed() -> None:
    reference, prediction = _single_voxels(shift_axis=0)
    [near] = score_case(
        reference, prediction, (2.0, 1.0, 1.0), [OrganSpec(1, "dot", 2.0)], NsdDefinition.VOXEL
    )
    [far] = score_case(
        reference, prediction, (2.0, 1.0, 1.0), [OrganSpec(1, "dot", 1.0)], NsdDefinition.VOXEL
    )
    assert (near.nsd, far.nsd) == (1.0, 0.0)


def test_voxel_and_surfel_nsd_differ_on_the_same_masks() -> None:
    reference = np.zeros((12, 12, 12), np.uint8)
    reference[2:9, 2:9, 2:9] = 1
    prediction = np.roll(reference, 2, axis=0)
    [surfel] = score_case(reference, prediction, UNIT, [OrganSpec(1, "cube", 1.0)])
    [voxel] = score_case(reference, prediction, UNIT, [OrganSpec(1, "cube", 1.0)], NsdDefinition.VOXEL)
    assert surfel.nsd != voxel.nsd


@pytest.mark.parametrize(
    ("reference", "prediction", "spacing", "message"),
    [
        (np.zeros((3, 3)), np.zeros((3, 3)), UNIT, "3-D"),
        (np.zeros((3, 3, 3), np.uint8), np.zeros((3, 3, 4), np.uint8), UNIT, "one shape"),
        (np.zeros((3, 3, 3), np.float32), np.zeros((3, 3, 3), np.uint8), UNIT, "integer"),
        (np.zeros((3, 3, 3), np.uint8), np.zeros((3, 3, 3), np.uint8), (1.0, 0.0, 1.0), "positive"),
        (np.zeros((3, 3, 3), np.uint8), np.zeros((3, 3, 3), np.uint8), (1.0, 1.0), "three"),
    ],
)
def test_score_case_refuses_misuse(reference, prediction, spacing, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        score_case(reference, prediction, spacing, ORGANS)


def test_score_case_needs_distinct_organs() -> None:
    volume = np.zeros((2, 2, 2), np.uint8)
    with pytest.raises(ValueError, match="unique"):
        score_case(volume, volume, UNIT, [OrganSpec(1, "a"), OrganSpec(1, "b")])
    with pytest.raises(ValueError, match="no organs"):
        score_case(volume, volume, UNIT, [])
