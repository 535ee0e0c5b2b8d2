"""The JAX twins (cartpole_dqn.core.twins) against gymnasium: same states and actions give the same transitions.

Each transition is checked in isolation: gymnasium's internal float64 state (and its TimeLimit step count) is copied
into a gymnax EnvState before the step, so float32 round-off never accumulates into a diverging trajectory. All the
gymnax steps of a test run as one vmapped call, which keeps the file fast.
"""

from __future__ import annotations

import subprocess
import sys
from functools import partial

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnasium.wrappers import TimeLimit

from cartpole_dqn.core.twins import TWINS, has_twin, make_twin

ENV_IDS = sorted(TWINS)

# gymnasium warns on every make of CartPole-v0, which is kept here on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:.*CartPole-v0 is out of date:DeprecationWarning")

# gymnax EnvState fields, in the order of gymnasium's `env.unwrapped.state`.
FIELDS = {
    "CartPole-v1": ("x", "x_dot", "theta", "theta_dot"),
    "Acrobot-v1": ("joint_angle1", "joint_angle2", "velocity_1", "velocity_2"),
    "MountainCar-v0": ("position", "velocity"),
}

# Wide boxes of start states, so that episodes terminate (CartPole falls, Acrobot swings up, MountainCar reaches
# the flag) and MountainCar hits its left wall.
START_BOX = {
    "CartPole-v1": ([-2.3, -2.0, -0.2, -2.0], [2.3, 2.0, 0.2, 2.0]),
    "Acrobot-v1": ([-np.pi, -np.pi, -4 * np.pi, -9 * np.pi], [np.pi, np.pi, 4 * np.pi, 9 * np.pi]),
    "MountainCar-v0": ([-1.2, -0.07], [0.6, 0.07]),
}

# gymnasium's reset: every state variable uniform in [low, high] (MountainCar's velocity starts at exactly 0).
RESET_BOX = {
    "CartPole-v1": ([-0.05] * 4, [0.05] * 4),
    "Acrobot-v1": ([-0.1] * 4, [0.1] * 4),
    "MountainCar-v0": ([-0.6, 0.0], [-0.4, 0.0]),
}

# float32 (gymnax) vs float64 (gymnasium) after one step from the same state; Acrobot's velocities reach 9*pi and
# go through four RK4 stages, so its absolute error is larger.
ATOL = {"CartPole-v1": 1e-5, "Acrobot-v1": 1e-4, "MountainCar-v0": 1e-6}
RTOL = 1e-5


def _time_limit(env: gym.Env) -> TimeLimit:
    while not isinstance(env, TimeLimit):
        env = env.env
    return env


@partial(jax.jit, static_argnums=(0,))
def _twin_steps(env, params, states, times, actions, keys):
    """gymnax `env.step` from each (state, time) with each action: one vmapped call for a whole test."""
    fields = FIELDS[env.name]

    def one(state_vec, time, action, key):
        template = env.reset_env(key, params)[1]
        state = template.replace(**{f: state_vec[i] for i, f in enumerate(fields)}, time=time)
        obs, new_state, reward, terminated, truncated, info = env.step(key, state, action, params)
        return obs, new_state.time, reward, terminated, truncated, info["final_observation"]

    return jax.vmap(one)(states, times, actions, keys)


