import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cartpole_dqn.config import Config, ConfigError, build, preset
from cartpole_dqn.core import loop
from cartpole_dqn.rules import RULES, Rule, reached, resolve_rule, tolerance
from cartpole_dqn.scores import ScoreLog, episodes_before_solve


def test_rules_follow_metrics_md():
    assert (RULES["article"].env, RULES["article"].threshold, RULES["article"].window) == ("CartPole-v1", 195, 100)
    assert (RULES["v0"].env, RULES["v0"].threshold) == ("CartPole-v0", 195)
    assert (RULES["v1"].env, RULES["v1"].threshold) == ("CartPole-v1", 475)


def test_classic_defaults_to_the_article_rule_and_default_to_the_env_threshold():
    _, rule = resolve_rule(preset("classic"))
    assert rule.name == "article" and rule.threshold == 195
    _, rule = resolve_rule(Config())
    assert rule.threshold == 475 and rule.window == 100
    cfg, rule = resolve_rule(Config(env="Acrobot-v1"))
    assert rule.threshold == -100


def test_rule_sets_the_environment_and_solve_score_overrides():
    cfg, rule = resolve_rule(dataclasses.replace(Config(), rule="v0"))
    assert cfg.env == "CartPole-v0" and rule.threshold == 195
    cfg, rule = resolve_rule(dataclasses.replace(Config(), rule="v1", solve_score=300.0, solve_window=20))
    assert rule.threshold == 300 and rule.window == 20
    with pytest.raises(ConfigError, match="conflicts"):
        resolve_rule(dataclasses.replace(Config(), env="Acrobot-v1", rule="v1"))


def test_neighbour_environments_pick_their_own_preset_and_rule():
    cfg = build(overrides={"env": "Acrobot-v1"})
    assert cfg.preset == "acrobot" and cfg.hidden == (256, 256)
    assert build("default", overrides={"env": "Acrobot-v1"}).preset == "default"     # a named preset wins
    assert build("mountaincar").env == "MountainCar-v0"
    _, rule = resolve_rule(build(overrides={"env": "MountainCar-v0"}))
    assert rule.threshold == -110 and rule.window == 100


def test_a_rule_records_its_name_threshold_and_window():
    assert RULES["v1"].as_dict() == {"name": "v1", "threshold": 475.0, "window": 100}


def test_a_window_one_float32_ulp_under_the_threshold_counts_for_the_loop_and_the_score_log(tmp_path):
    """One tolerance: the compiled loop (float32) and scores.py (float64) give the same verdict on the same window,
    so a seed that froze as solved is solved in its scores.csv and summary too."""
    below = float(np.nextafter(np.float32(195.0), np.float32(0.0)))     # 194.99998...: 1 ulp under
    window = jnp.full(100, below, jnp.float32)
    assert bool(jax.jit(lambda w: reached(w.mean(), 195.0))(window))     # as close_step computes it
    assert loop.reached is reached                                      # ... and close_step asks this very rule
    assert episodes_before_solve([below] * 100, 195.0, 100) == 0
    log = ScoreLog(tmp_path, Rule("test", "CartPole-v1", 195.0, 100))
    assert [log.add_episode(below, 195, 0.0, 0.0, i, 0.0) for i in range(100)] == [False] * 99 + [True]
    log.close()


def test_the_tolerance_scales_with_the_threshold_and_refuses_a_real_shortfall():
    assert tolerance(195.0) == pytest.approx(1.95e-3) and tolerance(-0.5) == 1e-5
    assert reached(195.0, 195.0) and reached(-110.0, -110.0)
    assert not reached(194.99, 195.0) and not reached(-110.01, -110.0)
    assert reached(np.array([194.0, 195.0]), 195.0).tolist() == [False, True]


def test_an_env_given_with_a_rule_must_be_the_rules_own():
    """CartPole-v1 is the default env; given explicitly it is a choice, and --rule v0 (CartPole-v0) contradicts it."""
    message = "--env CartPole-v1 conflicts with --rule v0, which is defined on CartPole-v0"
    with pytest.raises(ConfigError, match=message):
        build(overrides={"env": "CartPole-v1", "rule": "v0"})
    assert build(overrides={"rule": "v0"}).env == "CartPole-v0"                 # not given: the rule's env
    assert build(overrides={"env": "CartPole-v0", "rule": "v0"}).env == "CartPole-v0"
    assert build(overrides={"env": "CartPole-v1", "rule": "v1"}).env == "CartPole-v1"


def test_the_cli_refuses_an_env_that_contradicts_the_rule_in_one_line(tmp_path, capsys):
    from cartpole_dqn.cli import main

    out = tmp_path / "run"
    assert main(["train", "--env", "CartPole-v1", "--rule", "v0", "--max-steps", "50", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "CartPole-v1" in err and "v0" in err and err.count("\n") == 1 and not out.exists()


def test_a_saved_config_loads_with_its_resolved_env_and_rule(tmp_path):
    from cartpole_dqn.config import from_dict, to_dict

    cfg, _ = resolve_rule(build(overrides={"rule": "v0", "seed": 3}))
    again = from_dict(to_dict(cfg))
    assert again == cfg and again.env == "CartPole-v0" and again.rule == "v0"
