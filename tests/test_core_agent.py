"""The JAX agent: TD targets by hand, the loss, Adam's first step, acting, learning on a fixed batch, the
schedules (epsilon in loop.close_step, the learning rate), masked seeds and per-seed independence."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cartpole_dqn.config import preset
from cartpole_dqn.core import agent, hyper, loop, replay
from cartpole_dqn.core.networks import Network


class Table(Network):
    """A 'network' that returns fixed Q-values per next state, for hand-computed targets."""

    def apply(self, params, obs, key=None):
        return params["table"][obs[..., 0].astype(jnp.int32)]


def _batch(reward, done, next_state, gamma):
    """One-step transitions through the replay memory, which folds gamma and termination into `discount`."""
    mem = replay.init(10, 1)
    for r, d, s in zip(reward, done, next_state):
        mem = replay.add(mem, jnp.zeros((1, 1)), jnp.zeros(1, jnp.int32), jnp.float32(r)[None],
                         jnp.array([[float(s)]]), jnp.bool_(d)[None], jnp.bool_(d)[None], gamma=gamma, n_step=1)
    return replay.batch_at(mem, jnp.arange(len(reward)))


def _table(values):
    return {"table": jnp.array(values, jnp.float32)}


NET = Table(1, 2, (1,))


def test_vanilla_target_is_reward_plus_discounted_max():
    t = _table([[1.0, 3.0], [5.0, 2.0]])
    y = agent.td_target(NET, t, t, _batch([1.0, 0.5], [0, 0], [0, 1], 0.9), double=False)
    np.testing.assert_allclose(y, [1 + 0.9 * 3, 0.5 + 0.9 * 5], rtol=1e-6)


def test_terminal_transition_does_not_bootstrap():
    t = _table([[1.0, 3.0]])
    y = agent.td_target(NET, t, t, _batch([1.0, -1.0], [0, 1], [0, 0], 0.9), double=False)
    np.testing.assert_allclose(y, [1 + 0.9 * 3, -1.0], rtol=1e-6)


def test_double_dqn_lets_the_online_net_choose_and_the_target_net_value():
    online, target = _table([[0.0, 10.0]]), _table([[7.0, 2.0]])
    b = _batch([1.0], [0], [0], 0.5)
    np.testing.assert_allclose(agent.td_target(NET, online, target, b, double=True), [1 + 0.5 * 2])
    np.testing.assert_allclose(agent.td_target(NET, online, target, b, double=False), [1 + 0.5 * 7])


def _signal(cfg, reward, terminated, truncated):
    return agent.learning_signal(cfg, hyper.of(cfg), reward, terminated, truncated)


def test_truncation_bootstraps_but_the_classic_preset_treats_it_as_failure():
    r, te, tr = jnp.ones(3), jnp.array([False, True, False]), jnp.array([False, False, True])
    stored, nb = _signal(preset("sample-efficient"), r, te, tr)
    assert stored.tolist() == [1, 1, 1] and nb.tolist() == [False, True, False]
    stored, nb = _signal(preset("classic"), r, te, tr)
    assert stored.tolist() == [1, -1, -1] and nb.tolist() == [False, True, True]
    # The classic target of a failed step is the negated reward itself: -1.
    t = _table([[4.0, 4.0]])
    y = agent.td_target(NET, t, t, _batch(stored.tolist(), nb.tolist(), [0, 0, 0], 0.95), double=False)
    np.testing.assert_allclose(y, [1 + 0.95 * 4, -1.0, -1.0], rtol=1e-6)


@pytest.mark.parametrize("loss, delta, expected", [
    ("huber", 1.0, (0.5 * 0.25 + (3 - 0.5) + (10 - 0.5)) / 3),
    ("huber", 10.0, (0.5 * 0.25 + 0.5 * 9 + 0.5 * 100) / 3),
    ("mse", 1.0, (0.25 + 9 + 100) / 3),
])
def test_td_loss_is_quadratic_within_huber_delta_and_linear_beyond(loss, delta, expected):
    cfg = preset("sample-efficient", loss=loss, huber_delta=delta)
    value = agent.td_loss(cfg, hyper.of(cfg), jnp.zeros(3), jnp.array([0.5, 3.0, 10.0]), jnp.ones(3))
    assert float(value) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("eps", [1e-8, 0.1])
def test_adam_first_step_is_lr_times_gradient_over_its_magnitude_plus_eps(eps):
    cfg = preset("sample-efficient", adam_eps=eps, max_grad_norm=0.0, lr=0.01)
    params = {"w": jnp.array([1.0])}
    grads = {"w": jnp.array([0.3])}
    steps, _ = agent.optimizer(cfg).update(grads, agent.optimizer(cfg).init(params), params)
    # Bias-corrected first step: m_hat = g, v_hat = g^2, so the step is g / (|g| + eps).
    assert float(steps["w"][0]) * cfg.lr == pytest.approx(0.01 * 0.3 / (0.3 + eps), rel=1e-5)


def test_act_is_greedy_at_epsilon_zero_and_random_at_one():
    net = Network(2, 3, (4,))
    p = net.init(jax.random.PRNGKey(0))
    obs = jnp.array([0.3, -0.2])
    greedy = int(jnp.argmax(net.apply(p, obs)))
    keys = jax.random.split(jax.random.PRNGKey(1), 300)
    acts = jax.vmap(lambda k: agent.act(net, p, obs, jnp.float32(0.0), k))(keys)
    assert set(np.asarray(acts).tolist()) == {greedy}
    acts = jax.vmap(lambda k: agent.act(net, p, obs, jnp.float32(1.0), k))(keys)
    assert set(np.asarray(acts).tolist()) == {0, 1, 2}


@pytest.mark.parametrize("name", ["sample-efficient", "classic"])
def test_learning_reduces_td_error_on_a_fixed_batch(name):
    cfg = preset(name, hidden=(16, 16), batch_size=8)
    net = Network(3, 2, cfg.hidden)
    state = agent.init(cfg, net, jax.random.PRNGKey(0))
    k = jax.random.split(jax.random.PRNGKey(1), 4)
    batch = replay.Batch(jax.random.normal(k[0], (8, 3)), jax.random.randint(k[1], (8,), 0, 2),
                         jax.random.normal(k[2], (8,)), jax.random.normal(k[3], (8, 3)), jnp.zeros(8),
                         jnp.ones(8), jnp.arange(8))
    step = jax.jit(lambda s: agent.update(cfg, net, s, batch, jnp.float32(cfg.lr), jax.random.PRNGKey(2)))
    _, first = step(state)
    for _ in range(200):
        state, stats = step(state)
    assert float(stats["td"]) < 0.2 * float(first["td"])
    assert int(state.updates) == 200 * (8 if cfg.sequential_fit else 1)


def test_polyak_target_follows_the_online_network_by_tau():
    cfg = preset("sample-efficient", hidden=(4,), tau=0.25, target_update_interval=1)
    net = Network(2, 2, cfg.hidden)
    state = agent.init(cfg, net, jax.random.PRNGKey(0))
    batch = replay.Batch(jnp.ones((2, 2)), jnp.zeros(2, jnp.int32), jnp.ones(2), jnp.ones((2, 2)), jnp.zeros(2),
                         jnp.ones(2), jnp.arange(2))
    new, _ = agent.update(cfg, net, state, batch, jnp.float32(0.1), jax.random.PRNGKey(0))
    w = lambda p: p["head"]["weight"]
    np.testing.assert_allclose(w(new.target), 0.25 * w(new.params) + 0.75 * w(state.target), rtol=1e-6)


def test_reward_clipping_is_an_explicit_switch():
    r, no = jnp.array([5.0, -3.0, 0.5]), jnp.zeros(3, bool)
    assert _signal(preset("sample-efficient"), r, no, no)[0].tolist() == [5.0, -3.0, 0.5]
    assert _signal(preset("sample-efficient", reward_clip=1.0), r, no, no)[0].tolist() == [1.0, -1.0, 0.5]


def test_learning_rate_is_constant_unless_a_decay_is_set():
    cfg = preset("sample-efficient", lr=1e-3)
    assert float(agent.learning_rate(hyper.of(cfg), jnp.int32(10_000))) == pytest.approx(1e-3)
    cfg = preset("sample-efficient", lr=1e-3, lr_end=1e-4, lr_decay_steps=1000)
    rates = [float(agent.learning_rate(hyper.of(cfg), jnp.int32(t))) for t in (0, 500, 1000, 5000)]
    assert rates == pytest.approx([1e-3, 5.5e-4, 1e-4, 1e-4], rel=1e-5)


# Small seeds for the loop-level tests: a host task (no environment inside), a memory of random transitions.
HOST = loop.Task(None, None, None, 1)


def _small(name, **overrides):
    return preset(name, **{**dict(hidden=(8,), buffer_size=32, batch_size=8, learning_starts=8), **overrides})


def _seeds(cfg, net, n, fill=True):
    """n seeds' states (seed numbers 0..n-1) with their memories full of random transitions."""
    states = jax.jit(jax.vmap(lambda s: loop.init_seed(cfg, net, HOST, s, jnp.zeros((1, net.obs_size)))))(jnp.arange(n))
    if not fill:
        return states
    c, rng = cfg.buffer_size, np.random.default_rng(99)
    normal = lambda *shape: jnp.asarray(rng.normal(size=shape), jnp.float32)
    mem = states.memory._replace(obs=normal(n, c, net.obs_size),
                                 action=jnp.asarray(rng.integers(0, net.n_actions, (n, c)), jnp.int32),
                                 reward=normal(n, c), next_obs=normal(n, c, net.obs_size),
                                 discount=jnp.full((n, c), cfg.gamma), size=jnp.full(n, c, jnp.int32))
    if cfg.prioritized:
        mem = jax.vmap(lambda m: replay.update_priorities(m, jnp.arange(c), jnp.ones(c), alpha=cfg.priority_alpha,
                                                          eps=0.0))(mem)
    return states._replace(memory=mem)


