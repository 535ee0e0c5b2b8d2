import dataclasses

import pytest

from cartpole_dqn.config import (FIELDS, PRESETS, Config, ConfigError, build, from_dict, parse_value, preset,
                                 to_dict, validate)


def test_every_preset_is_valid_and_classic_is_the_article():
    for name in PRESETS:
        assert preset(name).preset == name
    c = preset("classic")
    assert c.hidden == (24, 24) and c.lr == 1e-3 and c.gamma == 0.95 and c.loss == "mse"
    assert c.buffer_size == 1_000_000 and c.batch_size == 20 and c.sequential_fit and c.n_step == 1
    assert c.target_update_interval == 0 and not c.double
    assert c.epsilon_schedule == "exponential" and c.epsilon_decay_rate == 0.995 and c.epsilon_end == 0.01
    assert c.terminal_on_truncation and c.negate_final_reward


def test_sample_efficient_preset_is_modern_dqn_and_the_config_defaults():
    c = Config()
    assert c.double and c.loss == "huber" and c.max_grad_norm > 0 and c.target_update_interval >= 1
    assert not c.terminal_on_truncation and c.epsilon_schedule == "linear"
    assert preset("sample-efficient") == c and c.algo == "dqn" and c.num_envs == 1


def test_default_preset_is_pqn_and_builds_by_default():
    c = build()
    assert c.preset == "default" and c.algo == "pqn" and c.num_envs > 1 and c.layer_norm
    assert c.target_update_interval == 0 and not c.terminal_on_truncation


def test_every_field_documents_its_meaning():
    for f in FIELDS.values():
        assert f.metadata["help"]


@pytest.mark.parametrize("key,text,value", [
    ("lr", "3e-4", 3e-4), ("batch_size", "128", 128), ("buffer_size", "1e5", 100_000),
    ("buffer_size", "100_000", 100_000), ("double", "false", False), ("double", "1", True),
    ("hidden", "64,64", (64, 64)), ("hidden", "[32, 16]", (32, 16)), ("solve_score", "none", None),
    ("loss", "mse", "mse"),
])
def test_parse_value_converts_to_the_field_type(key, text, value):
    assert parse_value(key, text) == value


@pytest.mark.parametrize("key,text", [("lr", "fast"), ("batch_size", "1.5"), ("double", "maybe"), ("hidden", "a,b")])
def test_parse_value_rejects_wrong_types(key, text):
    with pytest.raises(ConfigError, match=key):
        parse_value(key, text)


def test_unknown_key_names_the_allowed_ones():
    with pytest.raises(ConfigError, match="unknown setting 'nope'.*lr"):
        parse_value("nope", "1")


@pytest.mark.parametrize("overrides,pattern", [
    (dict(lr=0.0), "lr=0.0 is out of range"), (dict(lr=-1.0), "lr"), (dict(gamma=1.5), "gamma"),
    (dict(gamma=0.0), "gamma"), (dict(batch_size=0), "batch_size"), (dict(seeds=0), "seeds"),
    (dict(max_steps=-5), "max_steps"), (dict(tau=0.0), "tau"), (dict(tau=1.5), "tau"),
    (dict(loss="l1"), "loss='l1' is not allowed"), (dict(batch_size=64, buffer_size=32), "larger than buffer_size"),
    (dict(epsilon_start=0.1, epsilon_end=0.5), "epsilon_end"), (dict(hidden=(64, 0)), "hidden"),
    (dict(double=True, target_update_interval=0), "target network"), (dict(lr=float("nan")), "lr"),
    (dict(batch_size=1.5), "batch_size"), (dict(double="yes"), "double"),
])
def test_validate_rejects_bad_values_naming_them(overrides, pattern):
    with pytest.raises(ConfigError, match=pattern):
        validate(dataclasses.replace(Config(), **overrides))


