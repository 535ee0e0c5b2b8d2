"""Shared helpers: small configs that train in seconds, and a runner for the CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# One XLA thread per test process (pytest -n auto runs one per core), set before JAX starts; subprocesses inherit it.
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

from cartpole_dqn import preset  # noqa: E402


def tiny(name: str = "default", **overrides):
    """A preset shrunk to run in a second or two: small net, small budgets, no evaluation."""
    base = dict(hidden=(16, 16), max_steps=300, learning_starts=32, batch_size=8, eval_every=0,
                final_eval_episodes=0, plot_every=0)
    if name == "classic":
        base.update(batch_size=20, learning_starts=20)
    base.update(overrides)
    return preset(name, **base)


def run_cli(*args: str, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    env = {**kwargs.pop("env", os.environ), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "cartpole_dqn", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, **kwargs)


@pytest.fixture
def tiny_config():
    return tiny


@pytest.fixture(scope="session", autouse=True)
def _compile_cache():
    """The JAX core's compiled programs persist between test runs (and between xdist workers)."""
    from cartpole_dqn.core import enable_compile_cache

    enable_compile_cache()
