# Two commands on a fresh clone: `make demo` and `make test` (each sets up .venv first).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
HOME_DIR ?= data/demo
# sqlfluff's dbt templater compiles the project: any path and as-of time will do
LINT_ENV := NUDGEFLOW_WAREHOUSE=$(CURDIR)/.lint.duckdb NUDGEFLOW_AS_OF="2026-01-20 00:00:00"

.PHONY: install lint test test-spark demo bench clean

# the product, its lab ([lab]: the policy harness's peers, plots) and the dev tools ([dev])
$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c requirements.lock -e '.[dev,lab]'
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	cd dbt_project && $(LINT_ENV) ../$(VENV)/bin/sqlfluff lint models macros tests

test: lint
	$(PY) -m pytest -q

# the same dbt project and decide code on a local Spark session (docs/scale-out.md): the [spark]
# extra, then tests/spark/ (each test skips with one line when pyspark or Java is missing)
test-spark: install
	$(PY) -m pip install --quiet -c requirements.lock -e '.[spark]'
	$(PY) -m pytest -q tests/spark

demo: install
	$(VENV)/bin/nudgeflow demo --home $(HOME_DIR)

bench: install
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) data .pytest_cache .lint.duckdb
