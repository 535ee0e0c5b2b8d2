"""Experience replay shaped [K, capacity, ...]: one circular memory per seed, written and sampled for all at once.

All K environments step together, so every seed's memory holds the same number of transitions and one write index
serves them all. Sampling draws an independent batch of indices per seed and gathers along the capacity axis.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Batch:
    """Transitions [K, B, ...]. `done` is 1 where the next state is terminal (no bootstrapping)."""

    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    next_obs: torch.Tensor
    done: torch.Tensor

    def sample(self, j: int) -> "Batch":
        """The j-th transition of every seed's batch, as a batch of one."""
        s = slice(j, j + 1)
        return Batch(self.obs[:, s], self.action[:, s], self.reward[:, s], self.next_obs[:, s], self.done[:, s])


class ReplayMemory:
    """A circular buffer per seed of (obs, action, reward, next_obs, done)."""

    def __init__(self, seeds: int, capacity: int, obs_size: int, device: torch.device | str = "cpu"):
        self.capacity = capacity
        self.size = 0
        self.pos = 0
        # torch.empty leaves pages untouched until written, so a large capacity costs only what is used.
        self.obs = torch.empty(seeds, capacity, obs_size, device=device)
        self.next_obs = torch.empty(seeds, capacity, obs_size, device=device)
        self.action = torch.empty(seeds, capacity, dtype=torch.long, device=device)
        self.reward = torch.empty(seeds, capacity, device=device)
        self.done = torch.empty(seeds, capacity, device=device)
        self._rows = torch.arange(seeds, device=device).unsqueeze(1)

    def __len__(self) -> int:
        return self.size

    def add(self, obs: torch.Tensor, action: torch.Tensor, reward: torch.Tensor, next_obs: torch.Tensor,
            done: torch.Tensor) -> None:
        """Store one transition per seed (each argument has a leading seed axis)."""
        i = self.pos
        self.obs[:, i] = obs
        self.action[:, i] = action
        self.reward[:, i] = reward
        self.next_obs[:, i] = next_obs
        self.done[:, i] = done
        self.pos = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator, replacement: bool = True) -> Batch:
        """An independent uniform batch per seed; without replacement, the indices within a batch are distinct."""
        seeds = self.obs.shape[0]
        if replacement:
            idx = torch.randint(0, self.size, (seeds, batch_size), generator=generator, device=self.obs.device)
        else:
            # The top-k of uniform noise is a uniformly random subset in random order, as random.sample draws.
            noise = torch.rand(seeds, self.size, generator=generator, device=self.obs.device)
            idx = noise.topk(batch_size, dim=1).indices
        rows = self._rows
        return Batch(self.obs[rows, idx], self.action[rows, idx], self.reward[rows, idx], self.next_obs[rows, idx],
                     self.done[rows, idx])
