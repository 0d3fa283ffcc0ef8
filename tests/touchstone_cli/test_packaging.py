"""The CLI installs on its own: `pip install ./touchstone_cli` into a plain venv (no system site packages,
offline from a wheelhouse) gives a working `touchstone` that needs only requests and never imports Django."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from tests.conftest import ROOT

NEEDED = ("requests", "urllib3", "idna", "certifi", "charset-normalizer")
BUILD = "setuptools>=70.1"  # builds wheels without the `wheel` package


def wheelhouse(folder: Path) -> Path:
    """Wheels of what the build and the CLI need, at the versions this test environment runs, fetched the way
    pip is configured on this host (a local index or mirror; the same way the platform image is built)."""
    pins = [f"{name}=={metadata.version(name)}" for name in NEEDED] + [BUILD]
    fetched = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                              "-d", str(folder), *pins], capture_output=True, text=True, timeout=300)
    if fetched.returncode != 0:
        pytest.fail("pip could not fetch the CLI's wheels for the install test:\n" + fetched.stderr[-2000:])
    return folder


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    wheels = wheelhouse(tmp_path_factory.mktemp("wheels"))
    root = tmp_path_factory.mktemp("cli-install")
    source = root / "src" / "touchstone_cli"  # a clean copy: the build writes into its source folder
    shutil.copytree(ROOT / "touchstone_cli", source,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True, timeout=120)
    installed = subprocess.run(
        [str(root / "venv" / "bin" / "pip"), "install", "--no-index", "--find-links", str(wheels), str(source)],
        cwd=root, capture_output=True, text=True, timeout=300,
    )
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    return root / "venv"


def run(venv: Path, *args: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "DJANGO_SETTINGS_MODULE")}
    return subprocess.run([*args], cwd=venv.parent, env={**env, "HOME": str(venv.parent)}, capture_output=True,
                          text=True, timeout=60)


def test_the_installed_cli_works_with_requests_alone_and_never_imports_django(venv):
    helped = run(venv, str(venv / "bin" / "touchstone"), "--help")
    assert helped.returncode == 0, helped.stderr
    assert all(command in helped.stdout for command in ("submit", "validate", "status", "--ca-bundle"))
    assert run(venv, str(venv / "bin" / "python"), "-c", "import django").returncode != 0  # nothing leaks in
    code = ("import sys, touchstone_cli.main as m; assert 'django' not in sys.modules; "
            "assert m.__file__.startswith(sys.prefix), m.__file__")
    imported = run(venv, str(venv / "bin" / "python"), "-c", code)
    assert imported.returncode == 0, imported.stderr


def test_validate_without_its_extra_says_what_to_install(venv):
    done = run(venv, str(venv / "bin" / "touchstone"), "--server", "http://127.0.0.1:9", "--token", "ts_x",
               "validate", "some/image:latest", "--phase", "final")
    assert done.returncode == 2
    assert "needs the validate extra" in done.stderr and "pip install" in done.stderr
