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

test: lint
	$(BIN)/pytest -q

bench: $(BIN)/.installed
	bash bench/run.sh

contract: $(BIN)/.installed
	../shared/contract/run.sh

clean:
	rm -rf $(VENV) .tokens-forge .pytest_cache
