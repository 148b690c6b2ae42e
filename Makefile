# Two commands on a fresh clone: `make demo` and `make test` (each sets up .venv first).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
HOME_DIR ?= data/demo

.PHONY: install test demo bench clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c requirements.lock -e '.[dev,lab]'
	touch $(STAMP)

install: $(STAMP)

test: install
	$(PY) -m pytest -q

demo: install
	$(VENV)/bin/nudgeflow demo --home $(HOME_DIR)

bench: install
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) data .pytest_cache
