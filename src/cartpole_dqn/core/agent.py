"""One DQN agent as pure functions: acting (epsilon-greedy) and learning (TD target, loss, optax step, target
sync). Everything the agent owns is `AgentState`; a batch of seeds is the same code under `jax.vmap`, so each
seed's gradient, clipping and Adam moments are its own by construction.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from ..config import Config
from . import hyper as hyper_lib
from .hyper import Hyper
from .networks import Network, Params
from .replay import Batch


class AgentState(NamedTuple):
    params: Params
    target: Params            # the online parameters themselves when there is no target network
    opt_state: optax.OptState
    epsilon: jax.Array
    updates: jax.Array        # gradient steps taken (target syncs count them)
    hyper: Hyper              # its numeric hyperparameters, data rather than constants of the program


def optimizer(cfg: Config) -> optax.GradientTransformation:
    """Per-seed gradient clipping, then Adam's normalised step; the learning rate is applied by `update`, as a
    function of env steps, so a schedule continues exactly on resume."""
    clip = [optax.clip_by_global_norm(cfg.max_grad_norm)] if cfg.max_grad_norm > 0 else []
    return optax.chain(*clip, optax.scale_by_adam(eps=cfg.adam_eps))


def learning_rate(h: Hyper, env_steps: jax.Array) -> jax.Array:
    """Linear from lr to lr_end over lr_decay_steps env steps (constant when they are equal)."""
    return hyper_lib.linear(h.lr, h.lr_end, h.lr_decay_steps, env_steps)


def init(cfg: Config, net: Network, key: jax.Array, h: Hyper | None = None) -> AgentState:
    """A fresh agent; its hyperparameters are `cfg`'s unless `h` gives others."""
    h = hyper_lib.of(cfg) if h is None else h
    params = net.init(key, cfg.init)
    # A copy, not the same arrays: the training program updates its state in place (donated buffers), and one
    # buffer passed twice cannot be donated.
    target = jax.tree.map(jnp.copy, params)
    return AgentState(params, target, optimizer(cfg).init(params), h.epsilon_start, jnp.int32(0), h)


def act(net: Network, params: Params, obs: jax.Array, epsilon: jax.Array, key: jax.Array,
        noisy: bool = False) -> jax.Array:
    """Epsilon-greedy actions for observations [..., obs], each explored on its own draw (noisy networks act on
    fresh noise in training)."""
    k_explore, k_action, k_noise = jax.random.split(key, 3)
    greedy = jnp.argmax(net.apply(params, obs, k_noise if noisy else None), axis=-1)
    random_action = jax.random.randint(k_action, greedy.shape, 0, net.n_actions)
    return jnp.where(jax.random.uniform(k_explore, greedy.shape) < epsilon, random_action, greedy)


def td_target(net: Network, online: Params, target: Params, batch: Batch, double: bool,
              keys: tuple[jax.Array | None, jax.Array | None] = (None, None)) -> jax.Array:
    """y = R + discount * Q_target(s', a*), with a* = argmax_a Q(s', a) from the online network under Double DQN
    and from the target network otherwise. The replay memory has folded gamma^n and termination into `discount`
    (0 after a true termination; a time-limit cut-off still bootstraps, since that state is not terminal)."""
    q_next = net.apply(target, batch.next_obs, keys[0])
    if double:
        best = jnp.argmax(net.apply(online, batch.next_obs, keys[1]), axis=-1)
        v_next = jnp.take_along_axis(q_next, best[:, None], axis=-1)[:, 0]
    else:
        v_next = q_next.max(axis=-1)
    return jax.lax.stop_gradient(batch.reward + batch.discount * v_next)


def td_loss(cfg: Config, h: Hyper, q: jax.Array, y: jax.Array, weight: jax.Array) -> jax.Array:
    """Huber (quadratic within huber_delta, linear beyond) or squared error, importance-weighted, batch mean."""
    if cfg.loss == "huber":
        elementwise = optax.huber_loss(q, y, delta=h.huber_delta)
    else:
        elementwise = (q - y) ** 2
    return (weight * elementwise).mean()


