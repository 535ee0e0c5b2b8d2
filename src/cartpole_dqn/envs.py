"""Environments: K copies of a gymnasium task on the seed axis, and the checks on their spaces.

Each seed gets its own environment instance seeded with its own number, so seed n plays the same episodes whatever
else runs beside it. Evaluation environments are separate instances with seeds disjoint from training, so
evaluating never changes what training sees.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from .errors import ConfigError, missing

# Seed offsets for evaluation episodes: disjoint from the training seeds (0 .. 999_999) and from each other.
EVAL_SEED_BASE = 1_000_000
FINAL_EVAL_SEED_BASE = 2_000_000


def env_spec(env_id: str) -> gym.envs.registration.EnvSpec:
    """The registered spec of `env_id`, or a ConfigError naming close matches."""
    try:
        return gym.spec(env_id)
    except gym.error.Error:
        import difflib

        close = difflib.get_close_matches(env_id, list(gym.registry), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(f"unknown environment {env_id!r}{hint}: use a registered gymnasium id") from None


def make_env(env_id: str) -> gym.Env:
    """One environment of `env_id`; a missing dependency (Box2D, say) is a ConfigError naming what to install, and
    so is any other failure of a registered id to build (a compatibility id whose package is absent raises a plain
    ImportError, a third-party one anything): the user's choice of env, not a bug here."""
    try:
        return gym.make(env_id)
    except gym.error.DependencyNotInstalled as e:
        entry = str(getattr(gym.spec(env_id), "entry_point", ""))
        if "box2d" in entry or "box2d" in str(e).lower():
            raise missing("Box2D", "box2d", f"environment {env_id!r}") from None
        raise ConfigError(f"environment {env_id!r} needs a missing dependency: {_first_line(e)}") from None
    except Exception as e:
        raise ConfigError(f"environment {env_id!r} cannot be made here: {_first_line(e)}") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def check_spaces(env: gym.Env | gym.vector.VectorEnv, env_id: str) -> tuple[int, int]:
    """(observation size, number of actions), or a ConfigError if DQN here cannot train on these spaces."""
    obs_space = getattr(env, "single_observation_space", env.observation_space)
    act_space = getattr(env, "single_action_space", env.action_space)
    if not isinstance(act_space, gym.spaces.Discrete):
        raise ConfigError(f"environment {env_id!r} has {type(act_space).__name__} actions: only Discrete action "
                          "spaces are supported")
    if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
        raise ConfigError(f"environment {env_id!r} has {obs_space} observations: only flat (1-D) Box observations "
                          "are supported")
    return int(obs_space.shape[0]), int(act_space.n)


def make_envs(env_id: str, count: int) -> gym.vector.SyncVectorEnv:
    """`count` environments stepped together (seeded by their first reset); a finished episode resets in the same
    step.

    Same-step autoreset hands back the true final observation in `info["final_obs"]`, which a truncated episode
    needs to bootstrap from.
    """
    env_spec(env_id)
    envs = gym.vector.SyncVectorEnv([lambda: make_env(env_id) for _ in range(count)], autoreset_mode="SameStep")
    check_spaces(envs, env_id)
    return envs


def env_sizes(env_id: str) -> tuple[int, int]:
    """(observation size, number of actions) of `env_id`, checked."""
    env_spec(env_id)
    env = make_env(env_id)
    try:
        return check_spaces(env, env_id)
    finally:
        env.close()


def step_envs(envs: gym.vector.SyncVectorEnv, actions: np.ndarray):
    """Step every environment; returns (next_obs to act from, final_obs to learn from, reward, terminated,
    truncated), where final_obs differs from next_obs only where an episode ended and was reset."""
    next_obs, reward, terminated, truncated, info = envs.step(actions)
    final_obs = next_obs
    if "_final_obs" in info:
        final_obs = next_obs.copy()
        done = info["_final_obs"]
        final_obs[done] = np.stack(info["final_obs"][done])
    return next_obs, final_obs, reward, terminated, truncated
