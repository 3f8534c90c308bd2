# Two set-up commands (README): `make demo` and `make test`. Both build the environment themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo dev test lint format sandbox env clean

# --compile-bytecode: uv compiles nothing by default, and where PYTHONDONTWRITEBYTECODE is set (CI, containers)
# every process would compile dagster's sources again: about 3.5 s more per run worker and per CLI call.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.8
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e ".[dev]"
	touch $(STAMP)

env: $(STAMP)

demo: $(STAMP)
	$(BIN)/mx-pipeline demo

dev: $(STAMP)
	$(BIN)/mx-pipeline dev

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -n 2 --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

sandbox: $(STAMP)
	$(BIN)/mx-pipeline sandbox

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
