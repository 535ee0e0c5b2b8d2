"""The compiled training chunk: seeds independent of K, learning, freezing at solve and budgets, update bursts."""

import functools

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cartpole_dqn.config import preset
from cartpole_dqn.core import loop
from cartpole_dqn.core.networks import Network

ENV, PARAMS = gymnax.make("CartPole-v1")


def tiny(name="sample-efficient", **overrides):
    base = dict(hidden=(16, 16), learning_starts=32, batch_size=8, eval_every=0, buffer_size=2000)
    if name == "classic":
        base.update(batch_size=20, learning_starts=20)
    return preset(name, **{**base, **overrides})


LENGTH = 400     # every test's chunks run n <= LENGTH steps of one compiled program per config and seed count


@functools.lru_cache(maxsize=None)
def compiled_chunk(cfg, threshold=None, window=100):
    task = loop.Task(ENV, PARAMS, threshold, window)
    net = Network(4, 2, cfg.hidden, cfg.dueling, cfg.noisy, cfg.layer_norm, cfg.noisy_sigma0)
    return task, net, jax.jit(loop.make_chunk(cfg, net, task, LENGTH))


def run(cfg, seeds, chunks, length=200, threshold=None, window=100, t=0, states=None):
    """Records [steps, K] (one environment per seed) or [steps, K, E], and the final states of `chunks` chunks of
    `length` steps from `states` at step `t` (default: the seeds' fresh states)."""
    task, net, chunk = compiled_chunk(cfg, threshold, window)
    if states is None:
        states = jax.vmap(lambda s: loop.init_seed(cfg, net, task, s))(jnp.asarray(seeds))
    t, records = jnp.int32(t), []
    for _ in range(chunks):
        (t, states), rec = chunk(t, states, length)
        records.append(jax.tree.map(lambda r: r[:length], jax.device_get(rec)))
    records = jax.tree.map(lambda *r: np.concatenate(r), *records)
    if cfg.num_envs == 1:
        records = jax.tree.map(lambda r: r[..., 0] if r.ndim == 3 else r, records)
    return records, states


def test_a_seed_runs_the_same_whatever_runs_beside_it():
    cfg = tiny()
    alone, _ = run(cfg, [2], 2)
    many, _ = run(cfg, [0, 2], 2)               # K = 2: test_budgets_stop_each_seed's program
    assert alone.ended.sum() > 5
    for field in ("ended", "ret", "length", "epsilon", "solved", "stopped"):
        np.testing.assert_array_equal(getattr(alone, field)[:, 0], getattr(many, field)[:, 1])
    # The batched matrix products may round differently in the last bit; nothing else differs.
    np.testing.assert_allclose(alone.loss[:, 0], many.loss[:, 1], rtol=1e-5)
    assert not np.array_equal(many.ret[:, 0], many.ret[:, 1])


def test_the_default_agent_learns_to_beat_a_random_policy():
    rec, _ = run(tiny(hidden=(32, 32), buffer_size=10_000), [0], 15, length=400)
    returns = rec.ret[rec.ended[:, 0], 0]
    assert returns[:10].mean() < 40          # a random policy balances for about 22 steps
    assert returns[-5:].mean() > 100


def test_a_seed_freezes_at_the_episode_that_solves():
    rec, states = run(tiny(), [0, 1], 3, threshold=15.0, window=3)
    for i in range(2):
        ends = np.flatnonzero(rec.ended[:, i])
        returns = rec.ret[ends, i]
        first = next(j for j in range(2, len(returns)) if returns[j - 2:j + 1].mean() >= 15.0)
        assert len(ends) == first + 1 and rec.solved[ends[-1], i] and rec.stopped[ends[-1], i]
        assert int(states.stopped_at[i]) == ends[-1] + 1 and not bool(states.active[i])
    # Frozen: another chunk changes nothing of the agent.
    more, after = run(tiny(), [0, 1], 1, length=50, threshold=15.0, window=3, t=600, states=states)
    assert not more.ended.any()
    for a, b in zip(jax.tree.leaves(states.agent), jax.tree.leaves(after.agent)):
        np.testing.assert_array_equal(a, b)


