# The two commands: `make run` and `make test`. Both create .venv and install on first use.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install run test lint ui bench clean-stores constraints

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

test: install
	$(PY) -m ruff check .
	$(PY) -m pytest -n 2 --dist loadgroup

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# MLflow UI over the embedded store, bound to loopback only.
ui: install
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlruns/mlflow.db \
		--default-artifact-root $(CURDIR)/mlruns/artifacts --host 127.0.0.1 --port 5000

bench: install
	$(PY) -m benchmarks

# Re-pin on purpose: resolve the newest compatible set and write it to constraints.txt.
constraints: install
	$(PY) -m pip freeze --exclude-editable | grep -v '^sftcast' > constraints.txt

clean-stores:
	rm -rf .zen .zenml mlruns/* artifacts