def _record(env_id: str, episodes_from_reset: int, random_starts: int, seed: int):
    """Step gymnasium and record (state, elapsed, action) before each step and what it returned."""
    env = gym.make(env_id)
    limit = _time_limit(env)
    cap = env.spec.max_episode_steps
    low, high = (np.asarray(b, dtype=np.float64) for b in START_BOX[TWINS[env_id][0]])
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {k: [] for k in ("state", "time", "action", "obs", "reward", "terminated", "truncated")}

    def run_episode(reset_seed: int, start=None, elapsed: int = 0, max_steps: int | None = None) -> None:
        env.reset(seed=reset_seed)
        if start is not None:
            env.unwrapped.state = start
            limit._elapsed_steps = elapsed
        for _ in range(max_steps or cap):
            action = int(rng.integers(env.action_space.n))
            rows["state"].append(np.array(env.unwrapped.state, dtype=np.float64))
            rows["time"].append(limit._elapsed_steps)
            rows["action"].append(action)
            obs, reward, terminated, truncated, _ = env.step(action)
            rows["obs"].append(obs)
            rows["reward"].append(reward)
            rows["terminated"].append(terminated)
            rows["truncated"].append(truncated)
            if terminated or truncated:
                return

    for e in range(episodes_from_reset):
        run_episode(reset_seed=seed + e)
    for e in range(random_starts):
        # A third of the random starts sit just before the time limit, so the episode is cut there.
        elapsed = int(cap - 1 - rng.integers(3)) if e % 3 == 0 else int(rng.integers(cap - 20))
        run_episode(reset_seed=seed + 1000 + e, start=rng.uniform(low, high), elapsed=elapsed, max_steps=20)
    env.close()
    return {k: np.asarray(v) for k, v in rows.items()}


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_twin_steps_like_gymnasium(env_id):
    twin, params = make_twin(env_id)
    # CartPole falls within ~20 random steps; Acrobot and MountainCar episodes run to the cap, so fewer of them.
    episodes = {"CartPole": 20, "Acrobot": 1, "MountainCar": 2}[env_id.split("-")[0]]
    rec = _record(env_id, episodes_from_reset=episodes, random_starts=150, seed=7)
    n = len(rec["action"])
    keys = jax.random.split(jax.random.key(0), n)
    obs, new_time, reward, terminated, truncated, final_obs = jax.device_get(
        _twin_steps(twin, params, jnp.asarray(rec["state"], jnp.float32), jnp.asarray(rec["time"], jnp.int32),
                    jnp.asarray(rec["action"], jnp.int32), keys))

    # The test must see every kind of ending, or it proves nothing about them.
    assert rec["terminated"].sum() >= 10, rec["terminated"].sum()
    assert rec["truncated"].sum() >= 10, rec["truncated"].sum()
    assert (~rec["terminated"] & ~rec["truncated"]).sum() >= 300

    assert final_obs.dtype == np.float32 and final_obs.shape == rec["obs"].shape
    np.testing.assert_allclose(final_obs, rec["obs"], rtol=RTOL, atol=ATOL[twin.name])
    np.testing.assert_array_equal(reward, rec["reward"])
    np.testing.assert_array_equal(terminated, rec["terminated"])
    np.testing.assert_array_equal(truncated, rec["truncated"])

    # Autoreset: an ended episode's step returns a fresh episode's observation and time 0; otherwise the step's own.
    done = rec["terminated"] | rec["truncated"]
    np.testing.assert_array_equal(obs[~done], final_obs[~done])
    np.testing.assert_array_equal(new_time, np.where(done, 0, rec["time"] + 1))


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_twin_resets_like_gymnasium(env_id):
    twin, params = make_twin(env_id)
    fields = FIELDS[twin.name]
    low, high = (np.asarray(b) for b in RESET_BOX[twin.name])
    obs, states = jax.vmap(twin.reset, in_axes=(0, None))(jax.random.split(jax.random.key(1), 2000), params)
    twin_states = np.stack([np.asarray(getattr(states, f)) for f in fields], axis=1)

    env = gym.make(env_id)
    gym_obs, gym_states = [], []
    for seed in range(200):
        o, _ = env.reset(seed=seed)
        gym_obs.append(o)
        gym_states.append(np.array(env.unwrapped.state, dtype=np.float64))
    env.close()
    gym_states = np.stack(gym_states)

    for name, s in (("gymnax", twin_states), ("gymnasium", gym_states)):
        assert np.all(s >= low - 1e-7) and np.all(s <= high + 1e-7), name
        # The samples fill the box, not a narrower one: each variable comes within 10% of both bounds.
        np.testing.assert_array_less(s.min(axis=0), low + 0.1 * (high - low) + 1e-12, err_msg=name)
        np.testing.assert_array_less(high - 0.1 * (high - low) - 1e-12, s.max(axis=0), err_msg=name)
    np.testing.assert_array_equal(np.asarray(states.time), 0)

    obs = np.asarray(obs)
    assert obs.dtype == np.float32 and obs.shape[1:] == env.observation_space.shape
    assert all(env.observation_space.contains(o) for o in obs[:200])
    assert np.asarray(gym_obs).shape[1:] == obs.shape[1:]


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_twin_matches_gymnasium_spec(env_id):
    twin, params = make_twin(env_id)
    env = gym.make(env_id)
    assert has_twin(env_id)
    assert params.max_steps_in_episode == env.spec.max_episode_steps
    assert twin.num_actions == env.action_space.n
    assert twin.observation_space(params).shape == env.observation_space.shape
    env.close()


def test_no_twin():
    assert not has_twin("LunarLander-v3")
    with pytest.raises(ValueError, match="no JAX twin"):
        make_twin("LunarLander-v3")


def test_the_twins_load_without_seaborn_which_gymnax_still_gets_when_it_uses_it():
    """gymnax's Pong imports seaborn (and scipy.stats) for its renderer: deferred, it costs start-up nothing."""
    code = ("import sys; import cartpole_dqn.core.twins; assert 'scipy.stats' not in sys.modules, 'loaded';"
            "from gymnax.environments.misc import pong; assert len(pong.sns.color_palette('cubehelix', 3)) == 3;"
            "import seaborn; assert seaborn.color_palette is pong.sns.color_palette")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
