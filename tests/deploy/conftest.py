"""The deploy tests run only when asked for (`make test-deploy`, i.e. `pytest -m deploy tests/deploy`)."""

import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "deploy: brings the production compose stack up (make test-deploy)")


def pytest_collection_modifyitems(config, items):
    if "deploy" in (config.getoption("-m") or ""):
        return
    deselected = [item for item in items if item.get_closest_marker("deploy")]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker("deploy")]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item, so a fixture can print diagnostics after a failed test."""
    outcome = yield
    setattr(item, f"rep_{outcome.get_result().when}", outcome.get_result())


def pytest_terminal_summary(terminalreporter):
    """The stack's step durations (cold: images built; warm: cached), on every run, passed or failed."""
    from tests.deploy.stack import BUILD_LINES, TIMINGS_S

    for line in BUILD_LINES:
        terminalreporter.write_line(f"deploy images: {line}")
    if TIMINGS_S:
        terminalreporter.write_line(
            "deploy stack timings (s): " + ", ".join(f"{name} {value:.1f}" for name, value in TIMINGS_S.items())
        )
