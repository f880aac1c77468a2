# Everything runs from .venv, created on first use. `make demo` and `make test` are all a new
# user needs; see README.md.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: venv node demo test test-fast ui dev dagster-home clean bench torture

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

dagster-home: dagster.dev.yaml
	mkdir -p .dagster_home
	cp dagster.dev.yaml .dagster_home/dagster.yaml

# The webserver (http://127.0.0.1:3000) and the daemon, which launches what the UI queues, on
# the instance `make demo` wrote its runs to. Ctrl-C stops both.
ui: venv dagster-home
	DAGSTER_HOME=$(CURDIR)/.dagster_home scripts/together.sh \
	  "$(BIN)/dagster-daemon run -w workspace.yaml" \
	  "$(BIN)/dagster-webserver -h 127.0.0.1 -p 3000 -w workspace.yaml"

# The demo source, the Dagster webserver (http://127.0.0.1:3000), the daemon (schedules, the
# resume sensor, run queue and monitoring) and the retry API (http://127.0.0.1:8000), on the
# embedded defaults. Ctrl-C stops all four.
dev: venv dagster-home
	DAGSTER_HOME=$(CURDIR)/.dagster_home ETL_DAGSTER_WEBSERVER_URL=http://127.0.0.1:3000 scripts/together.sh \
	  "$(BIN)/etl-assets demo-source --patients $${DEMO_PATIENTS:-40000}" \
	  "$(BIN)/dagster-daemon run -w workspace.yaml" \
	  "$(BIN)/dagster-webserver -h 127.0.0.1 -p 3000 -w workspace.yaml" \
	  "$(BIN)/etl-assets api --host 127.0.0.1 --port 8000"

clean:
	rm -rf .etl_data .dagster_home

# Side by side with dlt and the machine's ceilings; writes bench/RESULTS.md. Needs the
# PostgreSQL of `make test` (ETL_BENCH_DATABASE_URL overrides). BENCH_ARGS=--quick for a smoke run.
bench: venv
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# Fault injection over whole runs (SIGKILL, timeouts, 429/5xx, hangs, drops, killed and restarted
# PostgreSQL) on a throwaway cluster; see README.md. TORTURE_ARGS="--seeds 100" for more.
torture: venv
	$(BIN)/python -m etl_assets_tests.torture $(TORTURE_ARGS)
