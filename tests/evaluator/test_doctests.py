"""The examples in the docstrings of the evaluator's scoring modules run and hold."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "evaluator.extents",
    "evaluator.surface",
    "evaluator.distances",
    "evaluator.metrics",
    "evaluator.scoring",
    "evaluator.loading",
    "evaluator.organs",
    "evaluator.reference",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_hold(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0