def test_budgets_stop_each_seed():
    rec, states = run(tiny(max_episodes=4), [0, 1], 1)
    assert rec.ended.sum(axis=0).tolist() == [4, 4]
    rec, states = run(tiny(max_steps=150), [0], 1)
    assert int(states.stopped_at[0]) == 150 and rec.stopped[149, 0] and not rec.ended[150:, 0].any()


@pytest.mark.parametrize("train_every, ratio, first, per_burst", [(1, 1.0, 1, 1), (16, 0.5, 16, 8),
                                                                 (1, 0.25, 4, 1)])
def test_updates_come_in_bursts_of_train_every_times_the_replay_ratio(train_every, ratio, first, per_burst):
    cfg = tiny(train_every=train_every, replay_ratio=ratio)
    for steps in (100, 200):
        learn_steps = steps - cfg.learning_starts + 1
        due = sum(int(np.floor(s * ratio) - np.floor((s - train_every) * ratio))
                  for s in range(1, learn_steps + 1) if s % train_every == 0)
        due_at = [int(loop.updates_due(cfg, jnp.int32(cfg.learning_starts - 2 + s),
                                       jnp.int32(cfg.learning_starts - 1 + s))) for s in range(first + 1)]
        assert due_at == [0] * first + [per_burst]
        _, states = run(cfg, [0], 1, length=steps)
        assert int(states.agent.updates[0]) == due


@pytest.mark.parametrize("name, overrides", [
    ("classic", {}),
    ("sample-efficient", dict(noisy=True, dueling=True, layer_norm=True, epsilon_start=0.0, epsilon_end=0.0)),
    ("sample-efficient", dict(prioritized=True, n_step=1, target_update_interval=50, tau=1.0, lr_end=1e-4)),
])
def test_every_switch_trains(name, overrides):
    rec, states = run(tiny(name, **overrides), [0], 1, length=300)
    assert rec.ended[:, 0].sum() >= 3 and int(states.agent.updates[0]) > 0
    assert np.isfinite(rec.loss[rec.ended[:, 0] & ~np.isnan(rec.loss[:, 0]), 0]).all()
    if name == "classic":      # epsilon decays once per replay, from 1
        eps = rec.epsilon[rec.ended[:, 0], 0]
        assert eps[-1] < 1.0 and np.all(np.diff(eps) <= 0)


def test_parallel_environments_are_one_seed_with_its_episodes_in_order():
    """E environments per seed: the clock counts all their steps, every finished episode is counted once, in
    the order environments finish, and seed 1's run does not depend on seed 0 beside it."""
    cfg = tiny(num_envs=4)
    many, states = run(cfg, [0, 1], 1, length=100)
    alone, _ = run(cfg, [1], 1, length=100)
    assert many.ended.shape == (100, 2, 4) and many.epsilon.shape == (100, 2)
    assert np.asarray(states.episodes).tolist() == many.ended.sum(axis=(0, 2)).tolist()
    assert many.ended[:, 0].sum() >= 4                               # every environment finished episodes
    np.testing.assert_array_equal(alone.ended[:, 0], many.ended[:, 1])
    np.testing.assert_array_equal(alone.ret[:, 0], many.ret[:, 1])
    # Each environment's episodes add up to the steps it took (CartPole pays 1 per step).
    for e in range(4):
        finished = many.ret[:, 0, e][many.ended[:, 0, e]]
        assert finished.sum() <= 100 and finished.sum() + float(states.ep_return[0, e]) == 100


def test_with_parallel_environments_a_seed_stops_at_the_episode_that_solves():
    """Several episodes can end in one step; the one completing the window is the last one counted."""
    rec, states = run(tiny(num_envs=4), [0], 1, length=150, threshold=15.0, window=3)
    returns, flags = [], []
    for j, e in np.argwhere(rec.ended[:, 0]):
        returns.append(rec.ret[j, 0, e])
        flags.append(rec.solved[j, 0, e])
    first = next(j for j in range(2, len(returns)) if np.mean(returns[j - 2:j + 1]) >= 15.0)
    assert len(returns) == first + 1 and flags[-1] and sum(flags) == 1
    assert not bool(states.active[0]) and int(states.episodes[0]) == first + 1


def test_updates_count_env_steps_across_environments():
    cfg = tiny(num_envs=4, replay_ratio=0.5)
    _, states = run(cfg, [0], 1, length=50)            # 200 env steps
    assert int(states.agent.updates[0]) == int((200 - cfg.learning_starts + 1) * 0.5)
