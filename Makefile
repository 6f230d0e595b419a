# The two commands of the README: `make run` and `make test`, each from a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test test-fast lint bench contract clean agent agent-sdk

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

run: $(BIN)/.installed
	$(BIN)/tokens-forge demo --host $(HOST) --port $(PORT)

# The examples against `make run` (same HOST and PORT): make agent ARGS="--api-key tf-…"
agent: $(BIN)/.installed
	$(BIN)/python examples/agent_report.py --base-url http://$(HOST):$(PORT)/v1 $(ARGS)

agent-sdk: $(BIN)/.installed
	$(BIN)/python examples/agent_sdk.py --base-url http://$(HOST):$(PORT)/v1 $(ARGS)

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests bench examples
	$(BIN)/mypy

# The second run: the core, guard and runs suites through a real PgBouncer in transaction pooling
# mode (tests/pgbouncer.py), as large deployments run the gateway (SPEC §10). The long property
# runs (TF_LONG_TESTS=1) were the first run's: the pooler changes connections, not the ledger's SQL.
test: lint
	$(BIN)/pytest -q --durations=15
	TF_TEST_PGBOUNCER=1 TF_LONG_TESTS=0 $(BIN)/pytest -q tests/pipeline tests/ledger tests/runs

# The inner loop, under 2 minutes on 2 cores (117 s, 996 tests): the suite without the tests marked
# `slow` (those that start processes of their own: live gateways, browsers, nginx, PgBouncer, their
# own PostgreSQL; and the fuzzers of tests/hostile: tests/conftest.py marks them by the fixtures they
# use, or by module and directory) and without the long property runs. `make test` is the whole suite.
test-fast: lint
	TF_LONG_TESTS=0 $(BIN)/pytest -q -m "not slow" --durations=10

bench: $(BIN)/.installed
	bash bench/run.sh

contract: $(BIN)/.installed
	../shared/contract/run.sh

clean:
	rm -rf $(VENV) .tokens-forge .pytest_cache
