# Two commands do all the set-up on a fresh machine:
#   make train   creates .venv, installs what training needs, trains an agent on CartPole (ARGS="..." adds flags)
#   make test    the same, plus the test tools (pytest, Optuna, TensorBoard, Box2D, ...), then runs the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=

.PHONY: train test bench install clean

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e .
	touch $@

$(BIN)/.installed-test: $(BIN)/.installed
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
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
