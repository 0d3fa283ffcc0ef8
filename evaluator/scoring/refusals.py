"""Why a prediction was refused: named categories with a human label, and the error that carries one."""

from __future__ import annotations

from evaluator.choices import LabelledEnum


class RefusalCategory(LabelledEnum):
    """Why a prediction file could not be scored. The case then scores worst for every organ present."""

    MISSING_OUTPUT = "missing_output", "No output file"
    NOT_REGULAR_FILE = "not_regular_file", "Output is not a regular file"
    CORRUPT_GZIP = "corrupt_gzip", "Corrupted or truncated gzip"
    TOO_LARGE = "too_large", "Output too large"
    NOT_NIFTI = "not_nifti", "Not a NIfTI image"
    WRONG_DIMENSIONS = "wrong_dimensions", "Not a 3-D image"
    WRONG_SHAPE = "wrong_shape", "Shape differs from the input"
    MISSING_AFFINE = "missing_affine", "No qform or sform"
    WRONG_AFFINE = "wrong_affine", "Affine differs from the input"
    SCALED_VALUES = "scaled_values", "Intensity scaling set"
    UNSUPPORTED_DATA_TYPE = "unsupported_data_type", "Unsupported data type"
    NON_FINITE_VALUES = "non_finite_values", "NaN or infinite values"
    NON_INTEGER_VALUES = "non_integer_values", "Non-integer values"
    UNKNOWN_LABELS = "unknown_labels", "Labels outside the label set"
    READ_TIMEOUT = "read_timeout", "Reading timed out"
    READER_CRASHED = "reader_crashed", "Reading failed (crash or memory limit)"
    SCORING_FAILED = "scoring_failed", "Scoring failed (crash, time or memory limit)"


class LoadError(Exception):
    """A label map that cannot be scored, with its category and a message a person can act on."""

    def __init__(self, category: RefusalCategory, message: str) -> None:
        super().__init__(category, message)
        self.category = category
        self.message = message

    def __str__(self) -> str:
        return f"{self.category.label}: {self.message}"
