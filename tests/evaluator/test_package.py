"""The evaluator package: its public API, and that it never imports Django."""

from __future__ import annotations

import subprocess
import sys

import evaluator


def test_importing_evaluator_does_not_import_django() -> None:
    code = "import sys, evaluator, evaluator.__main__; print('django' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "False"


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
    for enum in (evaluator.RefusalCategory, evaluator.OrganStatus, evaluator.NsdDefinition):
        for member in enum:
            assert member.label and member.label != member.value