def update(cfg: Config, net: Network, agent: AgentState, batch: Batch, lr: jax.Array,
           key: jax.Array) -> tuple[AgentState, dict[str, jax.Array]]:
    """One replay: an optimizer step on the batch, or with `sequential_fit` one step per sample, in order (the
    article fitted Keras on one sample at a time). Returns the new state and statistics (loss, mean Q, mean
    |TD error|, and each sample's TD error for prioritized replay)."""
    if not cfg.sequential_fit:
        return _step(cfg, net, agent, batch, lr, key)

    def one(agent, sample):
        j, k = sample
        single = jax.tree.map(lambda x: jax.lax.dynamic_slice_in_dim(x, j, 1), batch)
        return _step(cfg, net, agent, single, lr, k)

    n = batch.action.shape[0]
    agent, stats = jax.lax.scan(one, agent, (jnp.arange(n), jax.random.split(key, n)))
    return agent, {"loss": stats["loss"].mean(), "q": stats["q"].mean(), "td": stats["td"].mean(),
                   "td_error": stats["td_error"].reshape(-1)}


def _step(cfg: Config, net: Network, agent: AgentState, batch: Batch, lr: jax.Array,
          key: jax.Array) -> tuple[AgentState, dict[str, jax.Array]]:
    k_target, k_select, k_online = jax.random.split(key, 3) if cfg.noisy else (None, None, None)
    # ALGO LOGIC: the TD target from the target network, then one gradient step towards it.
    y = td_target(net, agent.params, agent.target, batch, cfg.double, (k_target, k_select))
    return gradient_step(cfg, net, agent, batch.obs, batch.action, y, batch.weight, lr, k_online)


def gradient_step(cfg: Config, net: Network, agent: AgentState, obs: jax.Array, action: jax.Array, y: jax.Array,
                  weight: jax.Array, lr: jax.Array, key: jax.Array | None) -> tuple[AgentState, dict[str, jax.Array]]:
    """One optimizer step of Q(obs, action) towards the fixed targets `y` [B]; the target network follows. Shared
    by DQN (targets from replayed transitions) and PQN (Q(lambda) targets from a rollout)."""

    def loss_fn(params):
        q_all = net.apply(params, obs, key)
        q = jnp.take_along_axis(q_all, action[:, None], axis=-1)[:, 0]
        return td_loss(cfg, agent.hyper, q, y, weight), q

    (loss, q), grads = jax.value_and_grad(loss_fn, has_aux=True)(agent.params)
    steps, opt_state = optimizer(cfg).update(grads, agent.opt_state, agent.params)
    params = optax.apply_updates(agent.params, jax.tree.map(lambda s: -lr * s, steps))
    updates = agent.updates + 1
    if cfg.target_update_interval > 0:
        due = updates % cfg.target_update_interval == 0
        synced = optax.incremental_update(params, agent.target, agent.hyper.tau)
        target = jax.tree.map(lambda new, old: jnp.where(due, new, old), synced, agent.target)
    else:
        target = params                     # no target network (the article, PQN): bootstrap from the online one
    td = y - q
    return (AgentState(params, target, opt_state, agent.epsilon, updates, agent.hyper),
            {"loss": loss, "q": q.mean(), "td": jnp.abs(td).mean(), "td_error": td})


def learning_signal(cfg: Config, h: Hyper, reward: jax.Array, terminated: jax.Array,
                    truncated: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(reward to store, no-bootstrap flag) for one step's outcome.

    A truncated episode was cut off by the time limit: its last state is not terminal, so the target bootstraps
    from it. The article's code counted the cut-off as a failure and negated the final reward; the classic preset
    keeps that (`terminal_on_truncation`, `negate_final_reward`).
    """
    done = terminated | truncated
    if cfg.reward_clip > 0:
        reward = jnp.clip(reward, -cfg.reward_clip, cfg.reward_clip)
    reward = reward * h.reward_scale
    stored = jnp.where(done, -reward, reward) if cfg.negate_final_reward else reward
    return stored, (done if cfg.terminal_on_truncation else terminated)
