import numpy as np
import pytest
import torch

from cartpole_dqn.agent import Agent, learning_signal, td_target
from cartpole_dqn.config import preset
from cartpole_dqn.networks import QNetwork
from cartpole_dqn.replay import Batch, ReplayMemory


class Table(QNetwork):
    """A 'network' that returns fixed Q-values per next state, for hand-computed targets."""

    def __init__(self, values):
        super().__init__(1, 1, 2, (1,))
        self.values = torch.tensor(values, dtype=torch.float32)

    def forward(self, obs):
        return self.values[obs[..., 0].long()]


def _batch(reward, done, next_state, gamma):
    """One-step transitions through the replay memory, which folds gamma and termination into `discount`."""
    mem = ReplayMemory(1, 10, 1, gamma=gamma)
    for r, d, s in zip(reward, done, next_state):
        mem.add(torch.zeros(1, 1), torch.zeros(1, dtype=torch.long), torch.tensor([r]), torch.tensor([[float(s)]]),
                torch.tensor([float(d)]), torch.tensor([float(d)]))
    return mem.batch_at(torch.arange(len(reward)).unsqueeze(0))


def test_vanilla_target_is_reward_plus_discounted_max():
    target = Table([[1.0, 3.0], [5.0, 2.0]])
    y = td_target(_batch([1.0, 0.5], [0, 0], [0, 1], 0.9), target, target, double=False)
    assert torch.allclose(y, torch.tensor([[1 + 0.9 * 3, 0.5 + 0.9 * 5]]))


def test_terminal_transition_does_not_bootstrap():
    target = Table([[1.0, 3.0]])
    y = td_target(_batch([1.0, -1.0], [0, 1], [0, 0], 0.9), target, target, double=False)
    assert torch.allclose(y, torch.tensor([[1 + 0.9 * 3, -1.0]]))


def test_double_dqn_lets_the_online_net_choose_and_the_target_net_value():
    online = Table([[0.0, 10.0]])     # picks action 1
    target = Table([[7.0, 2.0]])      # values action 1 at 2 (max would be 7)
    y = td_target(_batch([1.0], [0], [0], 0.5), online, target, double=True)
    assert torch.allclose(y, torch.tensor([[1 + 0.5 * 2]]))
    y = td_target(_batch([1.0], [0], [0], 0.5), online, target, double=False)
    assert torch.allclose(y, torch.tensor([[1 + 0.5 * 7]]))


def test_truncation_bootstraps_but_the_classic_preset_treats_it_as_failure():
    reward = np.array([1.0, 1.0, 1.0])
    terminated = np.array([False, True, False])
    truncated = np.array([False, False, True])
    stored, no_bootstrap = learning_signal(preset("default"), reward, terminated, truncated)
    assert stored.tolist() == [1, 1, 1] and no_bootstrap.tolist() == [False, True, False]
    stored, no_bootstrap = learning_signal(preset("classic"), reward, terminated, truncated)
    assert stored.tolist() == [1, -1, -1] and no_bootstrap.tolist() == [False, True, True]
    # The classic target of a failed step is the negated reward itself: -1.
    target = Table([[4.0, 4.0]])
    y = td_target(_batch(stored.tolist(), no_bootstrap.astype(float).tolist(), [0, 0, 0], 0.95), target, target,
                  double=False)
    assert torch.allclose(y, torch.tensor([[1 + 0.95 * 4, -1.0, -1.0]]))


def test_linear_epsilon_schedule_over_env_steps():
    agent = Agent(preset("default", seeds=2, epsilon_start=1.0, epsilon_end=0.1, epsilon_decay_steps=100), 4, 2)
    none = torch.zeros(2, dtype=torch.bool)
    agent.update_epsilon(50, none)
    assert torch.allclose(agent.epsilon, torch.tensor([0.55, 0.55]))
    agent.update_epsilon(1000, none)
    assert torch.allclose(agent.epsilon, torch.tensor([0.1, 0.1]))


def test_learning_rate_is_constant_unless_a_decay_is_set():
    agent = Agent(preset("default", lr=1e-3), 4, 2)
    agent.set_learning_rate(10_000)
    assert agent.optimizer.param_groups[0]["lr"] == 1e-3
    agent = Agent(preset("default", lr=1e-3, lr_end=1e-4, lr_decay_steps=1000), 4, 2)
    rates = []
    for steps in (0, 500, 1000, 5000):
        agent.set_learning_rate(steps)
        rates.append(agent.optimizer.param_groups[0]["lr"])
    assert rates == pytest.approx([1e-3, 5.5e-4, 1e-4, 1e-4])


@pytest.mark.parametrize("eps", [1e-8, 0.1])
def test_adam_first_step_is_lr_times_gradient_over_its_magnitude_plus_eps(eps):
    """Adam's first bias-corrected step is lr * g / (|g| + eps): eps sets how far small gradients move a weight."""
    agent = Agent(preset("default", hidden=(8, 8), lr=1e-2, adam_eps=eps), 4, 2)
    before = agent.online.flat.detach().clone()
    agent.learn(_random_batch(1, 16, torch.Generator().manual_seed(0)), torch.tensor([True]))
    g = agent.online.flat.grad
    assert torch.allclose(agent.online.flat.detach(), before - 1e-2 * g / (g.abs() + eps), atol=1e-7)


