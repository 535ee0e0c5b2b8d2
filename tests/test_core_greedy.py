"""Greedy evaluation inside the program: whole episodes, reproducible keys of its own, mean weights."""

import jax
import jax.numpy as jnp
import numpy as np

from cartpole_dqn.core import greedy, loop
from cartpole_dqn.core.twins import make_twin
from cartpole_dqn.core.networks import Network

ENV, PARAMS = make_twin("CartPole-v1")
TASK = loop.Task(ENV, PARAMS, 475.0, 100)


def _always(action: int, noisy: bool = False):
    """A network that always prefers `action` (its head's bias dominates)."""
    net = Network(4, 2, (4,), noisy=noisy)
    p = net.init(jax.random.PRNGKey(0))
    p["head"]["weight"] = jnp.zeros_like(p["head"]["weight"])
    p["head"]["bias"] = jnp.array([0.0, 0.0]).at[action].set(100.0)
    return net, p


def _by_hand(key, action: int) -> float:
    """The same episode stepped one call at a time: reset with the first key, step until it ends."""
    k_reset, key = jax.random.split(key)
    obs, state = ENV.reset(k_reset, PARAMS)
    total = 0.0
    for _ in range(PARAMS.max_steps_in_episode):
        key, k_env, _, _ = jax.random.split(key, 4)
        obs, state, reward, terminated, truncated, _ = ENV.step(k_env, state, action, PARAMS)
        total += float(reward)
        if terminated or truncated:
            break
    return total


def test_returns_are_whole_episodes_played_to_their_end():
    net, p = _always(1)
    key = greedy.eval_key(1_000_000, 3, 0)
    returns = greedy.episode_returns(net, p, TASK, key, 4)
    expected = [_by_hand(k, 1) for k in jax.random.split(key, 4)]
    np.testing.assert_array_equal(returns, expected)
    assert 5 <= returns.min() and returns.max() < 30          # pushing one way topples the pole quickly


def test_keys_are_reproducible_and_evaluations_differ():
    net = Network(4, 2, (8,))
    p = net.init(jax.random.PRNGKey(1))
    play = jax.jit(lambda k: greedy.episode_returns(net, p, TASK, k, 6, epsilon=0.5))
    a = play(greedy.eval_key(1_000_000, 0, 0))
    np.testing.assert_array_equal(a, play(greedy.eval_key(1_000_000, 0, 0)))
    assert not np.array_equal(a, play(greedy.eval_key(1_000_000, 0, 1)))
    assert not np.array_equal(a, play(greedy.eval_key(2_000_000, 0, 0)))


def test_noisy_networks_are_judged_on_their_mean_weights():
    net, p = _always(0, noisy=True)
    key = greedy.eval_key(2_000_000, 0, 0)
    plain, q = _always(0)
    np.testing.assert_array_equal(greedy.episode_returns(net, p, TASK, key, 3),
                                  greedy.episode_returns(plain, q, TASK, key, 3))
