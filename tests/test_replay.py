import pytest
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


def _episode_memory(rewards, ends, terminals, capacity=16, n_step=3, gamma=0.5):
    """One seed; next_obs of step i is i + 1, so the slot a return bootstraps from is visible."""
    mem = ReplayMemory(1, capacity, 1, gamma=gamma, n_step=n_step)
    for i, (r, e, t) in enumerate(zip(rewards, ends, terminals)):
        mem.add(torch.tensor([[float(i)]]), torch.tensor([0]), torch.tensor([float(r)]),
                torch.tensor([[float(i + 1)]]), torch.tensor([float(t)]), torch.tensor([float(e)]))
    return mem


def test_n_step_return_inside_an_episode():
    mem = _episode_memory([1, 2, 4, 8, 16], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0])
    b = mem.batch_at(torch.tensor([[0, 1]]))
    assert torch.allclose(b.reward, torch.tensor([[1 + 0.5 * 2 + 0.25 * 4, 2 + 0.5 * 4 + 0.25 * 8]]))
    assert torch.allclose(b.discount, torch.tensor([[0.125, 0.125]]))
    assert b.next_obs[0, :, 0].tolist() == [3.0, 4.0]


def test_n_step_stops_at_a_termination_without_bootstrapping():
    # Episode ends (terminated) at step 1; step 2 starts a new episode.
    mem = _episode_memory([1, 2, 4, 8], [0, 1, 0, 0], [0, 1, 0, 0])
    b = mem.batch_at(torch.tensor([[0, 1]]))
    assert torch.allclose(b.reward, torch.tensor([[1 + 0.5 * 2, 2.0]]))
    assert torch.allclose(b.discount, torch.tensor([[0.0, 0.0]]))


def test_n_step_across_a_truncation_bootstraps_from_the_last_state_reached():
    # Step 1 is cut off by the time limit: not terminal, but the episode ends there.
    mem = _episode_memory([1, 2, 4, 8], [0, 1, 0, 0], [0, 0, 0, 0])
    b = mem.batch_at(torch.tensor([[0]]))
    assert torch.allclose(b.reward, torch.tensor([[1 + 0.5 * 2]]))
    assert torch.allclose(b.discount, torch.tensor([[0.25]]))      # gamma^2: two steps were summed
    assert b.next_obs[0, 0, 0].item() == 2.0                       # the final state of the cut-off episode


def test_n_step_stops_at_the_newest_transition():
    mem = _episode_memory([1, 2, 4], [0, 0, 0], [0, 0, 0])
    b = mem.batch_at(torch.tensor([[1, 2]]))
    assert torch.allclose(b.reward, torch.tensor([[2 + 0.5 * 4, 4.0]]))
    assert torch.allclose(b.discount, torch.tensor([[0.25, 0.5]]))


def test_n_step_follows_the_wrap_around():
    # Capacity 4 and 6 writes: slots hold steps [4, 5, 2, 3]; slot 3 (step 3) continues in slot 0 (step 4).
    mem = _episode_memory([1, 2, 4, 8, 16, 32], [0] * 6, [0] * 6, capacity=4)
    b = mem.batch_at(torch.tensor([[3, 2]]))
    assert torch.allclose(b.reward, torch.tensor([[8 + 0.5 * 16 + 0.25 * 32, 4 + 0.5 * 8 + 0.25 * 16]]))
    assert b.next_obs[0, :, 0].tolist() == [6.0, 5.0]
    # The oldest slot's lookahead must not run into the newest writes: slot 1 (step 5) is the newest.
    b = mem.batch_at(torch.tensor([[1]]))
    assert torch.allclose(b.reward, torch.tensor([[32.0]])) and torch.allclose(b.discount, torch.tensor([[0.5]]))


