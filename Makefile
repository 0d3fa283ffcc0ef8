# Touchstone: `make demo` runs the whole platform end to end; `make test` runs the whole test suite.
# Both install what is missing (Debian packages, the virtualenv) and start the services they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export PYTHONPATH := $(CURDIR)/platform:$(CURDIR)
# Tests run on the real PostgreSQL, over its Unix socket with peer authentication (no password).
TEST_DATABASE_URL ?= postgres://%2Fvar%2Frun%2Fpostgresql/touchstone

.PHONY: demo test lint setup system services venv images bench bench-evaluator bench-stats bench-scale bench-pipeline worker-image deploy-images test-deploy clean

demo: setup images
	TOUCHSTONE_DEBUG=true $(VENV)/bin/python scripts/demo.py

test: setup images lint
	TOUCHSTONE_DEBUG=true DATABASE_URL="$(TEST_DATABASE_URL)" $(VENV)/bin/pytest -p no:cacheprovider
	$(MAKE) test-deploy

# The production stack (deploy/docker-compose.yml) built offline, brought up under its own project name,
# driven end to end through the proxy over TLS with the CLI, restarted, and torn down (tests/deploy/).
test-deploy: setup images
	TOUCHSTONE_DEBUG=true $(VENV)/bin/pytest -p no:cacheprovider -m deploy tests/deploy

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

bench: bench-evaluator bench-stats bench-pipeline bench-scale

bench-evaluator: venv
	$(PY) bench/bench_evaluator.py

bench-stats: venv
	$(PY) bench/bench_stats.py

# A Touchstone-sized phase in a throwaway PostgreSQL database (touchstone_bench, dropped afterwards).
bench-scale: venv services
	$(PY) bench/bench_scale.py

# Submissions through real Celery workers, dockerd and runsc: jobs per minute with 1 and 2 inference workers,
# and the platform's overhead per job (throwaway database touchstone_bench_pipeline and a private Redis).
bench-pipeline: venv images
	TOUCHSTONE_DEBUG=true $(PY) bench/bench_pipeline.py

# The stack's images (platform, PostgreSQL, Redis, proxy) for deploy/docker-compose.yml, built offline.
# Needs only the virtualenv (for the wheelhouse) and a running Docker: on a production host it starts no host
# PostgreSQL or Redis (they would hold the ports the stack publishes).
deploy-images: venv
	@bash deploy/build.sh

worker-image: deploy-images

clean:
	rm -rf var/ $(VENV) *.egg-info
