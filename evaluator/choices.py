"""Named vocabularies with human labels: the `LabelledEnum` base, and the container outcomes (`ExitReason`).

Each vocabulary is defined once, in this Django-free layer: `RefusalCategory` (scoring.refusals),
`OrganStatus` and `NsdDefinition` (scoring.scores), `IntervalMethod` (stats.bootstrap), `PValueMethod`
(stats.significance), `RankMethod` (stats.ranking) and `ExitReason` (here). Django fields take
`choices=Enum.choices()` from them, so a stored value and its label cannot drift apart.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["ExitReason", "LabelledEnum"]


class LabelledEnum(StrEnum):
    """A string enum whose members carry a human label, written `MEMBER = "value", "Label"`.

    Members compare equal to their values (they are `str`), so they can be stored and looked up as is.

    >>> class Colour(LabelledEnum):
    ...     RED = "red", "Bright red"
    ...     BLUE = "blue", "Deep blue"
    >>> Colour.RED == "red", Colour("red") is Colour.RED, Colour.RED.label
    (True, True, 'Bright red')
    >>> Colour.choices()
    [('red', 'Bright red'), ('blue', 'Deep blue')]
    """

    _value_: str
    label: str

    # `label` is only optional for type checkers, which read `Enum(value)` lookups as calls of `__new__`.
    def __new__(cls, value: str, label: str | None = None) -> LabelledEnum:
        if not label:
            raise TypeError(f"{cls.__name__} member {value!r} needs a label: write MEMBER = {value!r}, 'Label'")
        member = str.__new__(cls, value)
        member._value_ = value
        member.label = label
        return member

    @classmethod
    def choices(cls) -> list[tuple[str, str]]:
        """(value, label) pairs in definition order, the shape Django's `choices=` takes."""
        return [(member.value, member.label) for member in cls]


class ExitReason(LabelledEnum):
    """Why a job's container stopped. Only PLATFORM_ERROR is retried; the others are final and the team's."""

    OK = "ok", "Finished"
    CANNOT_START = "cannot_start", "Could not start (entrypoint missing or not executable)"
    CRASHED = "crashed", "Crashed (non-zero exit)"
    TIMED_OUT = "timed_out", "Exceeded the time limit"
    OUT_OF_MEMORY = "out_of_memory", "Exceeded the memory limit"
    TOO_MANY_PROCESSES = "too_many_processes", "Exceeded the process limit"
    OUTPUT_TOO_LARGE = "output_too_large", "Exceeded the /output size or file limit"
    BAD_OUTPUT = "bad_output", "Wrote no usable output"
    PLATFORM_ERROR = "platform_error", "Platform error"
    CANCELLED = "cancelled", "Cancelled"
