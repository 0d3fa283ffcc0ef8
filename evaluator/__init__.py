"""Touchstone's evaluator: safe NIfTI reading, segmentation metrics and statistics. Never imports Django."""

from evaluator.loading import LoadError, RefusalCategory, load_prediction, load_reference
from evaluator.scoring import (
    CaseScore,
    NsdDefinition,
    OrganScore,
    OrganSpec,
    OrganStatus,
    score_case,
    score_files,
    score_many,
)

__all__ = [
    "CaseScore",
    "LoadError",
    "NsdDefinition",
    "OrganScore",
    "OrganSpec",
    "OrganStatus",
    "RefusalCategory",
    "load_prediction",
    "load_reference",
    "score_case",
    "score_files",
    "score_many",
]
