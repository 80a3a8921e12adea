# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# what running needs (make run), then the test, lint and export tools on top (make test)
RUN_STAMP := $(VENV)/.installed-run
STAMP     := $(VENV)/.installed

DOCS_STAMP := $(VENV)/.installed-docs

.PHONY: install run test test-slow bench lint docs clean

$(RUN_STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -e .
	touch $(RUN_STAMP)

$(STAMP): $(RUN_STAMP)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(RUN_STAMP)
	$(VENV)/bin/nat quickstart

test: $(STAMP)
	$(PY) -m pytest

$(DOCS_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[docs]'
	touch $(DOCS_STAMP)

test-slow: $(STAMP) $(DOCS_STAMP)
	$(PY) -m pytest -m slow

# the documentation site (mkdocs, Material), built strictly: a broken link or a missing page fails
docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

# every benchmark (bench/make_*.py only remake committed data sets and are run by hand)
bench: $(STAMP)
	@for b in $(filter-out bench/make_% bench/record.py,$(wildcard bench/*.py)); do echo "== $$b"; $(PY) $$b || exit 1; done

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

clean:
	rm -rf $(VENV) build dist site src/*.egg-info