def _close(cfg, states, updated, t):
    """loop.close_step for every seed at env step t, no episode ending: the epsilon of the next step."""
    done = jnp.zeros((*updated.shape, cfg.num_envs), bool)
    return jax.vmap(loop.close_step, (None, None, 0, 0, 0, None))(cfg, HOST, states, done, updated, jnp.int32(t))[0]


def test_linear_epsilon_schedule_over_env_steps():
    cfg = _small("sample-efficient", epsilon_start=1.0, epsilon_end=0.1, epsilon_decay_steps=100)
    states = _seeds(cfg, Network(4, 2, cfg.hidden), 2, fill=False)
    # Over env steps, whether or not the seed replayed.
    np.testing.assert_allclose(_close(cfg, states, jnp.array([True, False]), 50).agent.epsilon, [0.55, 0.55],
                               rtol=1e-6)
    np.testing.assert_allclose(_close(cfg, states, jnp.array([True, False]), 1000).agent.epsilon, [0.1, 0.1],
                               rtol=1e-6)


def test_exponential_epsilon_decays_per_replay_per_seed_down_to_the_floor():
    cfg = _small("classic")          # epsilon *= 0.995 per replay, down to 0.01
    states = _seeds(cfg, Network(4, 2, cfg.hidden), 2, fill=False)
    states = _close(cfg, states, jnp.array([True, False]), 1)
    np.testing.assert_allclose(states.agent.epsilon, [0.995, 1.0], rtol=1e-6)
    both = jnp.array([True, True])
    states = jax.jit(lambda s: jax.lax.fori_loop(0, 2000, lambda _, s: _close(cfg, s, both, 1), s))(states)
    np.testing.assert_allclose(states.agent.epsilon, [0.01, 0.01], rtol=1e-6)


