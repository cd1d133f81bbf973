# One command each (see README.md):
#   make run    the service on the bundled example client, in-memory state, 127.0.0.1:8080
#   make test   install everything the tests need, then run the whole suite (Python + JS)
#   make drill  the three-region drill: faults under load, report + timeline in results/drill
#   make demo   the same three regions behind HAProxy with a live status page, until Ctrl-C
VENV   ?= .venv
PY     := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: run test test-python test-js lint install drill demo drill-deps

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

run: install
	$(VENV)/bin/tokensvc serve

lint: install
	$(VENV)/bin/ruff check tokensvc tests bench
	$(VENV)/bin/mypy tokensvc

test-python: install
	$(PY) -m pytest

test-js: install
	bash js/scripts/ensure-chromium.sh
	cd js && npm ci --no-audit --no-fund --loglevel=error && npm test

test: lint test-python test-js

# The drill's own needs: HAProxy (apt), Chromium (as the JS tests), matplotlib (the drill extra),
# the Voice SDK and playwright-core (drill/package.json).
RATE ?= 200
drill-deps: install
	command -v haproxy >/dev/null || test -x /usr/sbin/haproxy || apt-get install -y -q haproxy
	bash js/scripts/ensure-chromium.sh
	$(PY) -m pip install --quiet -e '.[test,drill]'
	cd drill && npm ci --no-audit --no-fund --loglevel=error

drill: drill-deps
	$(PY) -m drill run --rate $(RATE)

demo: drill-deps
	$(PY) -m drill demo
