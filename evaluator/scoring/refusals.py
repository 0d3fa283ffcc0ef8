"""Why a prediction was refused: named categories with a human label, and the error that carries one."""

from __future__ import annotations

from enum import StrEnum


class RefusalCategory(StrEnum):
    """Why a prediction file could not be scored. The case then scores worst for every organ present."""

    MISSING_OUTPUT = "missing_output"
    NOT_REGULAR_FILE = "not_regular_file"
    CORRUPT_GZIP = "corrupt_gzip"
    TOO_LARGE = "too_large"
    NOT_NIFTI = "not_nifti"
    WRONG_DIMENSIONS = "wrong_dimensions"
    WRONG_SHAPE = "wrong_shape"
    MISSING_AFFINE = "missing_affine"
    WRONG_AFFINE = "wrong_affine"
    SCALED_VALUES = "scaled_values"
    UNSUPPORTED_DATA_TYPE = "unsupported_data_type"
    NON_FINITE_VALUES = "non_finite_values"
    NON_INTEGER_VALUES = "non_integer_values"
    UNKNOWN_LABELS = "unknown_labels"
    READ_TIMEOUT = "read_timeout"
    READER_CRASHED = "reader_crashed"
    SCORING_FAILED = "scoring_failed"

    @property
    def label(self) -> str:
        """A short human label, e.g. for a results table or a Django `choices` list."""
        return _LABELS[self]

    @classmethod
    def choices(cls) -> list[tuple[str, str]]:
        """(value, label) pairs, in the shape Django's `choices=` takes."""
        return [(category.value, category.label) for category in cls]


_LABELS = {
    RefusalCategory.MISSING_OUTPUT: "No output file",
    RefusalCategory.NOT_REGULAR_FILE: "Output is not a regular file",
    RefusalCategory.CORRUPT_GZIP: "Corrupted or truncated gzip",
    RefusalCategory.TOO_LARGE: "Output too large",
    RefusalCategory.NOT_NIFTI: "Not a NIfTI image",
    RefusalCategory.WRONG_DIMENSIONS: "Not a 3-D image",
    RefusalCategory.WRONG_SHAPE: "Shape differs from the input",
    RefusalCategory.MISSING_AFFINE: "No qform or sform",
    RefusalCategory.WRONG_AFFINE: "Affine differs from the input",
    RefusalCategory.SCALED_VALUES: "Intensity scaling set",
    RefusalCategory.UNSUPPORTED_DATA_TYPE: "Unsupported data type",
    RefusalCategory.NON_FINITE_VALUES: "NaN or infinite values",
    RefusalCategory.NON_INTEGER_VALUES: "Non-integer values",
    RefusalCategory.UNKNOWN_LABELS: "Labels outside the label set",
    RefusalCategory.READ_TIMEOUT: "Reading timed out",
    RefusalCategory.READER_CRASHED: "Reading failed (crash or memory limit)",
    RefusalCategory.SCORING_FAILED: "Scoring failed (crash, time or memory limit)",
}


class LoadError(Exception):
    """A label map that cannot be scored, with its category and a message a person can act on."""

    def __init__(self, category: RefusalCategory, message: str) -> None:
        super().__init__(category, message)
        self.category = category
        self.message = message

    def __str__(self) -> str:
        return f"{self.category.label}: {self.message}"
