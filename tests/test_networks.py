import torch

from cartpole_dqn.networks import QNetwork


def test_shapes_and_seed_axis():
    net = QNetwork(3, 4, 2, (8, 8))
    net.init_weights([0, 1, 2], "torch")
    assert net(torch.randn(3, 5, 4)).shape == (3, 5, 2)


def test_a_seeds_weights_do_not_depend_on_what_runs_beside_it():
    alone = QNetwork(1, 4, 2, (8, 8))
    alone.init_weights([7], "torch")
    many = QNetwork(3, 4, 2, (8, 8))
    many.init_weights([5, 6, 7], "torch")
    assert torch.equal(alone.flat[0], many.flat[2])
    assert not torch.equal(many.flat[0], many.flat[1])
    x = torch.randn(1, 6, 4)
    assert torch.allclose(alone(x)[0], many(x.expand(3, 6, 4))[2])


def test_glorot_init_has_zero_bias_and_keras_bound():
    net = QNetwork(1, 4, 2, (24, 24))
    net.init_weights([0], "glorot")
    (w, b) = net.layers()[0]
    assert torch.all(b == 0) and w.abs().max() <= (6 / (4 + 24)) ** 0.5


def test_layer_gradients_land_in_the_flat_gradient_per_seed():
    net = QNetwork(2, 3, 2, (4,))
    net.init_weights([0, 1], "torch")
    x = torch.randn(2, 5, 3)
    x[1] = 0.0
    net.zero_grad()
    net(x)[0].sum().backward()           # only seed 0's output
    assert net.flat.grad[0].abs().sum() > 0 and torch.all(net.flat.grad[1] == 0)
    grads = torch.cat([t.grad.flatten(1) for pair in net.layers() for t in pair], dim=1)
    assert torch.equal(grads, net.flat.grad)   # the layers' .grad are views of flat.grad, in layout order


def test_dueling_head_combines_value_and_centred_advantage():
    net = QNetwork(1, 3, 4, (5,), dueling=True)
    net.init_weights([0], "torch")
    x = torch.randn(1, 6, 3)
    (w1, b1), (wa, ba), (wv, bv) = net.layers()
    h = torch.relu(x @ w1 + b1)
    a = h @ wa + ba
    v = h @ wv + bv
    assert torch.allclose(net(x), v + a - a.mean(-1, keepdim=True), atol=1e-6)


def test_noisy_layers_draw_fresh_noise_in_training_and_use_the_mean_in_eval():
    net = QNetwork(2, 4, 2, (8,), noisy=True)
    net.init_weights([0, 1], "torch")
    net.noise_generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 4)
    assert not torch.allclose(net(x), net(x))
    net.eval()
    (w1, b1, _, _), (w2, b2, _, _) = net.layers()
    mean = torch.relu(x @ w1 + b1) @ w2 + b2
    assert torch.allclose(net(x), mean, atol=1e-6)
    sigma = net.layers()[0][2]
    assert torch.allclose(sigma, torch.full_like(sigma, 0.5 / 4 ** 0.5))


def test_noisy_sigma_learns_through_the_shared_gradient():
    net = QNetwork(1, 4, 2, (8,), noisy=True)
    net.init_weights([0], "torch")
    net.zero_grad()
    net(torch.randn(1, 5, 4)).sum().backward()
    assert net.layers()[0][2].grad.abs().sum() > 0          # sigma gets a gradient


def test_input_bounds_map_finite_coordinates_to_unit_range_and_pass_infinite_ones():
    import numpy as np

    net = QNetwork(1, 3, 2, (4,))
    net.set_input_bounds(np.array([-2.0, 0.0, -np.inf]), np.array([2.0, 10.0, np.inf]))
    obs = torch.tensor([[[2.0, 0.0, 7.0], [-2.0, 10.0, -3.0]]])
    scaled = (obs - net.in_center) * net.in_scale
    assert torch.allclose(scaled, torch.tensor([[[1.0, -1.0, 7.0], [-1.0, 1.0, -3.0]]]))


def test_layer_norm_normalises_each_hidden_pre_activation():
    net = QNetwork(2, 4, 3, (8, 8), layer_norm=True)
    net.init_weights([0, 1], "torch")
    x = torch.randn(2, 5, 4)
    h = x
    for w, b in net.layers()[:2]:
        z = torch.baddbmm(b, h, w)
        h = torch.relu((z - z.mean(-1, keepdim=True)) / (z.var(-1, unbiased=False, keepdim=True) + 1e-5).sqrt())
    w, b = net.layers()[2]
    assert torch.allclose(net(x), torch.baddbmm(b, h, w), atol=1e-5)


def test_layer_norm_makes_the_output_blind_to_the_scale_of_a_hidden_layer():
    plain, normed = QNetwork(1, 4, 2, (8,)), QNetwork(1, 4, 2, (8,), layer_norm=True)
    for net in (plain, normed):
        net.init_weights([3], "torch")
    x = torch.randn(1, 6, 4, generator=torch.Generator().manual_seed(0))
    before = plain(x), normed(x)
    with torch.no_grad():
        for net in (plain, normed):
            net.flat[:, :4 * 8 + 8] *= 10.0                     # the first layer's weight and bias
    assert (plain(x) - before[0]).abs().max() > 0.1
    assert torch.allclose(normed(x), before[1], atol=1e-3)      # up to LayerNorm's epsilon of 1e-5 in the variance
