# Two set-up commands on a fresh machine: `make up` and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up test lint bench clean

$(STAMP): pyproject.toml
	@command -v $(PY) >/dev/null || { echo "需要 Python 3.11 ($(PY))"; exit 1; }
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

up: $(STAMP)
	$(BIN)/yuqing up

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -rs -n 2

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf var .pytest_cache
