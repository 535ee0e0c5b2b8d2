"""Greedy evaluation inside the program: K seeds x M fresh episodes of a gymnax twin, played to their end.

Each call gets keys of its own, never training's, so evaluating cannot change what training does; the driver
derives them from the seed and the evaluation's number, so every evaluation is reproducible. Noisy networks act on
their mean weights when judged. The episodes take any greedy policy (observations -> actions): a network's argmax
here, an ONNX file's through a host callback (export.py), so both are judged on the same episodes.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from .loop import Task
from .networks import Network, Params


def episode_returns(net: Network, params: Params, task: Task, key: jax.Array, episodes: int,
                    epsilon: float = 0.0) -> jax.Array:
    """Undiscounted returns [episodes] of one seed's network, epsilon-greedy (0: greedy)."""
    return policy_returns(lambda obs: jnp.argmax(net.apply(params, obs), axis=-1), net.n_actions, task, key,
                          episodes, epsilon)


def policy_returns(act: Callable[[jax.Array], jax.Array], n_actions: int, task: Task, key: jax.Array,
                   episodes: int, epsilon: float = 0.0) -> jax.Array:
    """Undiscounted returns [episodes] of the greedy policy `act` (observations [..., obs] -> actions [...]),
    epsilon-greedy (0: greedy). Steps until every episode has ended (the twin's time limit ends them at its cap),
    so judging a poor early network is quick."""

    def play(key: jax.Array) -> jax.Array:
        k_reset, key = jax.random.split(key)
        obs, state = task.env.reset(k_reset, task.params)

        def step(carry):
            obs, state, total, done, key = carry
            key, k_env, k_explore, k_action = jax.random.split(key, 4)
            action = act(obs)
            if epsilon > 0:
                random_action = jax.random.randint(k_action, (), 0, n_actions)
                action = jnp.where(jax.random.uniform(k_explore) < epsilon, random_action, action)
            obs, state, reward, terminated, truncated, _ = task.env.step(k_env, state, action, task.params)
            total = total + jnp.where(done, 0.0, reward)
            return obs, state, total, done | terminated | truncated, key

        init = (obs, state, jnp.float32(0.0), jnp.bool_(False), key)
        return jax.lax.while_loop(lambda carry: ~carry[3], step, init)[2]

    return jax.vmap(play)(jax.random.split(key, episodes))


def eval_key(base: int, seed: int, number: int) -> jax.Array:
    """The key of seed `seed`'s evaluation number `number` in the stream `base` (evaluations during training and
    the final one use different bases, both apart from training's PRNGKey(seed))."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(base), seed), number)
