"""Training states to named arrays and back: exact, checked, and resuming from them continues the same run."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load, save

from cartpole_dqn.config import preset
from cartpole_dqn.core import loop, snapshot
from cartpole_dqn.core.twins import make_twin
from cartpole_dqn.core.networks import Network

CFG = preset("sample-efficient", hidden=(16, 16), learning_starts=32, batch_size=8, buffer_size=1000, prioritized=True)
TASK = loop.Task(*make_twin("CartPole-v1"), 475.0, 100)
NET = Network(4, 2, CFG.hidden)


def _fresh():
    return jax.vmap(lambda s: loop.init_seed(CFG, NET, TASK, s))(jnp.arange(2))


def test_a_state_goes_through_safetensors_and_back_exactly():
    chunk = jax.jit(functools.partial(loop.make_chunk(CFG, NET, TASK, 100), n=100))
    (_, states), _ = chunk(jnp.int32(0), _fresh())
    arrays = snapshot.to_arrays(states)
    assert "agent.params['layer0']['weight']" in arrays and "memory.tree" in arrays
    back = snapshot.from_arrays(_fresh(), load(save(arrays)))
    for a, b in zip(jax.tree.leaves(states), jax.tree.leaves(back)):
        np.testing.assert_array_equal(a, b)


def test_stopping_between_chunks_and_restoring_continues_the_same_run():
    chunk = jax.jit(functools.partial(loop.make_chunk(CFG, NET, TASK, 100), n=100))
    (t, straight), _ = chunk(*chunk(jnp.int32(0), _fresh())[0])
    (t1, half), _ = chunk(jnp.int32(0), _fresh())
    restored = snapshot.from_arrays(_fresh(), load(save(snapshot.to_arrays(half))))
    (t2, resumed), _ = chunk(t1, restored)
    assert int(t2) == int(t) == 200
    for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed)):
        np.testing.assert_array_equal(a, b)


def test_an_array_of_another_configuration_is_refused_by_name():
    arrays = snapshot.to_arrays(_fresh())
    wrong = {**arrays, "agent.params['head']['weight']": np.zeros((2, 16, 3), np.float32)}
    with pytest.raises(ValueError, match=r"head.*float32 \(2, 16, 3\).*\(2, 16, 2\)"):
        snapshot.from_arrays(_fresh(), wrong)
    del arrays["memory.obs"]
    with pytest.raises(ValueError, match="lacks 'memory.obs'"):
        snapshot.from_arrays(_fresh(), arrays)
