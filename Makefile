# Two commands do everything on a fresh machine:  `make book`  and  `make test`.
# Both create the virtual environment in .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# The CPU wheel of torch 2.13.0; installed before the package so that pip never
# pulls a multi-GB CUDA build to satisfy the range in pyproject.toml.
TORCH  ?= torch==2.13.0

# The offline CIFAR-10 copy, where a checkout has one beside it (CI, our dev machines);
# elsewhere samlib downloads the dataset with torchvision when an experiment needs it.
SAMLIB_CIFAR10 ?= $(abspath $(wildcard ../shared/data/cifar10-jpeg/cifar10_jpeg.npz))
export SAMLIB_CIFAR10

.PHONY: env book test bench student check-site clean

env: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[test,book]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

## Build the HTML book into _build/html (warnings are errors). jupyter-cache re-runs a
## notebook only when its code changes, so the cache is dropped when samlib/ or results/ do.
book: $(STAMP)
	@if [ -d .jupyter_cache ] && { [ -n "$$(find samlib results -newer .jupyter_cache -print -quit)" ] || \
		[ "$$(cat .jupyter_cache/.scale 2>/dev/null)" != "$${SAMLIB_SCALE:-cpu}" ]; }; then \
		echo "samlib/, results/ or SAMLIB_SCALE changed: rebuilding every chapter"; rm -rf .jupyter_cache _build; fi
	$(VENV)/bin/jupyter-book build . -W -n --keep-going
	@echo "$${SAMLIB_SCALE:-cpu}" > .jupyter_cache/.scale; touch .jupyter_cache

## Run the test suite: unit tests, then every chapter notebook at smoke scale (nbmake).
test: $(STAMP)
	SAMLIB_SCALE=smoke $(PY) -m pytest -q --nbmake --nbmake-timeout=900 tests notebooks

bench: $(STAMP)
	$(PY) -m samlib bench

student: $(STAMP)
	$(PY) tools/student_notebooks.py --out build/student

check-site: $(STAMP)
	$(PY) -m pip install -q -e ".[browser]"
	$(PY) tools/check_site.py _build/html

clean:
	rm -rf _build .jupyter_cache
