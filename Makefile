# The two commands: `make run` and `make test`. Both create .venv and install on first use.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
# How torch's OpenMP threads wait between kernels: alone on the machine a short spin (set by
# cli/environment.py) trains 1.3 to 2.3x faster than sleeping at once; processes that share the
# cores must sleep (PASSIVE), or the spinning threads steal them from each other: the tests'
# two workers do (docs/experiments.md, "How OpenMP threads wait"). Export OMP_WAIT_POLICY to
# choose yourself.
SHARED_CORES := OMP_WAIT_POLICY=$${OMP_WAIT_POLICY:-PASSIVE}

.PHONY: install browser run test lint ui bench clean-stores constraints \
	postgresql services services-down podman test-services

install: $(STAMP)

# torch first and pinned: a bare `torch` resolved by pip would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip==25.3"
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

run: install
	$(PY) pipelines/run.py

test: install browser
	$(PY) -m ruff check .
	$(SHARED_CORES) $(PY) -m pytest -n 2 --dist loadgroup

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# Chromium from Debian's packages, for the MLflow UI test (tests/test_lineage_ui.py, driven by
# playwright, which never downloads a browser of its own). Where it cannot be installed (not
# root, no apt) the rest still runs and that test skips, saying why.
browser:
	@command -v chromium >/dev/null || \
		(apt-get update -q && apt-get install -y -q --no-install-recommends chromium) || \
		echo "chromium could not be installed: tests/test_lineage_ui.py will skip"

# The tracking services (configs/services.yaml), on 127.0.0.1 only: PostgreSQL, an MLflow server
# on it and a ZenML server; idempotent. `--stack server` then tracks to them (docs/deployment.md).
services: install postgresql
	$(PY) pipelines/run.py services up

services-down: install
	$(PY) pipelines/run.py services down

# PostgreSQL from Debian's packages, where it is missing (the services run their own cluster,
# on their own port, whatever Debian's package starts).
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || \
		(apt-get update -q && apt-get install -y -q --no-install-recommends postgresql) || \
		echo "postgresql could not be installed: the services tests will skip"

# podman (Docker's API for the `containers` stack), buildah, runc and debootstrap (for a
# stand-in base image) from Debian's packages, where missing.
podman:
	@(command -v podman && command -v buildah && command -v runc && command -v debootstrap) \
		>/dev/null || (apt-get update -q && apt-get install -y -q podman buildah runc debootstrap) || \
		echo "podman could not be installed: tests/test_containers.py will skip"

# What runs pipelines through the services, minutes each (tests/test_services.py's fault and
# concurrency checks, tests/test_containers.py: the image built, a tiny select in it); .ci/run
# calls it after `make test`.
test-services: install postgresql podman
	$(SHARED_CORES) SFTCAST_SERVICE_TESTS=1 $(PY) -m pytest -p no:cacheprovider \
		tests/test_services.py tests/test_containers.py

# MLflow UI over the stack's store, bound to 127.0.0.1 only (pipelines/run.py ui --help).
ui: install
	$(PY) pipelines/run.py ui

bench: install
	$(PY) -m benchmarks

# Re-pin on purpose: resolve the newest compatible set and write it to constraints.txt.
constraints: install
	$(PY) -m pip freeze --exclude-editable | grep -v '^sftcast' > constraints.txt

clean-stores:
	rm -rf .zen .zenml mlruns/* artifacts
