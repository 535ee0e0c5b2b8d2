import numpy as np
import pytest

from cartpole_dqn.config import ConfigError
from cartpole_dqn.envs import check_spaces, env_sizes, make_envs, step_envs


def test_unsupported_environments_are_refused_with_the_reason():
    with pytest.raises(ConfigError, match="unknown environment 'CartPole-v9'.*did you mean"):
        env_sizes("CartPole-v9")
    with pytest.raises(ConfigError, match="Box actions: only Discrete"):
        env_sizes("Pendulum-v1")
    import gymnasium as gym

    env = gym.make("CartPole-v1")
    env.observation_space = gym.spaces.Box(0, 1, (4, 4))
    with pytest.raises(ConfigError, match="flat"):
        check_spaces(env, "x")


def test_step_envs_returns_the_true_final_observation_of_a_truncated_episode():
    envs = make_envs("CartPole-v1", 2)
    obs, _ = envs.reset(seed=[0, 1])
    for e in envs.envs:
        e.unwrapped.steps_beyond_terminated = None
    # Force env 0 to its time limit on the next step.
    envs.envs[0]._elapsed_steps = envs.envs[0]._max_episode_steps - 1
    before = envs.envs[0].unwrapped.state.copy()
    next_obs, final_obs, reward, terminated, truncated = step_envs(envs, np.array([0, 0]))
    assert truncated[0] and not truncated[1]
    assert not np.allclose(final_obs[0], next_obs[0])      # env 0 was reset: acting continues from the new start
    assert np.allclose(final_obs[1], next_obs[1])
    assert abs(final_obs[0][0] - before[0]) < 0.1          # the final state follows from the last one, not a reset


def test_an_environment_missing_its_extra_says_which(monkeypatch):
    """Box2D made unimportable, as on a machine without the extra: gymnasium's own import then fails."""
    import sys

    monkeypatch.setitem(sys.modules, "Box2D", None)
    for name in [m for m in sys.modules if m.startswith("gymnasium.envs.box2d")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(ConfigError, match=r"LunarLander-v3.*box2d"):
        env_sizes("LunarLander-v3")


def test_a_registered_env_that_cannot_be_built_is_a_config_error_naming_it(monkeypatch):
    """gym.make of a registered id can fail with anything (a compatibility id whose package is absent raises a plain
    ImportError): one ConfigError naming the id and the first line of the reason."""
    import gymnasium as gym

    def broken(env_id, **kwargs):
        raise RuntimeError("the simulator's licence is missing\nand a second line")

    monkeypatch.setattr(gym, "make", broken)
    with pytest.raises(ConfigError, match=r"^environment 'Acrobot-v1' cannot be made here: the simulator's licence "
                                          r"is missing$"):
        env_sizes("Acrobot-v1")


def test_the_cli_refuses_a_compatibility_env_without_its_package_in_one_line(tmp_path, capsys):
    from cartpole_dqn.cli import main
    from cartpole_dqn.errors import installed

    if installed("shimmy"):
        pytest.skip("shimmy is installed: GymV26Environment-v0 can be made")
    assert main(["train", "--env", "GymV26Environment-v0", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'GymV26Environment-v0'" in err and "shimmy" in err
    assert not (tmp_path / "o").exists()
