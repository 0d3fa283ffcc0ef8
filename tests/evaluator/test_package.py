"""The evaluator package: its public API, and that it never imports Django."""

from __future__ import annotations

import subprocess
import sys

import pytest

import evaluator
import evaluator.choices

# Every part of the evaluator; a new subpackage or top-level module belongs here.
SUBPACKAGES = (
    "evaluator",
    "evaluator.scoring",
    "evaluator.stats",
    "evaluator.synthetic",
    "evaluator.touchstone",
    "evaluator.choices",
    "evaluator.figures",
)

# Imports `name` and, for a package, every module in it (not `__main__`, which runs a command) in a
# fresh interpreter, and prints the Django modules that came with them.
_IMPORT_ALL = """
import importlib, pkgutil, sys
name = sys.argv[1]
module = importlib.import_module(name)
for info in pkgutil.walk_packages(getattr(module, "__path__", []), prefix=name + "."):
    if not info.name.endswith("__main__"):
        importlib.import_module(info.name)
if name == "evaluator":
    import evaluator.__main__  # the `python -m evaluator` CLI guards its main() call
print(sorted(m for m in sys.modules if m == "django" or m.startswith("django.")))
"""


@pytest.mark.parametrize("name", SUBPACKAGES)
def test_importing_the_evaluator_does_not_import_django(name: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_ALL, name], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "[]", f"importing {name} imported Django: {result.stdout}"


def test_every_evaluator_package_and_module_is_covered() -> None:
    import pkgutil

    top_level = {f"evaluator.{info.name}" for info in pkgutil.iter_modules(evaluator.__path__)}
    assert top_level - {"evaluator.__main__"} <= set(SUBPACKAGES)


def test_public_api_is_reexported() -> None:
    expected = {
        "score_case",
        "score_files",
        "score_many",
        "OrganSpec",
        "OrganScore",
        "CaseScore",
        "OrganStatus",
        "NsdDefinition",
        "LoadError",
        "RefusalCategory",
        "load_reference",
        "load_prediction",
    }
    assert expected <= set(evaluator.__all__)
    assert all(hasattr(evaluator, name) for name in expected)


def test_every_enum_member_has_a_human_label() -> None:
    from evaluator.stats import IntervalMethod, PValueMethod, RankMethod

    for enum in (
        evaluator.RefusalCategory,
        evaluator.OrganStatus,
        evaluator.NsdDefinition,
        evaluator.choices.ExitReason,
        IntervalMethod,
        PValueMethod,
        RankMethod,
    ):
        assert enum.choices() == [(member.value, member.label) for member in enum]
        for member in enum:
            assert member.label and member.label != member.value
            assert enum(member.value) is member and member == member.value


def test_labelled_enum_examples_hold() -> None:
    import doctest

    result = doctest.testmod(evaluator.choices)
    assert result.failed == 0 and result.attempted > 0
