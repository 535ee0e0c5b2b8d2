"""PQN: the rollout, Q(lambda) targets by hand (truncation bootstraps, termination does not), the update, and
learning inside the compiled loop."""

import dataclasses

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cartpole_dqn.config import ConfigError, preset
from cartpole_dqn.core import agent as agent_lib
from cartpole_dqn.core import hyper, loop, pqn
from cartpole_dqn.core.networks import Network


@dataclasses.dataclass(frozen=True)
class Table(Network):
    """A 'network' whose Q-values are looked up by the state number in obs[..., 0]."""

    def apply(self, params, obs, key=None):
        return params["table"][obs[..., 0].astype(jnp.int32)]


def _rollout(next_state, reward, terminal, end):
    """A rollout [T, E] whose next observations are state numbers (obs itself plays no part in the targets)."""
    next_state, reward = np.asarray(next_state, np.float32), np.asarray(reward, np.float32)
    t, e = reward.shape
    return pqn.Rollout(jnp.zeros((t, e, 1)), jnp.zeros((t, e), jnp.int32), jnp.asarray(reward),
                       jnp.asarray(next_state)[..., None], jnp.asarray(terminal), jnp.asarray(end), jnp.int32(t))


def _by_hand(v, reward, terminal, end, gamma, lam):
    """G_t backwards for one environment, with the lambda-return cut at episode ends and after the last row."""
    g, out = None, []
    for t in reversed(range(len(reward))):
        tail = v[t] if end[t] or g is None else (1 - lam) * v[t] + lam * g
        g = reward[t] + (0.0 if terminal[t] else gamma) * tail
        out.append(g)
    return out[::-1]


@pytest.mark.parametrize("lam", [0.0, 0.9, 1.0])
def test_lambda_returns_equal_a_direct_computation(lam):
    rng = np.random.default_rng(0)
    t, e, states = 12, 3, 7
    values = rng.normal(size=(states, 2)).astype(np.float32)
    next_state = rng.integers(0, states, (t, e))
    reward = rng.normal(size=(t, e))
    end = rng.random((t, e)) < 0.3
    terminal = end & (rng.random((t, e)) < 0.5)
    cfg = preset("pqn", gamma=0.9, q_lambda=lam)
    g = pqn.lambda_returns(hyper.of(cfg), Table(1, 2, (1,)), {"table": jnp.asarray(values)},
                           _rollout(next_state, reward, terminal, end))
    v = values.max(axis=1)
    for j in range(e):
        expected = _by_hand(v[next_state[:, j]], reward[:, j], terminal[:, j], end[:, j], 0.9, lam)
        np.testing.assert_allclose(np.asarray(g[:, j]), expected, rtol=1e-5, atol=1e-5)


def test_a_time_limit_cut_off_bootstraps_and_a_termination_does_not():
    """Same step, same reward and the same last state: truncated -> r + gamma max Q(s'), terminated -> r, and
    neither reaches into the next episode's steps."""
    values = jnp.array([[0.0, 0.0], [10.0, 4.0], [100.0, 100.0]])
    cfg = preset("pqn", gamma=0.5, q_lambda=0.9)
    # Row 0 ends an episode whose last state is 1; row 1 is the next episode's first step, worth 100 later.
    roll = _rollout([[1, 1], [2, 2]], [[1.0, 1.0], [0.0, 0.0]], [[False, True], [False, False]],
                    [[True, True], [False, False]])
    g = pqn.lambda_returns(hyper.of(cfg), Table(1, 2, (1,)), {"table": values}, roll)
    assert g[0].tolist() == [1.0 + 0.5 * 10.0, 1.0]


