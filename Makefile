# One command each (see README.md):
#   make run    the service on the bundled example client, in-memory state, 127.0.0.1:8080
#   make test   install everything the tests need, then run the whole suite (Python + JS)
#   make test-fast  the unit tests only (no processes, Valkey, Sentinel), in seconds
#   make drill  the three-region drill: faults under load, report + timeline in results/drill
#   make demo   the same three regions behind HAProxy with a live status page, until Ctrl-C
#   make lock   re-resolve the newest allowed versions into constraints.txt (then test, commit)
VENV   ?= .venv
PY     := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: run test test-fast test-python test-js lint install lock promtool system-deps drill demo drill-deps

# Every dependency (runtime, test, build backend) at the version pinned in constraints.txt;
# PIP_CONSTRAINT also reaches pip's isolated build environment (setuptools).
$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	PIP_CONSTRAINT=$(CURDIR)/constraints.txt $(PY) -m pip install --quiet -e '.[test,drill]'
	touch $@

# A fresh venv with the newest versions pyproject.toml allows, written back as the pins.
lock:
	rm -rf .lock-venv && python3 -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet -e '.[test,drill]' 'setuptools>=77'
	.lock-venv/bin/python deploy/scripts/lock.py > constraints.txt
	rm -rf .lock-venv

# promtool for the alert tests (fetched once into ~/.cache/tokensvc/promtool).
promtool:
	@bash deploy/scripts/promtool.sh

install: $(VENV)/.installed

run: install
	$(VENV)/bin/tokensvc serve

lint: install
	$(VENV)/bin/ruff check tokensvc tests bench drill deploy
	$(VENV)/bin/ruff format --check tokensvc tests bench drill deploy
	$(VENV)/bin/mypy tokensvc drill tests

# What the suite needs from Debian: HAProxy for the drill's short form (Chromium comes with
# the JS tests' ensure-chromium.sh, promtool with deploy/scripts/promtool.sh).
system-deps:
	@command -v haproxy >/dev/null || test -x /usr/sbin/haproxy || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy; }
	bash js/scripts/ensure-chromium.sh
	cd drill && npm ci --no-audit --no-fund --loglevel=error

test-python: install system-deps
	$(PY) -m pytest

# The unit tests: in-process only (the cost markers are in pyproject.toml, applied by
# tests/conftest.py, which fails an unmarked test that starts a process).
FAST := not (process or valkey or sentinel or slow or drill)
test-fast: install
	$(PY) -m pytest -q -m "$(FAST)"

test-js: install
	bash js/scripts/ensure-chromium.sh
	cd js && npm ci --no-audit --no-fund --loglevel=error && npm run typecheck && npm test

test: lint test-python test-js

# The drill's own needs: HAProxy (apt), Chromium (as the JS tests), matplotlib (the drill extra),
# the Voice SDK and playwright-core (drill/package.json).
RATE ?= 200
drill-deps: install system-deps

drill: drill-deps
	$(PY) -m drill run --rate $(RATE)

demo: drill-deps
	$(PY) -m drill demo
