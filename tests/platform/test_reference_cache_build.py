"""Importing a test set asks for every reference's cache entry; scoring uses valid entries and asks for missing ones."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchmarks import services
from benchmarks.models import Case
from evaluator.scoring import reference_cache
from evaluator.synthetic.benchmark import generate_benchmark
from submissions import scoring

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hidden") / "abdomen"
    generate_benchmark(folder, cases_per_site=1, size="test", seed=3)
    return folder


@pytest.fixture
def manifest(settings, tmp_path, generated) -> Path:
    settings.DATA_ROOT = tmp_path
    folder = tmp_path / "abdomen"
    shutil.copytree(generated, folder)
    path = folder / "manifest.json"
    data = json.loads(path.read_text())
    data["benchmark"] = {"slug": "abdomen", "name": "Abdominal CT"}
    path.write_text(json.dumps(data))
    return path


def test_import_enqueues_one_cache_build_per_case_and_the_build_makes_valid_entries(
    manifest, django_capture_on_commit_callbacks, settings
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        phase = services.benchmark_import(manifest_path=manifest)
    assert len(callbacks) == 1  # one batch of build messages, sent only once the import is committed
    cases = list(phase.cases.order_by("case_id"))
    root = services.reference_cache_root()
    assert root == Path(settings.DATA_ROOT) / "reference-cache"
    for case in cases:
        reference = Path(settings.DATA_ROOT) / case.reference_path
        assert reference_cache.lookup(root, "abdomen", case.case_id, reference) is None
        entry = services.case_reference_cache_build(case_pk=case.pk)
        assert entry is not None and entry.is_relative_to(root / "abdomen")
        assert reference_cache.lookup(root, "abdomen", case.case_id, reference) == entry
        assert services.case_reference_cache_build(case_pk=case.pk) == entry  # idempotent
    assert services.case_reference_cache_build(case_pk=max(case.pk for case in cases) + 1000) is None


def test_scoring_uses_valid_entries_and_asks_for_the_missing_ones(
    manifest, django_capture_on_commit_callbacks, settings
) -> None:
    phase = services.benchmark_import(manifest_path=manifest)
    cases = list(phase.cases.order_by("case_id"))
    built = services.case_reference_cache_build(case_pk=cases[0].pk)
    references = [Path(settings.DATA_ROOT) / case.reference_path for case in cases]
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        caches = scoring._reference_caches(benchmark=phase.benchmark, cases=cases, references=references)
    assert caches == [built] + [None] * (len(cases) - 1)
    assert len(callbacks) == len(cases) - 1  # a build for each case without an entry
    # A reference changed after its entry was built: the entry is no longer used.
    Case.objects.filter(pk=cases[0].pk).update(reference_path=cases[1].reference_path)
    cases[0].refresh_from_db()
    moved = [Path(settings.DATA_ROOT) / cases[0].reference_path, *references[1:]]
    assert scoring._reference_caches(benchmark=phase.benchmark, cases=cases, references=moved)[0] is None


def test_a_reference_that_cannot_be_read_is_logged_and_left_to_scoring(manifest, settings, caplog) -> None:
    phase = services.benchmark_import(manifest_path=manifest)
    case = phase.cases.order_by("case_id").first()
    reference = Path(settings.DATA_ROOT) / case.reference_path
    reference.write_bytes(reference.read_bytes()[:200])  # truncated after import
    assert services.case_reference_cache_build(case_pk=case.pk) is None
    assert f"reference cache of case {case.case_id} (abdomen) not built" in caplog.text
    assert not (services.reference_cache_root() / "abdomen").exists() or not any(
        (services.reference_cache_root() / "abdomen").glob(f"{case.case_id}--*")
    )
