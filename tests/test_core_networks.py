"""The JAX Q-networks: shapes, initialisation, seeds apart, dueling, noisy layers, layer norm and input scaling."""

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


def test_a_seeds_weights_do_not_depend_on_what_runs_beside_it():
    net = Network(4, 2, (8, 8))
    alone = net.init(jax.random.PRNGKey(7))
    many = jax.vmap(net.init)(jax.vmap(jax.random.PRNGKey)(jnp.array([5, 6, 7])))
    for a, m in zip(jax.tree.leaves(alone), jax.tree.leaves(many)):
        np.testing.assert_array_equal(a, m[2])
    assert not np.array_equal(many["layer0"]["weight"][0], many["layer0"]["weight"][1])
    x = jax.random.normal(jax.random.PRNGKey(1), (6, 4))
    np.testing.assert_allclose(net.apply(alone, x), jax.vmap(net.apply, (0, None))(many, x)[2], rtol=1e-6)


def test_gradients_stay_with_their_seed():
    net = Network(3, 2, (4,))
    params = jax.vmap(net.init)(jax.random.split(jax.random.PRNGKey(0), 2))
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 5, 3))
    grads = jax.jit(jax.grad(lambda p: jax.vmap(net.apply)(p, x)[0].sum()))(params)      # only seed 0's output
    assert all(float(jnp.abs(g[0]).sum()) > 0 and not np.any(g[1]) for g in jax.tree.leaves(grads))


def test_noisy_sigma_learns_through_the_gradient():
    net = Network(4, 2, (8,), noisy=True)
    p = net.init(jax.random.PRNGKey(0))
    x = jax.random.normal(jax.random.PRNGKey(1), (5, 4))
    grads = jax.jit(jax.grad(lambda p, key: net.apply(p, x, key).sum()))(p, jax.random.PRNGKey(2))
    for layer in ("layer0", "head"):
        assert float(jnp.abs(grads[layer]["weight_sigma"]).sum()) > 0
        assert float(jnp.abs(grads[layer]["bias_sigma"]).sum()) > 0
    # Without a key the network acts on its means: sigma gets nothing.
    grads = jax.jit(jax.grad(lambda p: net.apply(p, x).sum()))(p)
    assert not np.any(grads["layer0"]["weight_sigma"]) and not np.any(grads["head"]["bias_sigma"])


def test_layer_norm_normalises_each_hidden_pre_activation():
    """Mean 0 and variance 1 over each hidden layer before the ReLU (LayerNorm's epsilon of 1e-5, no scale)."""
    net = Network(4, 3, (8, 8), layer_norm=True)
    p = jax.tree.map(np.asarray, net.init(jax.random.PRNGKey(0)))
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (5, 4)), np.float64)
    h = x
    for name in ("layer0", "layer1"):
        z = h @ p[name]["weight"] + p[name]["bias"]
        h = np.maximum((z - z.mean(-1, keepdims=True)) / np.sqrt(z.var(-1, keepdims=True) + 1e-5), 0.0)
    np.testing.assert_allclose(net.apply(p, x.astype(np.float32)), h @ p["head"]["weight"] + p["head"]["bias"],
                               rtol=1e-4, atol=1e-5)
