# Two commands on a fresh machine: `make run` and `make test`. Both install what they need.
PYTHON ?= python3
# The interpreter .venv is made with: the system's own Python when it is the same version as
# $(PYTHON), else $(PYTHON). Debian's and Ubuntu's /usr/bin/python3 are built with
# profile-guided and link-time optimisation into one executable; a version manager's default
# build (pyenv's, first on PATH on this project's machines) has neither and loads libpython as
# a shared library. Every crawl, command and Prefect server is a new Python process: the suite
# spent 13-18% less CPU on Debian's build of 3.11 than on pyenv's (README, Tests).
SYSTEM_PYTHON := /usr/bin/python3
VENV_PYTHON ?= $(shell version='import sys; print(sys.version_info[:2])'; \
	if [ -x $(SYSTEM_PYTHON) ] && [ "$$($(SYSTEM_PYTHON) -c "$$version" 2>/dev/null)" = \
	     "$$($(PYTHON) -c "$$version" 2>/dev/null)" ]; then echo $(SYSTEM_PYTHON); \
	else echo $(PYTHON); fi)
VENV := .venv
TOOLS := .tools
UV_VERSION := 0.13.8
UV := $(TOOLS)/bin/uv
# Three workers on two cores. The suite once waited more than it computed (575 s with two
# workers, 459 with three, 419 with four, using 1.3 cores); it now keeps both cores busy
# (1,100 CPU s), and every worker adds its own Prefect API server, idling at 1.2 CPU s a
# minute, and its own collection of every test file (5-10 CPU s). Three and four take the
# same time within this machine's spread (the same tree: 611 s with three against 636 with
# four in a working tree, 679 against 664 from fresh clones; the tree before 674 s with
# six), and fewer workers load the tests that wait on Prefect's timing less (six made
# test_signals' tick run wait 20 s in Pending).
# Whole files go to one worker, so module fixtures (a crawled archive) are built once; the
# slowest files start first (tests/conftest.py), which pytest-xdist's default reordering of
# files by their number of tests undid: the 5-minute signals test started 13 minutes into
# the run, and ended it.
PYTEST_ARGS ?= -n 3 --dist loadfile --no-loadscope-reorder
PACKAGES := normalize storage spiders flows browse

# uv must use the machine's Python, never download one.
export UV_PYTHON_DOWNLOADS := never
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_HOME ?= $(CURDIR)/.newsarchive/prefect

.PHONY: install lint test run lock clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION)

# Bytecode is compiled at install (as pip does; uv does not by default): where
# PYTHONDONTWRITEBYTECODE is set, as in many containers, Python would otherwise compile every
# module it imports again in every process: seconds of CPU for each crawl, Prefect's server
# and each command (README, Throughput).
$(VENV)/.installed: requirements-dev.lock pyproject.toml | $(UV)
	$(UV) venv --quiet --allow-existing --python $(VENV_PYTHON) $(VENV)
	$(UV) pip sync --quiet --compile-bytecode --python $(VENV)/bin/python requirements-dev.lock
	$(UV) pip install --quiet --python $(VENV)/bin/python --no-deps -e .
	$(VENV)/bin/python -m compileall -q $(PACKAGES)
	touch $@

## install: create .venv with the project and its dev tools, from the lock files
install: $(VENV)/.installed

## lint: check the code with ruff (rules in pyproject.toml)
lint: install
	$(VENV)/bin/ruff check --quiet .

## test: lint, then run the test suite
test: lint
	@mkdir -p "$(PREFECT_HOME)"  # before two workers race to create it
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

## run: the service: each site of sites.toml crawled into ./archive on its schedule, plus
## the backfill deployment; starts a local Prefect server (UI on http://127.0.0.1:4200)
## unless PREFECT_API_URL names one. Ctrl-C stops both.
run: install
	$(VENV)/bin/newsarchive serve --config sites.toml

## lock: re-resolve the lock files after changing dependencies in pyproject.toml
lock: $(UV)
	$(UV) pip compile --quiet --universal --python-version 3.11 --generate-hashes \
		pyproject.toml -o requirements.lock
	$(UV) pip compile --quiet --universal --python-version 3.11 --generate-hashes \
		--group dev pyproject.toml -o requirements-dev.lock

clean:
	rm -rf $(VENV) $(TOOLS) .newsarchive
