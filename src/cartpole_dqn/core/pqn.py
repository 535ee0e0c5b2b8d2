"""PQN, parallel Q-learning (Gallici et al., 2024, "Simplifying Deep Temporal Difference Learning"), as pure
functions beside DQN's replay memory.

Each seed steps E environments for T steps into a rollout, then learns from it: Q(lambda) targets computed once,
backwards over the rollout, with the network as it stands, then a few epochs of minibatch gradient steps towards
them; the rollout is then dropped. No replay memory and no target network: LayerNorm in the Q-network keeps the
bootstrapped targets stable instead. Acting, environments, the optimizer step, scores and checkpoints are DQN's.

Unlike the public JAX versions we read, a time-limit cut-off is not a termination here: the target bootstraps
from the true last observation of a truncated episode, as DQN's does.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from ..config import Config
from . import agent as agent_lib
from .hyper import Hyper
from .networks import Network, Params


class Rollout(NamedTuple):
    """One seed's rollout being filled: row i holds every environment's i-th step."""

    obs: jax.Array            # [T, E, obs]
    action: jax.Array         # [T, E] int32
    reward: jax.Array         # [T, E]
    next_obs: jax.Array       # [T, E, obs] the observation the step led to (the true last one at an episode's end)
    terminal: jax.Array       # [T, E] no bootstrapping from next_obs
    episode_end: jax.Array    # [T, E] the next row belongs to another episode: the lambda-return stops here
    filled: jax.Array         # rows written


def init(steps: int, num_envs: int, obs_size: int) -> Rollout:
    return Rollout(jnp.zeros((steps, num_envs, obs_size)), jnp.zeros((steps, num_envs), jnp.int32),
                   jnp.zeros((steps, num_envs)), jnp.zeros((steps, num_envs, obs_size)),
                   jnp.zeros((steps, num_envs), jnp.bool_), jnp.zeros((steps, num_envs), jnp.bool_), jnp.int32(0))


def store(roll: Rollout, obs: jax.Array, action: jax.Array, reward: jax.Array, next_obs: jax.Array,
          terminal: jax.Array, episode_end: jax.Array, *, write: jax.Array | bool = True) -> Rollout:
    """Write one step of the E environments into the next row (nothing changes unless `write`)."""
    i = roll.filled
    row = (obs, action.astype(jnp.int32), reward, next_obs, terminal, episode_end)
    new = [a.at[i].set(jnp.where(write, v, a[i])) for a, v in zip(roll[:-1], row)]
    return Rollout(*new, jnp.where(write, i + 1, i))


def is_full(roll: Rollout) -> jax.Array:
    """Whether every row is written (for one seed's rollout or a batch of them)."""
    return roll.filled == roll.action.shape[-2]


def lambda_returns(h: Hyper, net: Network, params: Params, roll: Rollout) -> jax.Array:
    """Q(lambda) targets [T, E], computed backwards from the rollout's last row:

        G_t = r_t + gamma * (1 - terminal_t) * ((1 - lambda) * max_a Q(s'_t, a) + lambda * G_{t+1}),

    where the lambda-return does not reach past the end of an episode (G_{t+1} is replaced by max_a Q(s'_t, a)
    there, and after the last row)."""
    v_next = net.apply(params, roll.next_obs).max(axis=-1)              # [T, E]
    discount = h.gamma * (1.0 - roll.terminal.astype(jnp.float32))

    def back(g_next, row):
        reward, v, discount, cut = row
        g = reward + discount * jnp.where(cut, v, (1.0 - h.q_lambda) * v + h.q_lambda * g_next)
        return g, g

    _, g = jax.lax.scan(back, v_next[-1], (roll.reward, v_next, discount, roll.episode_end), reverse=True)
    return jax.lax.stop_gradient(g)


def update(cfg: Config, net: Network, agent: agent_lib.AgentState, roll: Rollout, lr: jax.Array,
           key: jax.Array) -> tuple[agent_lib.AgentState, dict[str, jax.Array]]:
    """Learn from a full rollout: its Q(lambda) targets, then `epochs` passes over it in `minibatches` shuffled
    minibatches, one optimizer step each. Returns the new state and the mean loss, Q and |TD error|."""
    # ALGO LOGIC: targets once, with the network that collected the rollout; then epochs of minibatch steps.
    y = lambda_returns(agent.hyper, net, agent.params, roll).reshape(-1)
    obs, action = roll.obs.reshape(y.shape[0], -1), roll.action.reshape(-1)

    def epoch(agent, key):
        k_order, k_noise = jax.random.split(key)
        order = jax.random.permutation(k_order, y.shape[0]).reshape(cfg.minibatches, -1)

        def minibatch(agent, part):
            idx, k = part
            return agent_lib.gradient_step(cfg, net, agent, obs[idx], action[idx], y[idx], jnp.ones(idx.shape),
                                           lr, k if cfg.noisy else None)

        return jax.lax.scan(minibatch, agent, (order, jax.random.split(k_noise, cfg.minibatches)))

    agent, stats = jax.lax.scan(epoch, agent, jax.random.split(key, cfg.epochs))
    # END ALGO LOGIC
    return agent, {name: stats[name].mean() for name in ("loss", "q", "td")}