def test_store_fills_rows_in_order_and_a_frozen_seed_writes_nothing():
    roll = pqn.init(3, 2, 1)
    step = lambda r, x, write=True: pqn.store(r, jnp.full((2, 1), x), jnp.ones(2, jnp.int32), jnp.full(2, x),
                                              jnp.full((2, 1), x + 1), jnp.zeros(2, bool), jnp.zeros(2, bool),
                                              write=write)
    roll = step(step(roll, 1.0), 2.0)
    assert int(roll.filled) == 2 and roll.reward[:, 0].tolist() == [1.0, 2.0, 0.0] and not bool(pqn.is_full(roll))
    frozen = step(roll, 3.0, write=False)
    for a, b in zip(jax.tree.leaves(roll), jax.tree.leaves(frozen)):
        assert np.array_equal(a, b)
    assert bool(pqn.is_full(step(roll, 3.0)))


def test_the_update_moves_q_towards_the_lambda_targets():
    cfg = preset("pqn", hidden=(32,), rollout_steps=8, num_envs=4, minibatches=4, epochs=20, lr=3e-3)
    net = Network(3, 2, cfg.hidden, layer_norm=True)
    rng = np.random.default_rng(1)
    roll = pqn.Rollout(jnp.asarray(rng.normal(size=(8, 4, 3)), jnp.float32), jnp.asarray(rng.integers(0, 2, (8, 4))),
                       jnp.asarray(rng.normal(size=(8, 4)), jnp.float32), jnp.asarray(rng.normal(size=(8, 4, 3)),
                                                                                       jnp.float32),
                       jnp.zeros((8, 4), bool), jnp.ones((8, 4), bool), jnp.int32(8))   # one-step episodes
    agent = agent_lib.init(cfg, net, jax.random.PRNGKey(0))
    y = pqn.lambda_returns(hyper.of(cfg), net, agent.params, roll)

    def error(params):
        q = jnp.take_along_axis(net.apply(params, roll.obs), roll.action[..., None], axis=-1)[..., 0]
        return float(jnp.mean((q - y) ** 2))

    after, stats = jax.jit(lambda a, k: pqn.update(cfg, net, a, roll, jnp.float32(cfg.lr), k))(
        agent, jax.random.PRNGKey(1))
    assert int(after.updates) == cfg.epochs * cfg.minibatches
    assert error(after.params) < 0.75 * error(agent.params)
    assert np.isfinite([float(v) for v in stats.values()]).all()


def test_pqn_settings_are_checked():
    with pytest.raises(ConfigError, match="minibatches"):
        preset("pqn", num_envs=3, rollout_steps=5, minibatches=4)
    with pytest.raises(ConfigError, match="target network"):
        preset("pqn", target_update_interval=100)


def test_pqn_learns_in_the_compiled_loop():
    """Four seeds of a small PQN on CartPole, 48,000 env steps each: every one ends far above a random policy's
    ~22 steps a episode (measured on seeds 0-7: the last 20 episodes averaged 195 to 496, so 100 leaves a margin
    for another processor's path)."""
    cfg = preset("pqn", hidden=(32, 32), num_envs=16, rollout_steps=32, minibatches=4, epochs=4, lr=1e-3,
                 epsilon_decay_steps=15_000, epsilon_end=0.01, max_steps=48_000)
    env, params = gymnax.make("CartPole-v1")
    task = loop.Task(env, params, None, 100)
    net = Network(4, 2, cfg.hidden, layer_norm=True)
    states = jax.vmap(lambda s: loop.init_seed(cfg, net, task, s))(jnp.arange(4))
    chunk = jax.jit(loop.make_chunk(cfg, net, task, 1000))
    t, records = jnp.int32(0), []
    for _ in range(3):
        (t, states), rec = chunk(t, states, 1000)
        records.append(rec)
    assert int(t) == 48_000 and int(states.agent.updates[0]) == (3000 // 32) * 4 * 4
    ended = np.concatenate([r.ended for r in records])
    ret = np.concatenate([r.ret for r in records])
    for i in range(4):
        returns = ret[:, i][ended[:, i]]
        assert returns[:20].mean() < 40 and returns[-20:].mean() > 100, (i, returns[-20:].mean())
