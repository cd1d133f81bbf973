# One command each (see README.md):
#   make run    the service on the bundled example client, in-memory state, 127.0.0.1:8080
#   make test   install everything the tests need, then run the whole suite (Python + JS)
VENV   ?= .venv
PY     := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: run test test-python test-js lint install

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
