"""The training program built from a config: the network, the task, `init(seeds)` and `chunk(length)`.

One builder for the driver, the tests and every benchmark. A task with a JAX twin (CartPole, Acrobot,
MountainCar) is stepped inside the compiled program; any other gymnasium task is played by gymnasium's vector
environments on the host, which the program calls back once per vector step. Either way the state is one pytree
per seed (`core.loop.SeedState`, the next actions included) and a chunk is one compiled call.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from .config import PROGRAM, Config
from .core import hyper as hyper_lib
from .core import jit_brief, loop
from .core.networks import Network, input_bounds
from .core.twins import has_twin, make_twin
from .envs import check_spaces, make_env, make_envs, step_envs
from .rules import Rule

Chunk = Callable[[jax.Array, loop.SeedState, jax.Array], tuple[tuple[jax.Array, loop.SeedState], loop.Record]]


def network(cfg: Config, space: gym.spaces.Box, n_actions: int) -> Network:
    """The Q-network `cfg` asks for on an observation space (its bounds scale the inputs under obs_scale=bounds)."""
    bounds = input_bounds(space.low, space.high) if cfg.obs_scale == "bounds" else (None, None)
    return Network(int(space.shape[0]), n_actions, tuple(cfg.hidden), cfg.dueling, cfg.noisy, cfg.layer_norm,
                   cfg.noisy_sigma0, *bounds)


@dataclass
class Program:
    """What training runs: `init` makes the seeds' state, `chunk` the compiled step function. `envs` holds a host
    task's K x E gymnasium environments (None for a twin); `close` closes them."""

    cfg: Config
    net: Network
    task: loop.Task
    envs: gym.vector.SyncVectorEnv | None

    @property
    def on_host(self) -> bool:
        return self.envs is not None

    @property
    def key(self) -> tuple | None:
        """All that a compiled chunk is built from: the program's settings (`config.PROGRAM`), the device, the
        network and the solve rule; two programs with one key compile to the same code. None for a host task,
        whose program calls back into its own environments."""
        if self.on_host:
            return None
        program = tuple(getattr(self.cfg, name) for name in sorted(PROGRAM))
        return program, self.cfg.device, self.net, self.task.threshold, self.task.window

    def init(self, seeds: Sequence[int], hypers: Sequence[Mapping[str, Any]] | None = None) -> loop.SeedState:
        """The starting state of `seeds` [K] (a host task resets its environments on seeds s * E + j); `hypers`
        gives each seed numeric hyperparameters (`config.HYPER`) of its own in place of `cfg`'s."""
        init, args = self.initializer(seeds, hypers)
        return init(*args)

    def initializer(self, seeds: Sequence[int], hypers: Sequence[Mapping[str, Any]] | None = None
                    ) -> tuple[Callable, tuple]:
        """`init`'s jitted function and its arguments: the hyperparameters and budgets are data in them, so like
        the chunk it is one program for any of their values."""
        own = hypers if hypers is not None else [{}] * len(seeds)
        h = hyper_lib.stack([dataclasses.replace(self.cfg, **o) for o in own])
        budget = tuple(jnp.full(len(seeds), b) for b in loop.budgets(self.cfg))
        seeds_ = jnp.asarray(seeds)
        if not self.on_host:
            return jit_brief(jax.vmap(lambda s, h, b: loop.init_seed(self.cfg, self.net, self.task, s, h=h,
                                                                     budget=b))), (seeds_, h, budget)
        e = self.cfg.num_envs
        obs, _ = self.envs.reset(seed=[s * e + j for s in seeds for j in range(e)])
        obs = jnp.asarray(obs, jnp.float32).reshape(len(seeds), e, -1)
        return jit_brief(jax.vmap(lambda s, o, h, b: loop.init_seed(self.cfg, self.net, self.task, s, o, h, b))), (
            seeds_, obs, h, budget)

    def chunk(self, length: int) -> Chunk:
        """`chunk(t, states, n)`, jitted with the states donated: up to `length` vector steps (see
        `loop.make_chunk`)."""
        host = None if self.envs is None else functools.partial(step_envs, self.envs)
        return jax.jit(loop.make_chunk(self.cfg, self.net, self.task, length, host), donate_argnums=1)

    def restart_episodes(self, states: loop.SeedState, which: np.ndarray, entropy: Sequence[int]) -> loop.SeedState:
        """A host task's environments of the seeds `which` start new episodes on seeds drawn from `entropy`:
        their unfinished episodes are abandoned (n-step returns and lambda-returns stop where they were cut), and
        every seed's next actions are chosen afresh."""
        e = self.cfg.num_envs
        fresh = np.random.SeedSequence(list(entropy)).generate_state(len(which) * e).reshape(-1, e)
        obs = np.asarray(states.obs).copy()
        for i in np.flatnonzero(which):
            for j in range(e):
                obs[i, j], _ = self.envs.envs[i * e + j].reset(seed=int(fresh[i, j]))
        return _restart(self.cfg, self.net, states, jnp.asarray(which), jnp.asarray(obs, jnp.float32))

    def close(self) -> None:
        if self.envs is not None:
            self.envs.close()


@functools.partial(jax.jit, static_argnums=(0, 1))
def _restart(cfg: Config, net: Network, s: loop.SeedState, which: jax.Array, obs: jax.Array) -> loop.SeedState:
    def restart(a: jax.Array, value: Any = 0) -> jax.Array:
        return jnp.where(which.reshape(-1, *[1] * (a.ndim - 1)), value, a)

    if cfg.algo == "pqn":
        last = jnp.maximum(s.memory.filled - 1, 0)
        cut = jax.vmap(lambda end, i: end.at[i].set(True))(s.memory.episode_end, last)
        started = (which & (s.memory.filled > 0))[:, None, None]
        memory = s.memory._replace(episode_end=jnp.where(started, cut, s.memory.episode_end))
    else:
        memory = s.memory._replace(episode_steps=restart(s.memory.episode_steps))
    s = s._replace(obs=obs, ep_return=restart(s.ep_return), ep_length=restart(s.ep_length),
                   stat_sum=restart(s.stat_sum), stat_count=restart(s.stat_count), memory=memory)
    return jax.vmap(loop.choose, (None, None, 0))(cfg, net, s)


def build(cfg: Config, rule: Rule, seeds: int | None = None) -> Program:
    """The program that trains `cfg` under the solve rule `rule`, for `seeds` seeds at once (default
    `cfg.seeds`; only a host task's environments depend on it)."""
    probe = make_env(cfg.env)
    try:
        _, n_actions = check_spaces(probe, cfg.env)
        net = network(cfg, probe.observation_space, n_actions)
    finally:
        probe.close()
    if has_twin(cfg.env):
        return Program(cfg, net, loop.Task(*make_twin(cfg.env), rule.threshold, rule.window), None)
    envs = make_envs(cfg.env, (cfg.seeds if seeds is None else seeds) * cfg.num_envs)
    return Program(cfg, net, loop.Task(None, None, rule.threshold, rule.window), envs)
