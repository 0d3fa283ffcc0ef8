# Touchstone: `make demo` runs the whole platform end to end; `make test` runs the whole test suite.
# Both install what is missing (Debian packages, the virtualenv) and start the services they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export PYTHONPATH := $(CURDIR)/platform:$(CURDIR)
# Tests run on the real PostgreSQL, over its Unix socket with peer authentication (no password).
TEST_DATABASE_URL ?= postgres://%2Fvar%2Frun%2Fpostgresql/touchstone

.PHONY: demo test lint setup system services venv images bench bench-evaluator bench-stats worker-image clean

demo: setup images
	$(VENV)/bin/python scripts/demo.py

test: setup images lint
	DATABASE_URL="$(TEST_DATABASE_URL)" $(VENV)/bin/pytest -p no:cacheprovider

setup: system venv services

system:
	@bash scripts/install-system.sh

services: system
	@bash scripts/services.sh

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

images: services
	@bash worker_images/build.sh

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: bench-evaluator bench-stats

bench-evaluator: venv
	$(PY) bench/bench_evaluator.py

bench-stats: venv
	$(PY) bench/bench_stats.py

# The platform's own image (web and workers) for docker-compose, built offline from a host wheelhouse.
worker-image: venv images
	@bash worker_images/platform/build.sh

clean:
	rm -rf var/ $(VENV) *.egg-info
