# One command each (see README.md):
#   make run    the service on the bundled example client, in-memory state, 127.0.0.1:8080
#   make test   install everything the tests need, then run the whole suite (Python + JS)
#   make lock   re-resolve the newest allowed versions into constraints.txt (then test, commit)
VENV   ?= .venv
PY     := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: run test test-python test-js lint install lock promtool

# Every dependency (runtime, test, build backend) at the version pinned in constraints.txt;
# PIP_CONSTRAINT also reaches pip's isolated build environment (setuptools).
$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	PIP_CONSTRAINT=$(CURDIR)/constraints.txt $(PY) -m pip install --quiet -e '.[test]'
	touch $@

# A fresh venv with the newest versions pyproject.toml allows, written back as the pins.
lock:
	rm -rf .lock-venv && python3 -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet -e '.[test]' 'setuptools>=77'
	.lock-venv/bin/python deploy/scripts/lock.py > constraints.txt
	rm -rf .lock-venv

# promtool for the alert tests (fetched once into ~/.cache/tokensvc/promtool).
promtool:
	@bash deploy/scripts/promtool.sh

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
