"""Experience replay shaped [K, capacity, ...]: one circular memory per seed, written and sampled for all at once.

All K environments step together, so every seed's memory holds the same number of transitions and one write index
serves them all. Sampling draws an independent batch of indices per seed and gathers along the capacity axis.

Two refinements, both vectorised over seeds and samples:
- n-step returns are assembled at sampling time from the one-step transitions that follow the sampled one: they
  stop at an episode's end (a termination does not bootstrap; a truncation bootstraps from the last state reached)
  and at the newest transition, and they follow the circular buffer across its wrap-around.
- prioritized replay (Schaul et al., 2016) keeps a sum tree per seed, [K, 2 * leaves]; sampling descends all
  K x B paths together, one tree level at a time, and updating writes leaves then recomputes their ancestors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Batch:
    """Transitions [K, B, ...] ready for the TD target y = reward + discount * V(next_obs).

    `reward` is the (n-step) discounted return, `discount` is gamma^m, or 0 where the episode terminated within the
    m steps; `weight` holds importance weights (ones for uniform replay) and `index` the memory slots sampled.
    """

    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    next_obs: torch.Tensor
    discount: torch.Tensor
    weight: torch.Tensor
    index: torch.Tensor

    def sample(self, j: int) -> "Batch":
        """The j-th transition of every seed's batch, as a batch of one."""
        s = slice(j, j + 1)
        return Batch(*(getattr(self, f)[:, s] for f in self.__dataclass_fields__))