@pytest.mark.parametrize("name, overrides", [("classic", {}), ("sample-efficient", dict(prioritized=True))])
def test_a_masked_seed_is_left_exactly_as_it_was(name, overrides):
    """A non-learner in loop.learn keeps its agent and its priorities; a frozen seed (active=False) its epsilon."""
    cfg = _small(name, **overrides)
    net = Network(4, 2, cfg.hidden)
    states = _seeds(cfg, net, 2)
    learn = jax.jit(jax.vmap(loop.learn, (None, None, 0, None, None, 0)), static_argnums=(0, 1))
    after = learn(cfg, net, states, jnp.int32(2), jnp.int32(100), jnp.array([True, False]))
    seed = lambda tree, i: [np.asarray(x[i]) for x in jax.tree.leaves(tree)]
    for a, b in zip(seed((states.agent, states.memory), 1), seed((after.agent, after.memory), 1)):
        np.testing.assert_array_equal(a, b)
    assert int(after.agent.updates[0]) > 0
    assert not np.array_equal(after.agent.params["head"]["weight"][0], states.agent.params["head"]["weight"][0])
    if cfg.prioritized:
        assert not np.array_equal(after.memory.tree[0], states.memory.tree[0])
    frozen = states._replace(active=jnp.array([True, False]))
    eps = _close(cfg, frozen, jnp.array([True, True]), 50).agent.epsilon
    assert float(eps[0]) < 1.0 and float(eps[1]) == 1.0


def test_seeds_learn_independently():
    """Seed 0's update is the same whatever data seed 1 sees (per-seed loss, gradient clipping and Adam); that a
    whole run is the same alone is test_core_loop's."""
    cfg = preset("sample-efficient", hidden=(8, 8), batch_size=16, max_grad_norm=1.0)
    net = Network(4, 2, cfg.hidden)
    states = jax.jit(jax.vmap(lambda k: agent.init(cfg, net, k)))(jax.random.split(jax.random.PRNGKey(0), 2))
    rng = np.random.default_rng(1)
    normal = lambda *shape: jnp.asarray(rng.normal(size=shape), jnp.float32)
    batch = replay.Batch(normal(2, 16, 4), jnp.asarray(rng.integers(0, 2, (2, 16)), jnp.int32), normal(2, 16),
                         normal(2, 16, 4), jnp.full((2, 16), 0.99), jnp.ones((2, 16)), jnp.tile(jnp.arange(16), (2, 1)))
    update = jax.jit(jax.vmap(lambda s, b: agent.update(cfg, net, s, b, jnp.float32(0.01), jax.random.PRNGKey(2))[0]))
    # Seed 1 gets huge errors: a gradient clipped over all seeds together would shrink seed 0's step.
    loud = update(states, batch._replace(reward=batch.reward.at[1].multiply(1000.0)))
    quiet = update(states, batch._replace(reward=batch.reward.at[1].set(0.0)))
    seed = lambda tree, i: jax.tree.map(lambda x: x[i], tree)
    for a, b in zip(jax.tree.leaves(seed(loud, 0)), jax.tree.leaves(seed(quiet, 0))):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    assert not np.allclose(loud.params["head"]["weight"][1], quiet.params["head"]["weight"][1])
