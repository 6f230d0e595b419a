# The two commands of the README: `make run` and `make test`, each from a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test test-fast lint bench contract clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

run: $(BIN)/.installed
	$(BIN)/tokens-forge demo

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
