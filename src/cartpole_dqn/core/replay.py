"""Replay memory as arrays inside the agent's state: one seed's circular buffer, written and sampled by pure
functions (a batch of seeds is the same code under `jax.vmap`).

n-step returns are assembled as transitions arrive: each new step adds its discounted reward to the up to n - 1
transitions before it that it continues, and becomes their bootstrap state, so sampling is a plain gather. They
stop at an episode's end (a termination does not bootstrap; a truncation bootstraps from the last state reached),
at the newest transition, and they follow the buffer round its wrap-around.

Prioritized replay (Schaul et al., 2016) keeps a sum tree of 2 * leaves nodes; sampling descends all B paths at
once, one level per step, and a write sets the leaves and recomputes their ancestors.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class Memory(NamedTuple):
    """One seed's buffer, written a row of E transitions at a time (one per environment, in order), so environment
    e's previous transition sits E slots back. `reward` is the discounted return of up to n steps from the
    transition, `next_obs` the state it bootstraps from and `discount` gamma^m for the m steps summed, or 0 where
    the episode terminated."""

    obs: jax.Array            # [C, obs]
    action: jax.Array         # [C] int32
    reward: jax.Array         # [C]
    next_obs: jax.Array       # [C, obs]
    discount: jax.Array       # [C]
    pos: jax.Array            # slot the next row goes to
    size: jax.Array           # transitions held
    episode_steps: jax.Array  # [E] transitions of each environment's current episode already stored
    tree: jax.Array           # [2 * leaves] priority sums (prioritized), else [0]
    max_priority: jax.Array


class Batch(NamedTuple):
    """Transitions [B, ...] ready for y = reward + discount * V(next_obs), with importance weights and slots."""

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    next_obs: jax.Array
    discount: jax.Array
    weight: jax.Array
    index: jax.Array


def _depth(capacity: int) -> int:
    return max(0, (capacity - 1).bit_length())


def capacity(buffer_size: int, num_envs: int) -> int:
    """Slots of a memory asked to hold `buffer_size` transitions from `num_envs` environments: whole rows."""
    return max(1, buffer_size // num_envs) * num_envs


def init(buffer_size: int, obs_size: int, num_envs: int = 1, prioritized: bool = False) -> Memory:
    c = capacity(buffer_size, num_envs)
    leaves = 1 << _depth(c)
    return Memory(jnp.zeros((c, obs_size)), jnp.zeros(c, jnp.int32), jnp.zeros(c), jnp.zeros((c, obs_size)),
                  jnp.zeros(c), jnp.int32(0), jnp.int32(0), jnp.zeros(num_envs, jnp.int32),
                  jnp.zeros(2 * leaves if prioritized else 0), jnp.float32(1.0))


def add(mem: Memory, obs: jax.Array, action: jax.Array, reward: jax.Array, next_obs: jax.Array,
        terminal: jax.Array, episode_end: jax.Array, *, gamma: float, n_step: int, alpha: float = 0.6,
        write: jax.Array | bool = True) -> Memory:
    """Store one row: a transition [E, ...] of each environment. `terminal`: do not bootstrap from next_obs;
    `episode_end`: that environment's next transition belongs to another episode (termination or truncation),
    where n-step returns stop. Nothing changes unless `write` (a seed that has stopped learning keeps its memory
    as it was)."""
    c, e = mem.obs.shape[0], mem.episode_steps.shape[0]
    write = jnp.asarray(write)
    keep = 1.0 - terminal.astype(jnp.float32)
    row = mem.pos + jnp.arange(e)                           # [E] the slots this row fills
    reward_, next_obs_, discount_ = mem.reward, mem.next_obs, mem.discount
    back = jnp.arange(1, min(n_step, c // e))               # rows back; never round the whole buffer onto this row
    if back.size:
        powers = jnp.cumprod(jnp.full((n_step,), gamma, jnp.float32))
        slots = (row[:, None] - back * e) % c               # [E, n-1] each environment's own earlier transitions
        open_ = (back <= mem.episode_steps[:, None]) & write
        reward_ = reward_.at[slots].add(jnp.where(open_, powers[:back.size] * reward[:, None], 0.0))
        next_obs_ = next_obs_.at[slots].set(jnp.where(open_[..., None], next_obs[:, None], next_obs_[slots]))
        discount_ = discount_.at[slots].set(jnp.where(open_, powers[1:back.size + 1] * keep[:, None],
                                                      discount_[slots]))

    def put(array: jax.Array, value: jax.Array) -> jax.Array:
        return array.at[row].set(jnp.where(write, value, array[row]))

    tree = mem.tree
    if tree.size:  # a new transition gets the highest priority seen, so it is replayed at least once
        tree = _set_priority(tree, row, jnp.where(write, mem.max_priority ** alpha, tree[tree.size // 2 + row]))
    return Memory(put(mem.obs, obs), put(mem.action, action.astype(jnp.int32)), put(reward_, reward),
                  put(next_obs_, next_obs), put(discount_, gamma * keep),
                  jnp.where(write, (mem.pos + e) % c, mem.pos), jnp.where(write, jnp.minimum(mem.size + e, c),
                                                                        mem.size),
                  jnp.where(write, jnp.where(episode_end, 0, mem.episode_steps + 1), mem.episode_steps),
                  tree, mem.max_priority)


def sample(mem: Memory, key: jax.Array, batch_size: int, *, replacement: bool = True,
           beta: jax.Array | float = 1.0) -> Batch:
    """A batch: uniform (with or without replacement) or, with a sum tree, proportional to priority."""
    weight = jnp.ones(batch_size)
    if mem.tree.size:
        idx, prob = _sample_proportional(mem, key, batch_size)
        # Importance weights (N * P(i))^-beta, normalised by the batch maximum so they only ever scale down.
        w = (mem.size * prob) ** (-beta)
        weight = w / w.max()
    elif replacement:
        idx = jax.random.randint(key, (batch_size,), 0, mem.size)
    else:
        idx = _without_replacement(key, mem.size, batch_size)
    return batch_at(mem, idx, weight)


def batch_at(mem: Memory, idx: jax.Array, weight: jax.Array | None = None) -> Batch:
    """The transitions in slots `idx` [B], with their n-step returns and bootstrap discounts."""
    weight = jnp.ones(idx.shape) if weight is None else weight
    return Batch(mem.obs[idx], mem.action[idx], mem.reward[idx], mem.next_obs[idx], mem.discount[idx], weight, idx)


def _without_replacement(key: jax.Array, n: jax.Array, b: int) -> jax.Array:
    """b distinct slots of 0..n-1 in random order, as Python's random.sample draws them: Floyd's algorithm picks
    a uniform subset in b draws whatever n is, and a permutation orders it."""
    k_pick, k_order = jax.random.split(key)
    draws = jax.random.uniform(k_pick, (b,))

    def pick(j, chosen):
        top = n - b + j                                    # candidate range 0..top
        t = jnp.minimum((draws[j] * (top + 1)).astype(jnp.int32), top)
        taken = jnp.any(chosen == t)
        return chosen.at[j].set(jnp.where(taken, top, t))

    chosen = jax.lax.fori_loop(0, b, pick, jnp.full((b,), -1, jnp.int32))
    return jax.random.permutation(k_order, chosen)


def _sample_proportional(mem: Memory, key: jax.Array, batch_size: int) -> tuple[jax.Array, jax.Array]:
    """Stratified proportional sampling: one draw in each of B equal slices of the total priority."""
    tree, leaves = mem.tree, mem.tree.size // 2
    total = tree[1]
    u = (jnp.arange(batch_size) + jax.random.uniform(key, (batch_size,))) * total / batch_size
    node = jnp.ones(batch_size, jnp.int32)
    for _ in range(_depth(leaves)):             # one step down the tree per level, every path at once
        left = tree[2 * node]
        right = u > left
        u = jnp.where(right, u - left, u)
        node = 2 * node + right
    idx = jnp.minimum(node - leaves, mem.size - 1)   # rounding can land past the last filled leaf
    return idx, tree[idx + leaves] / total


def update_priorities(mem: Memory, idx: jax.Array, td_error: jax.Array, *, alpha: float, eps: float,
                      write: jax.Array | bool = True) -> Memory:
    """Priority p = (|td| + eps)^alpha for the sampled slots."""
    p = jnp.abs(td_error) + eps
    leaves = mem.tree.size // 2
    value = jnp.where(write, p ** alpha, mem.tree[idx + leaves])
    return mem._replace(tree=_set_priority(mem.tree, idx, value),
                        max_priority=jnp.where(write, jnp.maximum(mem.max_priority, p.max()), mem.max_priority))


def _set_priority(tree: jax.Array, idx: jax.Array, value: jax.Array) -> jax.Array:
    leaves = tree.size // 2
    node = idx + leaves
    tree = tree.at[node].set(value)
    for _ in range(_depth(leaves)):            # recompute the ancestors, one level per pass
        node = node // 2
        tree = tree.at[node].set(tree[2 * node] + tree[2 * node + 1])
    return tree
