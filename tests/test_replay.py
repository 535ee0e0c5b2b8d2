import torch

from cartpole_dqn.replay import ReplayMemory


def _fill(mem, n, k):
    for i in range(n):
        v = torch.full((k,), float(i))
        mem.add(v.unsqueeze(1).expand(k, 2) + torch.arange(k).view(k, 1) * 1000, torch.full((k,), i % 2),
                v, v.unsqueeze(1).expand(k, 2) + 0.5, torch.zeros(k), torch.zeros(k))


def test_capacity_wraps_around_overwriting_the_oldest():
    mem = ReplayMemory(2, 5, 2)
    _fill(mem, 7, 2)
    assert len(mem) == 5 and mem.pos == 2
    assert sorted(mem.reward[0].tolist()) == [2, 3, 4, 5, 6]
    assert mem.reward[0, 0] == 5 and mem.reward[0, 1] == 6


def test_samples_are_per_seed_and_consistent():
    mem = ReplayMemory(3, 50, 2)
    _fill(mem, 50, 3)
    b = mem.sample(16, torch.Generator().manual_seed(0))
    assert b.obs.shape == (3, 16, 2) and b.action.shape == (3, 16)
    # Each sampled row belongs to its own seed, and its fields belong to one transition.
    assert torch.all((b.obs[..., 0] // 1000) == torch.arange(3).view(3, 1))
    assert torch.equal(b.obs[..., 0] % 1000, b.reward)
    assert torch.equal(b.next_obs[..., 1], b.reward + 0.5)
    # Seeds draw independent indices.
    assert not torch.equal(b.reward[0], b.reward[1])


def test_uniform_sampling_covers_only_filled_slots_evenly():
    mem = ReplayMemory(1, 100, 2)
    _fill(mem, 10, 1)
    g = torch.Generator().manual_seed(1)
    counts = torch.zeros(100)
    for _ in range(400):
        counts += torch.bincount(mem.sample(25, g).reward.long().flatten(), minlength=100)
    assert counts[10:].sum() == 0
    assert counts[:10].min() > 800 and counts[:10].max() < 1200   # 1000 expected each


def test_sampling_without_replacement_gives_distinct_transitions():
    mem = ReplayMemory(2, 1000, 2)
    _fill(mem, 20, 2)
    b = mem.sample(20, torch.Generator().manual_seed(0), replacement=False)
    for k in range(2):
        assert sorted(b.reward[k].tolist()) == list(range(20))