class ReplayMemory:
    """A circular buffer per seed of (obs, action, reward, next_obs, terminal, episode_end).

    `terminal` means "do not bootstrap from next_obs"; `episode_end` means the next transition belongs to another
    episode (termination or truncation), which is where n-step returns stop.
    """

    def __init__(self, seeds: int, capacity: int, obs_size: int, *, gamma: float = 0.99, n_step: int = 1,
                 prioritized: bool = False, alpha: float = 0.6, device: torch.device | str = "cpu"):
        self.capacity, self.gamma, self.n_step = capacity, gamma, n_step
        self.size = 0
        self.pos = 0
        # torch.empty leaves pages untouched until written, so a large capacity costs only what is used.
        self.obs = torch.empty(seeds, capacity, obs_size, device=device)
        self.next_obs = torch.empty(seeds, capacity, obs_size, device=device)
        self.action = torch.empty(seeds, capacity, dtype=torch.long, device=device)
        self.reward = torch.empty(seeds, capacity, device=device)
        self.terminal = torch.empty(seeds, capacity, device=device)
        self.episode_end = torch.empty(seeds, capacity, device=device)
        self._rows = torch.arange(seeds, device=device).unsqueeze(1)
        # gamma^j for the n lookahead steps, and gamma^m for a window of m steps, by repeated products in float32.
        powers = torch.cat([torch.ones(1, device=device), torch.full((n_step,), gamma, device=device).cumprod(0)])
        self._ahead = torch.arange(n_step, device=device)
        self._powers, self._powers_after = powers[:-1], powers[1:]
        self.prioritized, self.alpha = prioritized, alpha
        if prioritized:
            self.depth = max(0, (capacity - 1).bit_length())
            self.leaves = 1 << self.depth
            self.tree = torch.zeros(seeds, 2 * self.leaves, dtype=torch.float64, device=device)
            self.max_priority = torch.ones(seeds, dtype=torch.float64, device=device)

    def __len__(self) -> int:
        return self.size

    def add(self, obs: torch.Tensor, action: torch.Tensor, reward: torch.Tensor, next_obs: torch.Tensor,
            terminal: torch.Tensor, episode_end: torch.Tensor) -> None:
        """Store one transition per seed (each argument has a leading seed axis)."""
        i = self.pos
        self.obs[:, i] = obs
        self.action[:, i] = action
        self.reward[:, i] = reward
        self.next_obs[:, i] = next_obs
        self.terminal[:, i] = terminal
        self.episode_end[:, i] = episode_end
        if self.prioritized:  # new transitions get the highest priority seen, so each is replayed at least once
            self._set_priority(torch.full_like(self._rows, i), self.max_priority.unsqueeze(1) ** self.alpha)
        self.pos = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    # ----------------------------------------------------------------------------------------------- sampling ---
    def sample(self, batch_size: int, generator: torch.Generator, replacement: bool = True,
               beta: float = 1.0) -> Batch:
        """A batch per seed: uniform (with or without replacement) or proportional to priority."""
        seeds, device = self.obs.shape[0], self.obs.device
        weight = torch.ones(seeds, batch_size, device=device)
        if self.prioritized:
            idx, prob = self._sample_proportional(batch_size, generator)
            # Importance weights (N * P(i))^-beta, normalised by the batch maximum so they only ever scale down.
            w = (self.size * prob).pow(-beta)
            weight = (w / w.max(dim=1, keepdim=True).values).float()
        elif replacement:
            idx = torch.randint(0, self.size, (seeds, batch_size), generator=generator, device=device)
        else:
            # The top-k of uniform noise is a uniformly random subset in random order, as random.sample draws.
            noise = torch.rand(seeds, self.size, generator=generator, device=device)
            idx = noise.topk(batch_size, dim=1).indices
        return self.batch_at(idx, weight)

    def batch_at(self, idx: torch.Tensor, weight: torch.Tensor | None = None) -> Batch:
        """The transitions in slots idx [K, B], with their n-step returns and bootstrap discounts."""
        reward, last, discount = self._n_step(idx)
        rows = self._rows
        weight = torch.ones_like(reward) if weight is None else weight
        return Batch(self.obs[rows, idx], self.action[rows, idx], reward, self.next_obs[rows, last], discount,
                     weight, idx)

    def _n_step(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(discounted return over up to n steps, slot of the last step used, discount to bootstrap with)."""
        rows = self._rows
        if self.n_step == 1:
            return self.reward[rows, idx], idx, self.gamma * (1.0 - self.terminal[rows, idx])
        # All n lookahead slots [K, B, n] in one gather. Step j is used if it has been written since idx (the
        # lookahead must not run into slots not yet (re)written) and no episode ended at an earlier step.
        slots = (idx.unsqueeze(-1) + self._ahead) % self.capacity
        written = self._ahead <= ((self.pos - 1 - idx) % self.capacity).unsqueeze(-1)
        # torch.where, not a product: slots never written hold whatever memory held (NaN too), and 0 * NaN
        # would poison the return.
        end = torch.where(written, self.episode_end[rows.unsqueeze(-1), slots], 1.0)
        still_in = torch.cumprod(1.0 - end, dim=-1).roll(1, dims=-1)
        still_in[..., 0] = 1.0
        use = written & (still_in > 0)
        ret = torch.where(use, self._powers * self.reward[rows.unsqueeze(-1), slots], 0.0).sum(-1)
        steps = use.sum(-1, keepdim=True)                     # m >= 1: slot idx itself is always used
        last = slots.gather(-1, steps - 1).squeeze(-1)
        discount = self._powers_after.gather(0, steps.view(-1) - 1).view_as(last)
        return ret, last, discount * (1.0 - self.terminal[rows, last])

    # ----------------------------------------------------------------------------------------- priorities ---
    def _sample_proportional(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Stratified proportional sampling: one draw in each of B equal slices of the total priority."""
        seeds, device = self.tree.shape[0], self.tree.device
        total = self.tree[:, 1:2]
        u = (torch.arange(batch_size, device=device, dtype=torch.float64)
             + torch.rand(seeds, batch_size, generator=generator, device=device, dtype=torch.float64))
        u = u * total / batch_size
        node = torch.ones(seeds, batch_size, dtype=torch.long, device=device)
        for _ in range(self.depth):              # one step down the tree per level, every path at once
            left = self.tree.gather(1, 2 * node)
            right = u > left
            u = torch.where(right, u - left, u)
            node = 2 * node + right.long()
        idx = (node - self.leaves).clamp(max=self.size - 1)   # rounding can land past the last filled leaf
        prob = self.tree.gather(1, idx + self.leaves) / total
        return idx, prob

    def update_priorities(self, idx: torch.Tensor, td_error: torch.Tensor, eps: float = 1e-6) -> None:
        """Priority p = (|td| + eps)^alpha for the sampled slots [K, B]."""
        p = td_error.detach().abs().double() + eps
        self.max_priority = torch.maximum(self.max_priority, p.max(dim=1).values)
        self._set_priority(idx, p ** self.alpha)

    def _set_priority(self, idx: torch.Tensor, value: torch.Tensor) -> None:
        node = idx + self.leaves
        self.tree.scatter_(1, node, value.expand_as(node))
        for _ in range(self.depth):              # recompute the ancestors, one level per pass
            node = node // 2
            self.tree.scatter_(1, node, self.tree.gather(1, 2 * node) + self.tree.gather(1, 2 * node + 1))
