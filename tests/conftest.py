"""Shared helpers: small configs that train in seconds, and a runner for the CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# One XLA thread per test process (pytest -n auto runs one per core), set before JAX starts; subprocesses inherit it.
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

from cartpole_dqn import preset  # noqa: E402


def tiny(name: str = "sample-efficient", **overrides):
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


def balancer():
    """A CartPole network set by hand: push toward where the pole leans and falls (and, gently, toward the cart's
    drift), a linear controller as two ReLU units; it keeps every episode to the 500-step cap."""
    import jax.numpy as jnp

    from cartpole_dqn.core.networks import Network

    gains = jnp.array([0.2, 0.5, 1.0, 1.0])          # x, x_dot, theta, theta_dot
    net = Network(4, 2, (2,))
    params = {"layer0": {"weight": jnp.stack([gains, -gains], axis=1), "bias": jnp.zeros(2)},
              "head": {"weight": jnp.array([[0.0, 1.0], [1.0, 0.0]]), "bias": jnp.zeros(2)}}
    return net, params


def write_run(folder, net, seed_params, env: str = "CartPole-v1"):
    """A K-seed run folder as training leaves it for `load`: seed-<n>/model.safetensors, one per params."""
    from cartpole_dqn.checkpoint import save_model

    for seed, params in enumerate(seed_params):
        (folder / f"seed-{seed}").mkdir(parents=True)
        save_model(folder / f"seed-{seed}" / "model.safetensors", net, params, {"env": env, "seed": seed})
    return folder
