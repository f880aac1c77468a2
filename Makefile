# Everything runs from .venv, created on first use. `make demo` and `make test` are all a new
# user needs; see README.md.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: venv node demo test test-fast ui dev clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m pip check
	touch $(STAMP)

node: node_modules/.installed-stamp

node_modules/.installed-stamp: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: venv
	$(BIN)/etl-assets demo

test: venv node
	$(BIN)/python -m pytest $(PYTEST_ARGS)

ui: venv
	mkdir -p .dagster_home
	DAGSTER_HOME=$(CURDIR)/.dagster_home $(BIN)/dagster-webserver -h 127.0.0.1 -p 3000 -w workspace.yaml

clean:
	rm -rf .etl_data .dagster_home
