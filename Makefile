# All set-up happens here: `make demo` and `make test` create .venv when missing.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/marlow: pyproject.toml requirements.lock requirements-dev.lock
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-dev.lock
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	touch $(BIN)/marlow

.PHONY: venv demo test test-all lint bench clean
venv: $(BIN)/marlow

demo: venv
	$(BIN)/marlow demo

test: venv
	$(BIN)/ruff check marlow tests benchmarks
	$(BIN)/python -m pytest -q -x -n 2 -m "not exhaustive"

test-all: venv
	$(BIN)/ruff check marlow tests benchmarks
	$(BIN)/python -m pytest -q -x -n 2

bench: venv
	$(BIN)/python -m benchmarks.throughput

clean:
	rm -rf $(VENV) runs
