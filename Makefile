# Two commands do everything on a fresh machine:  `make book`  and  `make test`.
# Both create the virtual environment in .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# The CPU wheel of torch 2.13.0; installed before the package so that pip never
# pulls a multi-GB CUDA build to satisfy the range in pyproject.toml.
TORCH  ?= torch==2.13.0

.PHONY: env book test smoke-notebooks bench student check-site clean

env: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[test,book]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

## Build the HTML book into _build/html (warnings are errors).
book: $(STAMP)
	$(VENV)/bin/jupyter-book build . -W -n --keep-going

## Run the test suite (unit tests + every notebook at smoke scale).
test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m samlib bench

student: $(STAMP)
	$(PY) tools/student_notebooks.py

check-site: $(STAMP)
	$(PY) tools/check_site.py _build/html

clean:
	rm -rf _build .jupyter_cache
