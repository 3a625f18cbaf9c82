# mslib — Multi-Scale Medical Image Segmentation, step by step
#
#   make test        set up .venv (first time) and run the whole test suite
#   make book        set up .venv, execute every chapter (quick profile), build _build/html
#   make notebooks   re-execute the chapters in place (quick profile) and store their outputs
#   make lab         open the chapters in JupyterLab (the .venv kernel), to run them yourself
#   make book-pdf    print the built book to _build/pdf (solutions open; needs chromium)
#   make bench       print the benchmark tables
#
# PYTHON picks the interpreter that creates .venv (3.10+).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
export TQDM_DISABLE ?= 1
export PYDEVD_DISABLE_FILE_VALIDATION := 1
# Agg only where no notebook kernel draws for a reader: under Agg `plt.show()` puts nothing
# into a notebook, so the book's executions (tools/book.py) unset it for their kernels.
test test-fast bench: export MPLBACKEND := Agg

.PHONY: help venv test test-fast lint book book-html book-pdf notebooks lab bench clean

help:
	@sed -n '3,11p' Makefile

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -e ".[book,test]"
	@touch $(STAMP)

# two workers on two cores, one thread each (notebook kernels inherit this)
test: $(STAMP)
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

# lint and layering (also run inside `make test` by tests/test_layering.py); contracts in pyproject.toml
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

test-fast: $(STAMP)
	$(PY) -m pytest -n 2 -m "not notebook and not slow" $(PYTEST_ARGS)

notebooks: $(STAMP)
	$(PY) tools/book.py execute --in-place

book: $(STAMP)
	$(PY) tools/book.py build --execute

book-html: $(STAMP)
	$(PY) tools/book.py build --strict

book-pdf: $(STAMP)
	@test -e _build/html/index.html || $(MAKE) book-html
	$(PY) tools/book.py pdf

lab: $(STAMP)
	$(VENV)/bin/jupyter lab book/

bench: $(STAMP)
	$(PY) -m benchmarks.run_all

clean:
	rm -rf _build .pytest_cache
