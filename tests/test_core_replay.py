"""The JAX replay memory: n-step returns assembled on arrival, sampling, and the sum tree."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cartpole_dqn.core import replay


def _add(mem, t, reward, terminal, end, **kw):
    kw = {"gamma": 0.9, "n_step": 1, **kw}
    t = jnp.float32(t)
    return replay.add(mem, t.reshape(1, 1), jnp.zeros(1, jnp.int32), jnp.float32(reward)[None],
                      (t + 1.0).reshape(1, 1), jnp.bool_(terminal)[None], jnp.bool_(end)[None], **kw)


@pytest.mark.parametrize("envs", [1, 3])
def test_n_step_fields_equal_a_direct_computation_on_random_episodes(envs):
    """Random rewards, terminations and cut-offs in each of E environments, a memory that wraps: every slot holds
    what summing that environment's stored steps by hand gives."""
    rows, n, gamma, steps = 16, 4, 0.9, 45
    rng = np.random.default_rng(3)
    reward = rng.normal(size=(steps, envs)).astype(np.float32)
    end = rng.random((steps, envs)) < 0.15
    terminal = end & (rng.random((steps, envs)) < 0.5)
    mem = replay.init(rows * envs + envs - 1, 2, num_envs=envs)        # rounded down to whole rows
    assert mem.obs.shape[0] == rows * envs
    ids = jnp.arange(envs, dtype=jnp.float32)

    @jax.jit
    def add(m, t, r, te, e):
        obs = jnp.stack([jnp.full(envs, t, jnp.float32), ids], axis=1)
        return replay.add(m, obs, jnp.zeros(envs, jnp.int32), r, obs.at[:, 0].add(1.0), te, e, gamma=gamma,
                          n_step=n)

    for t in range(steps):
        mem = add(mem, t, reward[t], terminal[t], end[t])
    for slot in range(rows * envs):
        row, e = divmod(slot, envs)
        t = steps - rows + (row - steps) % rows                # the step this slot holds
        ret, m = 0.0, 0
        while m < n and t + m < steps:
            ret += gamma ** m * float(reward[t + m, e])
            m += 1
            if end[t + m - 1, e]:
                break
        last = t + m - 1
        assert mem.obs[slot].tolist() == [t, e]
        assert float(mem.reward[slot]) == pytest.approx(ret, rel=1e-5, abs=1e-6)
        assert mem.next_obs[slot].tolist() == [last + 1, e]
        assert float(mem.discount[slot]) == pytest.approx(0.0 if terminal[last, e] else gamma ** m, rel=1e-6)
    assert int(mem.size) == rows * envs and int(mem.pos) == (steps % rows) * envs


def test_n_step_stops_at_the_newest_transition():
    """Returns still short of n steps sum what has arrived, and bootstrap from the newest state, also right after
    the buffer wrapped (where the newest slot must not reach on into the oldest)."""
    mem = replay.init(16, 1)
    for t, r in enumerate([1.0, 2.0, 4.0]):
        mem = _add(mem, t, r, False, False, gamma=0.5, n_step=3)
    b = replay.batch_at(mem, jnp.array([1, 2]))
    np.testing.assert_allclose(b.reward, [2 + 0.5 * 4, 4.0])
    np.testing.assert_allclose(b.discount, [0.25, 0.5])
    assert b.next_obs[:, 0].tolist() == [3.0, 3.0]
    # Capacity 4 and 6 writes: slots hold steps [4, 5, 2, 3]; slot 1 (step 5) is the newest.
    mem = replay.init(4, 1)
    for t, r in enumerate([1.0, 2.0, 4.0, 8.0, 16.0, 32.0]):
        mem = _add(mem, t, r, False, False, gamma=0.5, n_step=3)
    b = replay.batch_at(mem, jnp.array([0, 1, 3]))
    np.testing.assert_allclose(b.reward, [16 + 0.5 * 32, 32.0, 8 + 0.5 * 16 + 0.25 * 32])
    np.testing.assert_allclose(b.discount, [0.25, 0.5, 0.125])
    assert b.next_obs[:, 0].tolist() == [6.0, 6.0, 6.0]


def test_a_frozen_seed_writes_nothing():
    mem = _add(replay.init(4, 1), 0, 1.0, False, False, n_step=3)
    frozen = _add(mem, 1, 5.0, False, False, n_step=3, write=False)
    for a, b in zip(jax.tree.leaves(mem), jax.tree.leaves(frozen)):
        assert np.array_equal(a, b)


