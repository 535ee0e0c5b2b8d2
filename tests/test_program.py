"""The program builder: the three kinds of settings, and hyperparameters that do not change the compiled program."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cartpole_dqn.config import HYPER, PROGRAM, RUN, Config, preset, validate
from cartpole_dqn.core.hyper import Hyper
from cartpole_dqn.rules import resolve_rule
from cartpole_dqn.program import build


def test_every_setting_is_of_exactly_one_kind():
    fields = {f.name for f in dataclasses.fields(Config)}
    assert HYPER | RUN | PROGRAM == fields
    assert not (HYPER & RUN) and not (HYPER & PROGRAM) and not (RUN & PROGRAM)
    assert HYPER == set(Hyper._fields)


def _other(name: str, value):
    """Another allowed value of the setting `name`."""
    if value is None:          # lr_end: a decay instead of a constant rate
        return 1e-5
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 3
    if isinstance(value, float):
        return value * 0.5 if value else 0.25
    return {"device": "cpu"}[name]


def _program_text(cfg: Config) -> str:
    """The lowered text of the program's init and chunk."""
    cfg, rule = resolve_rule(validate(cfg))
    program = build(cfg, rule)
    try:
        init, args = program.initializer(cfg.seed_list)
        states = jax.eval_shape(init, *args)
        return init.lower(*args).as_text() + program.chunk(50).lower(jnp.int32(0), states, jnp.int32(50)).as_text()
    finally:
        program.close()


@pytest.mark.parametrize("name, overrides", [
    ("sample-efficient", dict(prioritized=True, lr_end=1e-4)),
    ("pqn", dict(num_envs=4, rollout_steps=8, minibatches=2)),
    ("classic", dict()),
])
def test_hyperparameters_and_run_settings_leave_the_compiled_program_as_it_is(name, overrides):
    """Every numeric hyperparameter and every run setting changed at once (a seed count aside, which sets the
    batch): the lowered program is the same text, so the compile cache serves it and trials can share it."""
    base = preset(name, **{"hidden": (16,), "buffer_size": 500, "max_steps": 2000, "seeds": 2, **overrides})
    changed = {key: _other(key, getattr(base, key)) for key in sorted(HYPER | RUN - {"seeds", "seed", "threads"})}
    changed["epsilon_start"], changed["gamma"], changed["seed"] = 0.7, 0.9, 5
    other = dataclasses.replace(base, **changed)
    assert all(getattr(other, key) != getattr(base, key) for key in changed)
    text = _program_text(base)
    assert _program_text(other) == text
    # ... and the comparison can fail: a setting of the program's shape changes the text.
    assert _program_text(dataclasses.replace(base, hidden=(8,))) != text


def test_seeds_side_by_side_learn_with_their_own_hyperparameters():
    """Program.init gives each seed its own numeric hyperparameters; they are in its state."""
    cfg, rule = resolve_rule(preset("sample-efficient", hidden=(8,), buffer_size=100, learning_starts=32, seeds=3))
    program = build(cfg, rule)
    try:
        lrs = (1e-3, 5e-4, 2e-4)
        states = program.init(cfg.seed_list, [dict(lr=lr, gamma=0.9) for lr in lrs])
        np.testing.assert_allclose(np.asarray(states.agent.hyper.lr), lrs, rtol=1e-6)
        np.testing.assert_allclose(np.asarray(states.agent.hyper.gamma), [0.9] * 3, rtol=1e-6)
    finally:
        program.close()


def test_init_compiled_as_a_brief_program_gives_the_state_bit_for_bit():
    """`core.jit_brief` compiles init with fewer optimisations; level 0 failed this (ulps apart: no fused
    multiply-adds)."""
    cfg, rule = resolve_rule(preset("sample-efficient", hidden=(16, 16), buffer_size=500, seeds=3, noisy=True,
                                    dueling=True, layer_norm=True, prioritized=True, num_envs=2, obs_scale="bounds",
                                    env="MountainCar-v0", epsilon_start=0.0, epsilon_end=0.0))
    program = build(cfg, rule)
    try:
        init, args = program.initializer(cfg.seed_list, [dict(lr=1e-3 * (i + 1)) for i in range(3)])
        optimised = jax.jit(init.__wrapped__)(*args)          # XLA's default optimisations
        states = init(*args)
        assert jax.tree.structure(states) == jax.tree.structure(optimised)
        for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(optimised), jax.tree.leaves(states)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=jax.tree_util.keystr(path))
    finally:
        program.close()
