# All set-up happens here: `make demo` and `make test` create .venv when missing.
# GPU=cuda12 (e.g. `make demo GPU=cuda12`) also installs JAX's CUDA 12 build (requirements-cuda12.lock).
PY ?= python3.11
GPU ?=
VENV := .venv
BIN := $(VENV)/bin
ifneq ($(GPU),)
ifeq ($(wildcard requirements-$(GPU).lock),)
$(error GPU=$(GPU): no requirements-$(GPU).lock; the GPU build this project locks is GPU=cuda12)
endif
GPU_STAMP := $(VENV)/.installed-$(GPU)
endif

$(BIN)/marlow: pyproject.toml requirements.lock requirements-dev.lock
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-dev.lock
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	touch $(BIN)/marlow

$(VENV)/.installed-%: requirements-%.lock $(BIN)/marlow
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-dev.lock -r $<
	touch $@

.PHONY: venv demo test test-all lint bench clean
venv: $(BIN)/marlow $(GPU_STAMP)

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
