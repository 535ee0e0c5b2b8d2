"""Experience replay shaped [K, capacity, ...]: one circular memory per seed, written and sampled for all at once.

All K environments step together, so every seed's memory holds the same number of transitions and one write index
serves them all. Sampling draws an independent batch of indices per seed and gathers along the capacity axis.

Two refinements, both vectorised over seeds and samples:
- n-step returns are assembled as transitions arrive: each new step adds its discounted reward to the up to n - 1
  transitions before it that it continues, and becomes their bootstrap state, so a sample is a plain gather. They
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
    """A circular buffer per seed of (obs, action, reward, next_obs, discount), ready to sample.

    `reward` is the discounted return of up to n steps from the transition, `next_obs` the state it bootstraps from
    and `discount` gamma^m for the m steps summed, or 0 where the episode terminated within them. A transition is
    complete n - 1 steps after it was written (or when its episode ends); until then it holds what has happened so
    far, which is what sampling it then should give.
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
        self.discount = torch.empty(seeds, capacity, device=device)
        # Transitions of each seed's current episode already in memory: the ones a new step can continue.
        self.episode_steps = torch.zeros(seeds, dtype=torch.long, device=device)
        self._rows = torch.arange(seeds, device=device).unsqueeze(1)
        # Step j back (1 <= j < n, and never round the whole buffer onto the slot being written) gets gamma^j of
        # the new reward and, if it bootstraps, gamma^(j + 1). Powers by repeated products in float32.
        self._back = torch.arange(1, min(n_step, capacity), device=device)
        powers = torch.full((n_step,), gamma, device=device).cumprod(0)
        self._powers_back = powers[:len(self._back)]
        self._powers_after = powers[1:len(self._back) + 1]
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
        """Store one transition per seed (each argument has a leading seed axis).

        `terminal` means "do not bootstrap from next_obs"; `episode_end` means the next transition belongs to
        another episode (termination or truncation), which is where n-step returns stop.
        """
        i = self.pos
        keep = 1.0 - terminal
        if len(self._back):
            # The earlier transitions of this episode that are still inside their n-step window take this step.
            slots = (i - self._back) % self.capacity                                  # [n - 1]
            open_ = self._back <= self.episode_steps.unsqueeze(1)                     # [K, n - 1]
            self.reward.index_add_(1, slots, torch.where(open_, self._powers_back * reward.unsqueeze(1), 0.0))
            self.next_obs.index_copy_(1, slots, torch.where(open_.unsqueeze(-1), next_obs.unsqueeze(1),
                                                            self.next_obs.index_select(1, slots)))
            self.discount.index_copy_(1, slots, torch.where(open_, self._powers_after * keep.unsqueeze(1),
                                                            self.discount.index_select(1, slots)))
        self.obs[:, i] = obs
        self.action[:, i] = action
        self.reward[:, i] = reward
        self.next_obs[:, i] = next_obs
        self.discount[:, i] = self.gamma * keep
        self.episode_steps = torch.where(episode_end > 0, 0, self.episode_steps + 1)
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
        rows = self._rows
        reward = self.reward[rows, idx]
        weight = torch.ones_like(reward) if weight is None else weight
        return Batch(self.obs[rows, idx], self.action[rows, idx], reward, self.next_obs[rows, idx],
                     self.discount[rows, idx], weight, idx)

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
