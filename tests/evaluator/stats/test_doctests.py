"""The examples in the docstrings of evaluator.stats run and hold."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "evaluator.stats.tables",
    "evaluator.stats.aggregates",
    "evaluator.stats.bootstrap",
    "evaluator.stats.significance",
    "evaluator.stats.ranking",
    "evaluator.stats.breakdowns",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_hold(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
