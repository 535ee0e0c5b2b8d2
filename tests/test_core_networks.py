"""The JAX Q-networks: shapes, initialisation, dueling, noisy layers, layer norm and input scaling."""

import jax
import jax.numpy as jnp
import numpy as np

from cartpole_dqn.core.networks import Network, input_bounds


def test_shapes_and_the_seed_axis_by_vmap():
    net = Network(4, 2, (8, 8))
    params = jax.vmap(net.init)(jax.random.split(jax.random.PRNGKey(0), 3))
    q = jax.vmap(net.apply)(params, jnp.ones((3, 5, 4)))
    assert q.shape == (3, 5, 2)
    assert not np.allclose(q[0], q[1])          # each seed its own weights


def test_glorot_init_has_zero_bias_and_keras_bound_and_torch_init_its_own():
    p = Network(4, 2, (24, 24)).init(jax.random.PRNGKey(0), "glorot")
    assert np.all(p["layer0"]["bias"] == 0) and float(jnp.abs(p["layer0"]["weight"]).max()) <= (6 / 28) ** 0.5
    p = Network(4, 2, (24, 24)).init(jax.random.PRNGKey(0), "torch")
    assert float(jnp.abs(p["layer1"]["weight"]).max()) <= 24 ** -0.5 and float(jnp.abs(p["head"]["bias"]).max()) > 0


def test_dueling_head_combines_value_and_centred_advantage():
    net = Network(3, 4, (5,), dueling=True)
    p = net.init(jax.random.PRNGKey(1))
    x = jax.random.normal(jax.random.PRNGKey(2), (6, 3))
    h = jax.nn.relu(x @ p["layer0"]["weight"] + p["layer0"]["bias"])
    a = h @ p["head"]["weight"] + p["head"]["bias"]
    v = h @ p["value"]["weight"] + p["value"]["bias"]
    np.testing.assert_allclose(net.apply(p, x), v + a - a.mean(-1, keepdims=True), atol=1e-5)


def test_noisy_layers_draw_fresh_noise_with_a_key_and_use_the_mean_without():
    net = Network(4, 2, (8,), noisy=True)
    p = net.init(jax.random.PRNGKey(0))
    x = jnp.ones((3, 4))
    k1, k2 = jax.random.split(jax.random.PRNGKey(5))
    assert not np.allclose(net.apply(p, x, k1), net.apply(p, x, k2))
    mean = Network(4, 2, (8,)).apply({n: {"weight": l["weight"], "bias": l["bias"]} for n, l in p.items()}, x)
    np.testing.assert_allclose(net.apply(p, x), mean, atol=1e-6)
    assert float(p["layer0"]["weight_sigma"][0, 0]) == np.float32(0.5 / 2)


def test_layer_norm_makes_the_output_blind_to_the_scale_of_a_hidden_layer():
    net = Network(3, 2, (6, 6), layer_norm=True)
    p = net.init(jax.random.PRNGKey(0))
    scaled = {**p, "layer0": {"weight": p["layer0"]["weight"] * 7, "bias": p["layer0"]["bias"] * 7}}
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 3))
    np.testing.assert_allclose(net.apply(p, x), net.apply(scaled, x), atol=1e-4)
    assert not np.allclose(Network(3, 2, (6, 6)).apply(p, x), Network(3, 2, (6, 6)).apply(scaled, x))


def test_input_bounds_map_finite_coordinates_to_unit_range_and_pass_infinite_ones():
    center, scale = input_bounds([-2.0, -np.inf], [6.0, np.inf])
    net = Network(2, 1, (1,), in_center=center, in_scale=scale)
    x = (jnp.array([[-2.0, 3.0], [6.0, 3.0]]) - jnp.array(center)) * jnp.array(scale)
    np.testing.assert_allclose(x, [[-1.0, 3.0], [1.0, 3.0]])
    assert center == (2.0, 0.0) and scale == (0.25, 1.0) and net.in_scale == scale
