"""Greedy evaluation: the current networks play fresh episodes with epsilon 0 on environments of their own.

The evaluation environments are separate instances seeded apart from training, and acting greedily draws no random
numbers, so evaluating never changes what training does.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from .envs import _make_one, check_spaces, env_spec
from .networks import QNetwork


class Evaluator:
    """K seeds x M episodes played side by side; each call plays M fresh episodes per seed.

    The environments are seeded once, at the first call; later calls continue their random streams, so every
    evaluation sees new starting states and the whole sequence is reproducible.
    """

    def __init__(self, env_id: str, seeds: list[int], episodes: int, seed_base: int):
        env_spec(env_id)
        self.k, self.m = len(seeds), episodes
        self.envs = gym.vector.SyncVectorEnv([lambda: _make_one(env_id) for _ in range(self.k * self.m)],
                                             autoreset_mode="SameStep")
        check_spaces(self.envs, env_id)
        self._first_seeds: list[int] | None = [seed_base + 1000 * s + j for s in seeds for j in range(episodes)]

    @torch.no_grad()
    def run(self, net: QNetwork, epsilon: float = 0.0, rng: np.random.Generator | None = None) -> np.ndarray:
        """Returns [K, M] undiscounted returns, one finished episode per environment."""
        obs, _ = self.envs.reset(seed=self._first_seeds)
        self._first_seeds = None
        device = next(net.parameters()).device
        n = self.k * self.m
        returns = np.zeros(n)
        done = np.zeros(n, dtype=bool)
        n_actions = self.envs.single_action_space.n
        while not done.all():
            x = torch.as_tensor(obs, dtype=torch.float32, device=device).view(self.k, self.m, -1)
            actions = net(x).argmax(dim=-1).flatten().cpu().numpy()
            if epsilon > 0:
                rng = rng if rng is not None else np.random.default_rng()
                explore = rng.random(n) < epsilon
                actions = np.where(explore, rng.integers(0, n_actions, n), actions)
            obs, reward, terminated, truncated, _ = self.envs.step(actions)
            returns += np.where(done, 0.0, reward)
            done |= terminated | truncated
        return returns.reshape(self.k, self.m)

    def close(self) -> None:
        self.envs.close()