def test_uniform_sampling_covers_only_filled_slots():
    mem = replay.init(100, 1)
    for t in range(10):
        mem = _add(mem, t, 0.0, False, False)
    idx = replay.sample(mem, jax.random.PRNGKey(0), 5000).index
    counts = np.bincount(np.asarray(idx), minlength=100)
    assert counts[10:].sum() == 0 and counts[:10].min() > 400


def test_sampling_without_replacement_gives_distinct_transitions_of_every_subset():
    mem = replay.init(50, 1)
    for t in range(6):
        mem = _add(mem, t, 0.0, False, False)
    draw = jax.jit(lambda k: replay.sample(mem, k, 6, replacement=False).index)
    seen_first = set()
    for i in range(200):
        idx = np.asarray(draw(jax.random.PRNGKey(i)))
        assert sorted(idx.tolist()) == list(range(6))           # a batch of the whole memory: all distinct
        seen_first.add(int(idx[0]))
    assert seen_first == set(range(6))                          # in random order


def test_samples_are_per_seed_and_consistent():
    """Each seed samples its own memory with its own key, and a sampled row's fields belong to one transition."""
    def memory(seed):
        mem = replay.init(50, 2)
        for t in range(50):
            obs = jnp.array([1000.0 * seed + t, t])
            mem = replay.add(mem, obs[None], jnp.int32(t % 2)[None], jnp.float32(t)[None], obs[None] + 0.5,
                             jnp.zeros(1, bool), jnp.zeros(1, bool), gamma=0.9, n_step=1)
        return mem

    mems = jax.tree.map(lambda *m: jnp.stack(m), *[memory(s) for s in range(3)])
    b = jax.vmap(lambda m, k: replay.sample(m, k, 16))(mems, jax.random.split(jax.random.PRNGKey(0), 3))
    assert b.obs.shape == (3, 16, 2) and b.action.shape == (3, 16)
    obs = np.asarray(b.obs)
    assert np.all(obs[..., 0] // 1000 == np.arange(3)[:, None])
    assert np.array_equal(obs[..., 0] % 1000, b.reward) and np.array_equal(b.reward, b.index)
    assert np.array_equal(b.next_obs, obs + 0.5) and np.array_equal(b.action, np.asarray(b.index) % 2)
    assert not np.array_equal(b.index[0], b.index[1])                # seeds draw independent indices


def _prioritized(n, capacity=8, alpha=1.0):
    mem = replay.init(capacity, 1, prioritized=True)
    for i in range(n):
        mem = _add(mem, i, 0.0, False, False, alpha=alpha)
    return mem


def test_sum_tree_root_is_the_total_priority_and_new_slots_get_the_maximum():
    mem = _prioritized(5)
    assert float(mem.tree[1]) == 5.0
    mem = replay.update_priorities(mem, jnp.array([0, 1]), jnp.array([3.0, 0.5]), alpha=1.0, eps=0.0)
    assert float(mem.tree[1]) == pytest.approx(3 + 0.5 + 3)
    mem = _add(mem, 5, 0.0, False, False, alpha=1.0)
    assert float(mem.tree[mem.tree.size // 2 + 5]) == 3.0


def test_sampling_frequencies_follow_priorities_chi_square():
    from scipy.stats import chisquare

    mem = _prioritized(6, capacity=6)
    priorities = jnp.array([1.0, 2.0, 3.0, 4.0, 0.5, 5.5])
    mem = replay.update_priorities(mem, jnp.arange(6), priorities, alpha=1.0, eps=0.0)
    idx = jax.vmap(lambda k: replay.sample(mem, k, 32).index)(jax.random.split(jax.random.PRNGKey(0), 500))
    counts = np.bincount(np.asarray(idx).ravel(), minlength=6)
    expected = np.asarray(priorities / priorities.sum()) * counts.sum()
    assert chisquare(counts, expected).pvalue > 0.01


def test_importance_weights_are_normalised_by_the_batch_maximum():
    mem = _prioritized(4, capacity=4)
    mem = replay.update_priorities(mem, jnp.arange(4), jnp.array([1.0, 1.0, 1.0, 5.0]), alpha=1.0, eps=0.0)
    b = replay.sample(mem, jax.random.PRNGKey(0), 64, beta=1.0)
    # P = [1, 1, 1, 5] / 8; w = (N P)^-1 / max -> 1 for the low-priority slots, 0.2 for the high one.
    np.testing.assert_allclose(b.weight, np.where(np.asarray(b.index) == 3, 0.2, 1.0), atol=1e-6)
    assert np.all(np.asarray(replay.sample(mem, jax.random.PRNGKey(0), 64, beta=0.0).weight) == 1.0)
