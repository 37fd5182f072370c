# DTA-SNN companion. On a fresh machine: `make reproduce` and `make test` do all the set-up.
PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
PRESET  ?= cpu
DATASET ?= fashion-mnist
DOWNLOAD ?= 0
NOTEBOOKS ?=
REUSE   ?= 0
PYTEST_ARGS ?=
# where tests and nbval write runs, figures and tables (never the committed reports/); reused between local runs
TEST_REPORTS ?= build/test-reports
NBVAL   := --nbval-lax --nbval-sanitize-with tests/nbval_sanitize.cfg --nbval-cell-timeout=600

.PHONY: setup data browser test unit nbval render reproduce lab bench book clean help

help:
	@echo "make reproduce [PRESET=cpu|smoke|paper] [DATASET=fashion-mnist|cifar10|...] [REUSE=1]  run the notebooks with papermill"
	@echo "make test       unit tests + nbval over notebooks/ (outputs under TEST_REPORTS=build/test-reports)"
	@echo "make render     re-execute notebooks/ with default parameters (refresh the committed outputs)"
	@echo "make lab        open JupyterLab"
	@echo "make bench      python -m dta_lib.bench"
	@echo "make book       the notebooks and guides as a static HTML book in build/book (no execution)"

setup: $(STAMP)

# Idempotent: re-runs only when the pins or the project metadata change.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@$(MAKE) --no-print-directory data
	@touch $(STAMP)

# Offline default data: Debian's dataset-fashion-mnist (70,000 real images), when root with apt.
data:
	@sh scripts/install_offline_data.sh

# Debian's chromium + chromium-driver for the book's browser test (CI runs this; the test skips without them)
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && (apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 || \
	    { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1; }) || \
	    echo "note: chromium / chromium-driver not installed (root with apt needed); the browser test will skip" >&2; }

test: setup
	DTA_OUTPUT_DIR=$(abspath $(TEST_REPORTS)) $(PY) -m pytest tests notebooks $(NBVAL) -p no:cacheprovider $(PYTEST_ARGS)

unit: setup
	DTA_OUTPUT_DIR=$(abspath $(TEST_REPORTS)) $(PY) -m pytest tests -p no:cacheprovider $(PYTEST_ARGS)

nbval: setup
	DTA_OUTPUT_DIR=$(abspath $(TEST_REPORTS)) $(PY) -m pytest notebooks $(NBVAL) -p no:cacheprovider $(PYTEST_ARGS)

# maintainers: re-execute notebooks/ with their default parameters and commit the outputs nbval checks
render: setup
	$(PY) -m dta_lib.reproduce --refresh-committed $(if $(NOTEBOOKS),--notebooks $(NOTEBOOKS))

reproduce: setup
	$(PY) -m dta_lib.reproduce --preset $(PRESET) --dataset $(DATASET) $(if $(filter 1 yes true,$(REUSE)),--reuse) $(if $(filter 1 yes true,$(DOWNLOAD)),--download) $(if $(NOTEBOOKS),--notebooks $(NOTEBOOKS))

lab: setup
	$(VENV)/bin/jupyter lab notebooks

bench: setup
	$(PY) -m dta_lib.bench

# the book: README, notebooks with their committed outputs, study renders, guides (Sphinx + myst-nb, nothing executed)
book: setup
	$(PY) -m sphinx -b html -q -c book . build/book
	@echo "book: build/book/index.html"

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
