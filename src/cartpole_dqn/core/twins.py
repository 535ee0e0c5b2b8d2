"""JAX twins of gymnasium tasks.

The compiled core runs a whole chunk of training -- acting, stepping the environment, storing and learning -- as one
program (`jax.lax.scan` over steps, `jax.vmap` over seeds). A gymnasium environment is Python and NumPy, so it cannot
live inside that program; a gymnax environment is pure JAX, so it can. This module names, for each gymnasium id the
core supports, the gymnax environment that reproduces it and the parameter overrides that make the two agree
(tests/test_core_twins.py steps both from the same states with the same actions and checks that they do).

The gymnax step API used by the core (gymnax 1.0.1):

- `env.step(key, state, action, params)` returns `(obs, state, reward, terminated, truncated, info)` and resets
  automatically: when the episode ended, `obs` and `state` are already those of a new episode and the true last
  observation is `info["final_observation"]`. `truncated` is `state.time >= params.max_steps_in_episode`, the
  counterpart of gymnasium's `TimeLimit`.
- `env.step_env(key, state, action, params)` is the bare transition, without reset or time limit.

Both compute in float32 (gymnasium's classic-control physics runs in float64 and casts the observation to float32),
so trajectories agree step by step to float32 precision but drift apart over long horizons, most in chaotic Acrobot.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any


class _OnFirstUse(types.ModuleType):
    """A module that imports itself when one of its attributes is first read."""

    def __getattr__(self, name: str) -> Any:
        sys.modules.pop(self.__name__, None)
        real = importlib.import_module(self.__name__)
        self.__dict__.update(vars(real))
        return getattr(real, name)


def _import_on_first_use(name: str) -> None:
    spec = None if name in sys.modules else importlib.util.find_spec(name)
    if spec is not None:
        module = _OnFirstUse(name)
        module.__spec__ = spec
        sys.modules[name] = module


# gymnax imports all its environments, and Pong's renderer imports seaborn, which imports scipy.stats: 1.5 s of
# every process's start-up (measured 2026-12-06, 2.6 s against 4.2 s for `import gymnax`) for a module no twin uses.
_import_on_first_use("seaborn")

import gymnax  # noqa: E402
from gymnax.environments.environment import Environment, EnvParams  # noqa: E402

# gymnasium id -> (gymnax id, EnvParams overrides). `max_steps_in_episode` is always given so that the episode cap
# is stated here, equal to gymnasium's registered `max_episode_steps`.
TWINS: dict[str, tuple[str, dict[str, Any]]] = {
    # gymnasium's CartPole-v0 and -v1 differ only in the time limit (200 vs 500 steps).
    "CartPole-v0": ("CartPole-v1", {"max_steps_in_episode": 200}),
    "CartPole-v1": ("CartPole-v1", {"max_steps_in_episode": 500}),
    "Acrobot-v1": ("Acrobot-v1", {"max_steps_in_episode": 500}),
    "MountainCar-v0": ("MountainCar-v0", {"max_steps_in_episode": 200}),
}


def has_twin(env_id: str) -> bool:
    """Whether the gymnasium task `env_id` has a JAX twin the compiled core can run."""
    return env_id in TWINS


def make_twin(env_id: str) -> tuple[Environment, EnvParams]:
    """The gymnax environment and params that reproduce gymnasium's `env_id`.

    Raises ValueError for an id without a twin.
    """
    if env_id not in TWINS:
        raise ValueError(f"{env_id!r} has no JAX twin; the compiled core supports {', '.join(sorted(TWINS))}")
    gymnax_id, overrides = TWINS[env_id]
    env, params = gymnax.make(gymnax_id)
    return env, params.replace(**overrides)
