"""The JAX agent: TD targets by hand, the loss, Adam's first step, acting, and learning on a fixed batch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cartpole_dqn.config import preset
from cartpole_dqn.core import agent, replay
from cartpole_dqn.core.networks import Network


class Table(Network):
    """A 'network' that returns fixed Q-values per next state, for hand-computed targets."""

    def apply(self, params, obs, key=None):
        return params["table"][obs[..., 0].astype(jnp.int32)]


def _batch(reward, done, next_state, gamma):
    """One-step transitions through the replay memory, which folds gamma and termination into `discount`."""
    mem = replay.init(10, 1)
    for r, d, s in zip(reward, done, next_state):
        mem = replay.add(mem, jnp.zeros(1), jnp.int32(0), jnp.float32(r), jnp.array([float(s)]), jnp.bool_(d),
                         jnp.bool_(d), gamma=gamma, n_step=1)
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


def test_truncation_bootstraps_but_the_classic_preset_treats_it_as_failure():
    r, te, tr = jnp.ones(3), jnp.array([False, True, False]), jnp.array([False, False, True])
    stored, nb = agent.learning_signal(preset("default"), r, te, tr)
    assert stored.tolist() == [1, 1, 1] and nb.tolist() == [False, True, False]
    stored, nb = agent.learning_signal(preset("classic"), r, te, tr)
    assert stored.tolist() == [1, -1, -1] and nb.tolist() == [False, True, True]


@pytest.mark.parametrize("loss, delta, expected", [
    ("huber", 1.0, (0.5 * 0.25 + (3 - 0.5) + (10 - 0.5)) / 3),
    ("huber", 10.0, (0.5 * 0.25 + 0.5 * 9 + 0.5 * 100) / 3),
    ("mse", 1.0, (0.25 + 9 + 100) / 3),
])
def test_td_loss_is_quadratic_within_huber_delta_and_linear_beyond(loss, delta, expected):
    cfg = preset("default", loss=loss, huber_delta=delta)
    value = agent.td_loss(cfg, jnp.zeros(3), jnp.array([0.5, 3.0, 10.0]), jnp.ones(3))
    assert float(value) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("eps", [1e-8, 0.1])
def test_adam_first_step_is_lr_times_gradient_over_its_magnitude_plus_eps(eps):
    cfg = preset("default", adam_eps=eps, max_grad_norm=0.0, lr=0.01)
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


@pytest.mark.parametrize("name", ["default", "classic"])
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
    cfg = preset("default", hidden=(4,), tau=0.25, target_update_interval=1)
    net = Network(2, 2, cfg.hidden)
    state = agent.init(cfg, net, jax.random.PRNGKey(0))
    batch = replay.Batch(jnp.ones((2, 2)), jnp.zeros(2, jnp.int32), jnp.ones(2), jnp.ones((2, 2)), jnp.zeros(2),
                         jnp.ones(2), jnp.arange(2))
    new, _ = agent.update(cfg, net, state, batch, jnp.float32(0.1), jax.random.PRNGKey(0))
    w = lambda p: p["head"]["weight"]
    np.testing.assert_allclose(w(new.target), 0.25 * w(new.params) + 0.75 * w(state.target), rtol=1e-6)
