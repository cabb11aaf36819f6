# Two commands on a fresh machine:
#   make demo   -- create .venv, install pathexp, run the offline demo (main job)
#   make test   -- create .venv, install pathexp with test extras and system tools, lint, run the tests
# Also:
#   make test-fast  -- the tests without the slow, netns (root) and browser ones: a few minutes
#   make lint       -- ruff over the tree, mypy over probes/ and analysis/
#   make notebooks  -- install the notebooks extra (jupyterlab, papermill) and open JupyterLab on notebooks/
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PATHEXP_TEST_DATA ?= ../shared/data
export PATHEXP_TEST_DATA

.PHONY: demo test test-fast bench setup setup-test system-deps lint notebooks notebooks-setup

$(VENV)/.stamp-install: pyproject.toml probes/_atlasjson.c probes/_pqpack.c
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

setup: $(VENV)/.stamp-install

# Debian packages the test suite drives for real: iproute2 (network-namespace lab),
# scamper (differential oracle for local traces), chromium (report rendering),
# traceroute and mtr (real output for the converters), nftables (the lab's silent router).
system-deps:
	@bash tests/install-system-deps.sh

demo: setup
	$(VENV)/bin/pathexp demo

# two workers (the CI machine's two cores); a test file stays on one worker, so its
# module fixtures are built once
test: setup system-deps lint
	$(PY) -m pytest -q -n 2 --dist loadfile

test-fast: setup
	$(PY) -m pytest -q -n 2 --dist loadfile -m "not slow and not netns and not browser"

$(VENV)/.stamp-notebooks: $(VENV)/.stamp-install
	$(PY) -m pip install --quiet -e '.[test,notebooks]'
	touch $@

notebooks-setup: $(VENV)/.stamp-notebooks

notebooks: notebooks-setup
	$(VENV)/bin/jupyter lab notebooks/

# Benchmarks: plain scripts printing one JSON line per figure (see README, Performance).
bench: setup
	@for f in tests/bench/bench_*.py; do echo "# $$f"; $(PY) $$f || exit 1; done

lint: setup
	$(VENV)/bin/ruff check probes analysis tests
	$(VENV)/bin/mypy