@pytest.mark.parametrize("loss, delta, expected", [
    ("huber", 1.0, (0.125 + 2.5 + 19.5) / 3),       # 0.5 e^2 within delta, delta * (|e| - delta / 2) beyond
    ("huber", 10.0, (0.125 + 4.5 + 150.0) / 3),
    ("mse", 1.0, (0.25 + 9.0 + 400.0) / 3),
])
def test_td_loss_is_quadratic_within_huber_delta_and_linear_beyond(loss, delta, expected):
    """Q = 0 everywhere and terminal transitions, so each TD error is minus its reward: 0.5, 3 and -20."""
    agent = Agent(preset("default", hidden=(8,), loss=loss, huber_delta=delta), 1, 2)
    agent.online.flat.data.zero_()
    stats = agent.learn(_batch([0.5, 3.0, -20.0], [1, 1, 1], [0, 0, 0], 0.99), torch.tensor([True]))
    assert stats["loss"].item() == pytest.approx(expected)


def test_exponential_epsilon_decays_per_replay_per_seed_down_to_the_floor():
    agent = Agent(preset("classic", seeds=2), 4, 2)
    agent.update_epsilon(1, torch.tensor([True, False]))
    assert torch.allclose(agent.epsilon, torch.tensor([0.995, 1.0]))
    for _ in range(2000):
        agent.update_epsilon(1, torch.tensor([True, True]))
    assert torch.allclose(agent.epsilon, torch.tensor([0.01, 0.01]))


def _random_batch(k, n, g):
    return Batch(torch.randn(k, n, 4, generator=g), torch.randint(0, 2, (k, n), generator=g),
                 torch.randn(k, n, generator=g), torch.randn(k, n, 4, generator=g), torch.full((k, n), 0.99),
                 torch.ones(k, n), torch.zeros(k, n, dtype=torch.long))


@pytest.mark.parametrize("name", ["default", "classic"])
def test_a_masked_seed_is_left_exactly_as_it_was(name):
    agent = Agent(preset(name, seeds=2, hidden=(8, 8)), 4, 2)
    g = torch.Generator().manual_seed(0)
    agent.learn(_random_batch(2, 20, g), torch.tensor([True, True]))
    before = agent.online.flat.detach().clone()
    target_before = agent.target.flat.detach().clone()
    agent.learn(_random_batch(2, 20, g), torch.tensor([True, False]))
    assert torch.equal(agent.online.flat[1], before[1]) and not torch.equal(agent.online.flat[0], before[0])
    assert torch.equal(agent.target.flat[1], target_before[1])


def test_seeds_learn_independently():
    """Seed 0's update is the same whatever data seed 1 sees (per-seed loss, clipping and Adam)."""
    g = torch.Generator().manual_seed(0)
    b = _random_batch(2, 32, g)
    b.reward[1] *= 1000.0        # seed 1 gets huge errors: a global grad clip would shrink seed 0's step
    a1 = Agent(preset("default", seeds=2, hidden=(8, 8)), 4, 2)
    a1.learn(b, torch.tensor([True, True]))
    b.reward[1] = 0.0
    a2 = Agent(preset("default", seeds=2, hidden=(8, 8)), 4, 2)
    a2.learn(b, torch.tensor([True, True]))
    assert torch.allclose(a1.online.flat[0], a2.online.flat[0])
    assert not torch.allclose(a1.online.flat[1], a2.online.flat[1])


def test_learning_reduces_td_error_on_a_fixed_batch():
    agent = Agent(preset("default", seeds=1, hidden=(16, 16), lr=1e-2, target_update_interval=1, tau=1.0), 4, 2)
    b = _random_batch(1, 32, torch.Generator().manual_seed(0))
    b.discount.fill_(0.0)      # pure regression onto the rewards
    first = agent.learn(b, torch.tensor([True]))["loss"].item()
    for _ in range(200):
        last = agent.learn(b, torch.tensor([True]))["loss"].item()
    assert last < 0.2 * first


def test_act_is_greedy_at_epsilon_zero_and_random_at_one():
    agent = Agent(preset("default", seeds=3, hidden=(8,)), 4, 2)
    obs = torch.randn(3, 4)
    greedy = agent.online(obs.unsqueeze(1)).squeeze(1).argmax(-1)
    assert torch.equal(agent.act(obs, torch.zeros(3)), greedy)
    actions = torch.stack([agent.act(obs, torch.ones(3)) for _ in range(200)])
    assert set(actions.unique().tolist()) == {0, 1}


def test_reward_clipping_is_an_explicit_switch():
    reward = np.array([5.0, -3.0, 0.5])
    no = np.zeros(3, dtype=bool)
    assert learning_signal(preset("default"), reward, no, no)[0].tolist() == [5.0, -3.0, 0.5]
    assert learning_signal(preset("default", reward_clip=1.0), reward, no, no)[0].tolist() == [1.0, -1.0, 0.5]