def test_n_step_fields_equal_a_direct_computation_on_random_episodes():
    """Two seeds, random rewards, terminations and cut-offs, a memory that wraps: every slot holds what summing
    the stored steps by hand gives."""
    k, capacity, n, gamma, steps = 2, 16, 4, 0.9, 45
    g = torch.Generator().manual_seed(3)
    reward = torch.randn(steps, k, generator=g)
    end = torch.rand(steps, k, generator=g) < 0.15
    terminal = end & (torch.rand(steps, k, generator=g) < 0.5)
    mem = ReplayMemory(k, capacity, 1, gamma=gamma, n_step=n)
    for t in range(steps):
        mem.add(torch.full((k, 1), float(t)), torch.zeros(k, dtype=torch.long), reward[t],
                torch.full((k, 1), t + 1.0), terminal[t].float(), end[t].float())
    for slot in range(capacity):
        t = steps - capacity + (slot - steps) % capacity          # the step this slot holds
        for s in range(k):
            ret, m = 0.0, 0
            while m < n and t + m < steps:
                ret += gamma ** m * reward[t + m, s].item()
                m += 1
                if end[t + m - 1, s]:
                    break
            last = t + m - 1
            assert mem.obs[s, slot, 0].item() == t
            assert mem.reward[s, slot].item() == pytest.approx(ret, rel=1e-5, abs=1e-6)
            assert mem.next_obs[s, slot, 0].item() == last + 1
            assert mem.discount[s, slot].item() == pytest.approx(0.0 if terminal[last, s] else gamma ** m, rel=1e-6)


def _prioritized(k, n, capacity=8, alpha=1.0):
    mem = ReplayMemory(k, capacity, 1, prioritized=True, alpha=alpha)
    for i in range(n):
        mem.add(torch.full((k, 1), float(i)), torch.zeros(k, dtype=torch.long), torch.zeros(k), torch.zeros(k, 1),
                torch.zeros(k), torch.zeros(k))
    return mem


def test_sum_tree_root_is_the_total_priority_and_new_slots_get_the_maximum():
    mem = _prioritized(2, 5)
    assert torch.allclose(mem.tree[:, 1], torch.tensor([5.0, 5.0], dtype=torch.float64))
    mem.update_priorities(torch.tensor([[0, 1], [2, 2]]), torch.tensor([[3.0, 0.5], [7.0, 7.0]]), eps=0.0)
    assert torch.allclose(mem.tree[:, 1], torch.tensor([3 + 0.5 + 3, 7 + 4], dtype=torch.float64))
    mem.add(torch.zeros(2, 1), torch.zeros(2, dtype=torch.long), torch.zeros(2), torch.zeros(2, 1), torch.zeros(2),
            torch.zeros(2))
    assert mem.tree[0, mem.leaves + 5].item() == 3.0 and mem.tree[1, mem.leaves + 5].item() == 7.0


def test_sampling_frequencies_follow_priorities_chi_square():
    from scipy.stats import chisquare

    mem = _prioritized(1, 6, capacity=6)
    priorities = torch.tensor([[1.0, 2.0, 3.0, 4.0, 0.5, 5.5]])
    mem.update_priorities(torch.arange(6).unsqueeze(0), priorities, eps=0.0)
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(6)
    for _ in range(500):
        counts += torch.bincount(mem.sample(32, g).index.flatten(), minlength=6)
    expected = (priorities[0] / priorities.sum() * counts.sum()).numpy()
    assert chisquare(counts.numpy(), expected).pvalue > 0.01


def test_importance_weights_are_normalised_by_the_batch_maximum():
    mem = _prioritized(1, 4, capacity=4)
    mem.update_priorities(torch.arange(4).unsqueeze(0), torch.tensor([[1.0, 1.0, 1.0, 5.0]]), eps=0.0)
    b = mem.sample(64, torch.Generator().manual_seed(0), beta=1.0)
    # P = [1, 1, 1, 5] / 8; w = (N P)^-1 / max -> 1 for the low-priority slots, 0.2 for the high one.
    expected = torch.where(b.index == 3, torch.tensor(0.2), torch.tensor(1.0))
    assert torch.allclose(b.weight, expected, atol=1e-6)
    b0 = mem.sample(64, torch.Generator().manual_seed(0), beta=0.0)
    assert torch.all(b0.weight == 1.0)
