"""The examples in the docstrings of the evaluator's scoring modules run and hold."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "evaluator.scoring.extents",
    "evaluator.scoring.surface",
    "evaluator.scoring.distances",
    "evaluator.scoring.metrics",
    "evaluator.scoring.cases",
    "evaluator.scoring.loading",
    "evaluator.scoring.organs",
    "evaluator.scoring.reference",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_hold(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0
