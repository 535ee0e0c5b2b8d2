# Two commands do all the set-up on a fresh machine:
#   make train   creates .venv, installs what training needs, trains an agent on CartPole (ARGS="..." adds flags)
#   make test    the same, plus the test tools (pytest, Optuna, TensorBoard, Box2D, ...), then runs the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=

.PHONY: train test bench install clean

# uv installs the same packages as pip from the same pins in a fraction of the time (a fresh .venv with the test
# tools: 38 s against 97 s, 2026-12-06, docs/experiments.md); pip does the work where uv cannot (an index only pip
# is set up for).
PIP := $(BIN)/pip install --quiet --disable-pip-version-check
UV := $(BIN)/uv pip install --quiet --python $(BIN)/python --compile-bytecode
define pip_install
	$(UV) -c constraints.txt $(1) || $(PIP) -c constraints.txt $(1)
endef

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) -c constraints.txt uv || echo "make: uv could not be installed; pip installs instead" >&2
	$(call pip_install,-e .)
	touch $@

$(BIN)/.installed-test: $(BIN)/.installed
	$(call pip_install,-e '.[test]')
	touch $@

install: $(BIN)/.installed

train: $(BIN)/.installed
	$(BIN)/cartpole-dqn train $(ARGS)

test: $(BIN)/.installed-test
	$(BIN)/python -m pytest -q -n auto

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/solve_speed.py $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