def test_build_layers_preset_file_and_overrides(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('preset = "classic"\nlr = 0.005\ngamma = 0.9\nhidden = [8, 8]\n')
    c = build(None, f, {"gamma": 0.8})
    assert c.lr == 0.005 and c.gamma == 0.8 and c.hidden == (8, 8) and c.sequential_fit  # classic underneath
    assert build("sample-efficient", f).double  # an explicit preset wins over the file's


@pytest.mark.parametrize("text,pattern", [
    ("lr = ", "not valid TOML"), ("nope = 1\n", "unknown setting 'nope'"), ("lr = 'x'\n", "lr"),
    ("[section]\nlr = 1\n", "unknown setting 'section'"),
])
def test_bad_config_files_are_refused(tmp_path, text, pattern):
    f = tmp_path / "c.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=pattern):
        build(None, f)


def test_config_round_trips_through_a_dict():
    c = preset("classic", seeds=3, hidden=(7, 5))
    assert from_dict(to_dict(c)) == c


@pytest.mark.parametrize("overrides,pattern", [
    (dict(n_step=0), "n_step"), (dict(priority_alpha=1.5), "priority_alpha"), (dict(priority_alpha=-0.1), "alpha"),
    (dict(priority_beta=2.0), "priority_beta"), (dict(noisy=True), "epsilon_start=0"),
    (dict(noisy=True, epsilon_start=0.0, epsilon_end=0.01), "epsilon_end"), (dict(noisy_sigma0=0.0), "sigma0"),
    (dict(prioritized=True, replacement=False), "prioritized"), (dict(tau=-0.5), "tau"),
    (dict(target_update_interval=-1), "target_update_interval"),
])
def test_bad_switch_values_and_combinations_are_refused(overrides, pattern):
    with pytest.raises(ConfigError, match=pattern):
        validate(dataclasses.replace(Config(), **overrides))


def test_noisy_alone_implies_epsilon_zero(tmp_path):
    """Noisy layers explore by themselves: with no epsilon bound given, build sets both to 0."""
    c = build("sample-efficient", overrides={"noisy": True})
    assert c.noisy and (c.epsilon_start, c.epsilon_end) == (0.0, 0.0)
    assert to_dict(c)["epsilon_start"] == 0.0 and from_dict(to_dict(c)) == c   # recorded as resolved
    f = tmp_path / "noisy.toml"
    f.write_text("noisy = true\n")
    c = build("sample-efficient", file=f)
    assert (c.epsilon_start, c.epsilon_end) == (0.0, 0.0)
    assert build("sample-efficient").epsilon_start == 1.0                     # without noisy: untouched


@pytest.mark.parametrize("given", [dict(epsilon_start=0.5), dict(epsilon_end=0.01),
                                   dict(epsilon_start=0.5, epsilon_end=0.1)])
def test_noisy_with_an_explicit_non_zero_epsilon_is_still_refused(given, tmp_path):
    with pytest.raises(ConfigError, match="noisy=true explores by itself"):
        build("sample-efficient", overrides={"noisy": True, **given})
    f = tmp_path / "c.toml"
    f.write_text("".join(f"{k} = {v}\n" for k, v in given.items()))
    with pytest.raises(ConfigError, match="noisy=true explores by itself"):
        build("sample-efficient", file=f, overrides={"noisy": True})


def test_noisy_keeps_a_presets_epsilon_and_an_explicit_zero():
    with pytest.raises(ConfigError, match="epsilon_start=0"):   # classic sets 1.0 and 0.01 itself
        build("classic", overrides={"noisy": True})
    c = build("sample-efficient", overrides={"noisy": True, "epsilon_start": 0.0})
    assert (c.epsilon_start, c.epsilon_end) == (0.0, 0.0)


def test_switches_compose_in_every_preset():
    for name in PRESETS:
        replay = {} if PRESETS[name].get("algo") == "pqn" else dict(n_step=3, prioritized=True, replacement=True)
        c = preset(name, dueling=True, noisy=True, epsilon_start=0.0, epsilon_end=0.0, num_envs=4, **replay)
        assert c.dueling and c.noisy and c.num_envs == 4
        assert all(getattr(c, key) == value for key, value in replay.items())


def test_device_names_are_checked_and_cuda_without_cuda_is_refused():
    import jax

    from cartpole_dqn.config import resolve_device

    for bad in ("gpu", "cuda:x", "tpu"):
        with pytest.raises(ConfigError, match="device"):
            preset("default", device=bad)
    assert resolve_device("cpu").platform == "cpu"
    assert resolve_device("auto") == jax.devices()[0]
    if jax.default_backend() == "cpu":
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")


@pytest.mark.parametrize("overrides,pattern", [
    (dict(seed=2**31), r"seed=2147483648 is out of range: integer in \[0, 2147483647\]"),
    (dict(seed=-1), r"seed=-1 is out of range: integer in \[0, 2147483647\]"),
    (dict(seed=2**31 - 5, seeds=10), r"seeds=10 from seed=2147483643 reach 2147483652: every seed must be in "
                                      r"\[0, 2147483647\]"),
])
def test_seeds_outside_jax_int32_range_are_refused_with_the_range(overrides, pattern):
    with pytest.raises(ConfigError, match=pattern):
        validate(dataclasses.replace(Config(), **overrides))
    assert validate(dataclasses.replace(Config(), seed=2**31 - 10, seeds=10)).seed_list[-1] == 2**31 - 1


@pytest.mark.parametrize("overrides,pattern", [
    (dict(learning_starts=10**9), "learning_starts=1000000000 is above buffer_size=100000"),
    (dict(learning_starts=1000, buffer_size=999), "learning_starts=1000 is above buffer_size=999"),
    (dict(learning_starts=100, buffer_size=100, num_envs=16), r"buffer_size=100 \(it holds 96"),
    (dict(learning_starts=3000, max_steps=3000), "learning_starts=3000 is not below max_steps=3000"),
])
def test_a_dqn_that_could_never_learn_is_refused_naming_both_values(overrides, pattern):
    with pytest.raises(ConfigError, match=pattern):
        validate(dataclasses.replace(Config(), **overrides))


def test_pqn_has_no_replay_memory_so_learning_starts_does_not_bind_it():
    cfg = preset("default", learning_starts=10**9, buffer_size=10, batch_size=8, max_steps=100)
    assert cfg.algo == "pqn" and cfg.learning_starts == 10**9
