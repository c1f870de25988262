# Two commands for a newcomer (see README.md):
#   make run    set up .venv and run the default pipeline (config.yaml) end to end
#   make test   set up .venv and run the test suite (what CI runs)
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed
CORES ?= 2

.PHONY: setup run test lint bench clean-results

$(STAMP): requirements.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is required ($(PYTHON) not found; set PYTHON=...)"; exit 1; }
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet -r requirements.txt
	$(VENV)/bin/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(VENV)/bin/snakemake --cores $(CORES)

test: setup
	$(VENV)/bin/python -m pytest -q --durations=15

lint: setup
	$(VENV)/bin/snakemake --lint

bench: setup
	for b in bench/bench_*.py; do $(VENV)/bin/python $$b || exit 1; done

clean-results:
	rm -rf results .snakemake
