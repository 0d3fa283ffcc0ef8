"""Touchstone's evaluator: safe NIfTI reading, segmentation metrics and statistics. Never imports Django."""

from evaluator.scoring.cases import (
    CaseScore,
    NsdDefinition,
    OrganScore,
    OrganSpec,
    OrganStatus,
    score_case,
    score_files,
    score_many,
)
from evaluator.scoring.loading import LoadError, RefusalCategory, load_prediction, load_reference

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
