"""The DQN agent: acting (epsilon-greedy) and learning (TD target, loss, optimizer step, target sync).

Everything carries a leading seed axis K. The K networks live in one module whose parameters are [K, ...]; the
loss is the sum over seeds of each seed's mean loss, so each seed's gradient is exactly its own, and Adam, being
elementwise, keeps K independent optimizer states in the same tensors. Per-seed gradient clipping and a per-seed
mask (seeds that must not learn this step) keep the seeds independent where a plain optimizer would mix them.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .config import Config
from .networks import QNetwork
from .replay import Batch


def learning_signal(cfg: Config, reward: np.ndarray, terminated: np.ndarray,
                    truncated: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(reward to store, no-bootstrap flag) for one step's outcome.

    A truncated episode was cut off by the time limit: its last state is not terminal, so the target bootstraps
    from it. The article's code counted the cut-off as a failure and negated the final reward; the classic preset
    keeps that (`terminal_on_truncation`, `negate_final_reward`).
    """
    done = terminated | truncated
    if cfg.reward_clip > 0:
        reward = np.clip(reward, -cfg.reward_clip, cfg.reward_clip)
    stored = np.where(done, -reward, reward) if cfg.negate_final_reward else reward
    return stored, (done if cfg.terminal_on_truncation else terminated)


def td_target(batch: Batch, online: QNetwork, target: QNetwork, double: bool) -> torch.Tensor:
    """y = R + discount * Q_target(s', a*), with a* = argmax_a Q(s', a) from the online network under Double DQN
    and from the target network otherwise. The replay memory has folded gamma^n and termination into `discount`
    (0 after a true termination; a time-limit cut-off still bootstraps, since that state is not terminal)."""
    with torch.no_grad():
        q_next = target(batch.next_obs)                                           # [K, B, A]
        if double:
            best = online(batch.next_obs).argmax(dim=-1, keepdim=True)
            v_next = q_next.gather(-1, best).squeeze(-1)
        else:
            v_next = q_next.max(dim=-1).values
        return batch.reward + batch.discount * v_next


class Agent:
    """K independent DQN agents: `act` picks actions, `learn` takes one replay step, `sync_target` is implicit."""

    def __init__(self, cfg: Config, obs_size: int, n_actions: int, device: torch.device | str = "cpu",
                 obs_bounds: tuple[np.ndarray, np.ndarray] | None = None):
        self.cfg = cfg
        self.n_actions = n_actions
        self.device = torch.device(device)
        k = cfg.seeds
        self.generator = torch.Generator(self.device).manual_seed(cfg.seed)
        def network() -> QNetwork:
            return QNetwork(k, obs_size, n_actions, cfg.hidden, cfg.dueling, self.device, cfg.noisy,
                            cfg.noisy_sigma0, cfg.layer_norm)

        self.online = network()
        self.online.init_weights(cfg.seed_list, cfg.init)
        # No target network (the article): bootstrap from the online network itself.
        self.target = self.online
        if cfg.target_update_interval > 0:
            self.target = network()
            self.target.flat.data.copy_(self.online.flat.data)
        if obs_bounds is not None:
            for net in {self.online, self.target}:
                net.set_input_bounds(*obs_bounds)
        self.online.noise_generator = self.target.noise_generator = self.generator
        # Fused Adam: one kernel over the flat [K, P] parameter instead of about ten elementwise passes; on
        # small networks the optimizer step otherwise costs as much as the forward and backward together.
        self.optimizer = torch.optim.Adam(self.online.parameters(), lr=cfg.lr, eps=cfg.adam_eps, fused=True)
        self.epsilon = torch.full((k,), cfg.epsilon_start, device=self.device)
        self.updates = 0

    # ----------------------------------------------------------------------------------------------- acting ---
    @torch.inference_mode()   # no autograd bookkeeping at all: acting is on the per-step path
    def act(self, obs: torch.Tensor, epsilon: torch.Tensor | None = None) -> torch.Tensor:
        """Epsilon-greedy actions [K] for observations [K, obs] (or [K, N, obs] -> [K, N])."""
        eps = self.epsilon if epsilon is None else epsilon
        single = obs.dim() == 2
        q = self.online(obs.unsqueeze(1) if single else obs)
        greedy = q.argmax(dim=-1)
        if single:
            greedy = greedy.squeeze(1)
        if eps is None or not bool((eps > 0).any()):
            return greedy
        shape = greedy.shape
        explore = torch.rand(shape, generator=self.generator, device=self.device) < eps.view(-1, *[1] * (len(shape) - 1))
        random_actions = torch.randint(0, self.n_actions, shape, generator=self.generator, device=self.device)
        return torch.where(explore, random_actions, greedy)

    def set_learning_rate(self, env_steps: int) -> None:
        """Constant, or linear from lr to lr_end over lr_decay_steps: a function of env steps, so a resumed run
        continues it exactly. A decay lets the network settle once it plays well instead of drifting away from
        it."""
        cfg = self.cfg
        if cfg.lr_end is not None:
            frac = min(1.0, env_steps / cfg.lr_decay_steps)
            self.optimizer.param_groups[0]["lr"] = cfg.lr + frac * (cfg.lr_end - cfg.lr)

    def update_epsilon(self, env_steps: int, updated: torch.Tensor) -> None:
        """Linear: a function of env steps. Exponential (the article): decays once per replay, per seed."""
        cfg = self.cfg
        if cfg.epsilon_schedule == "linear":
            frac = min(1.0, env_steps / cfg.epsilon_decay_steps)
            self.epsilon.fill_(cfg.epsilon_start + frac * (cfg.epsilon_end - cfg.epsilon_start))
        else:
            decayed = (self.epsilon * cfg.epsilon_decay_rate).clamp(min=cfg.epsilon_end)
            self.epsilon = torch.where(updated, decayed, self.epsilon)

    # --------------------------------------------------------------------------------------------- learning ---
    def learn(self, batch: Batch, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """One replay: an optimizer step on the batch (or, with `sequential_fit`, one step per sample, in order).

        Seeds where `mask` is false are left exactly as they were. Returns per-seed statistics [K].
        """
        if not self.cfg.sequential_fit:
            return self._step(batch, mask)
        stats = [self._step(batch.sample(j), mask) for j in range(batch.action.shape[1])]
        merged = {key: torch.stack([s[key] for s in stats]).mean(0) for key in stats[0] if key != "td_error"}
        return {**merged, "td_error": torch.cat([s["td_error"] for s in stats], dim=1)}

    def _step(self, batch: Batch, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        # ALGO LOGIC: the TD target, the loss on Q(s, a), one gradient step, the target network follows.
        y = td_target(batch, self.online, self.target, cfg.double)
        q = self.online(batch.obs).gather(-1, batch.action.unsqueeze(-1)).squeeze(-1)   # [K, B]
        if cfg.loss == "huber":
            elementwise = F.huber_loss(q, y, reduction="none", delta=cfg.huber_delta)
        else:
            elementwise = F.mse_loss(q, y, reduction="none")
        per_seed = (batch.weight * elementwise).mean(dim=1)   # weight: PER's correction
        self.online.zero_grad()
        per_seed.sum().backward()                 # seeds share no parameters: each gets its own gradient
        grad = self.online.flat.grad
        if cfg.max_grad_norm > 0:                 # per seed: a global norm would couple the seeds
            grad.mul_((cfg.max_grad_norm / (grad.norm(dim=1, keepdim=True) + 1e-6)).clamp(max=1.0))
        frozen = None if bool(mask.all()) else self._snapshot()
        self.optimizer.step()
        if frozen is not None:
            self._restore(frozen, ~mask)
        self.updates += 1
        if cfg.target_update_interval > 0 and self.updates % cfg.target_update_interval == 0:
            with torch.no_grad():
                self.target.flat.lerp_(self.online.flat, (cfg.tau * mask.float()).unsqueeze(1))
        # END ALGO LOGIC
        td = (y - q).detach()
        return {"loss": per_seed.detach(), "q": q.detach().mean(dim=1), "td": td.abs().mean(dim=1), "td_error": td}

    def _tensors(self) -> list[torch.Tensor]:
        """Everything a step changes per seed: the weights and Adam's moments (absent before the first step)."""
        state = self.optimizer.state.get(self.online.flat, {})
        return [self.online.flat] + [state[k] for k in ("exp_avg", "exp_avg_sq") if k in state]

    def _snapshot(self) -> list[torch.Tensor]:
        return [t.detach().clone() for t in self._tensors()]

    def _restore(self, saved: list[torch.Tensor], keep: torch.Tensor) -> None:
        """Put back the snapshot for seeds in `keep`. Adam's step count is shared by the seeds; a seed that skipped
        steps thus sees a slightly different bias correction, which vanishes after the first few hundred steps."""
        current = self._tensors()
        saved = saved + [torch.zeros_like(t) for t in current[len(saved):]]  # moments born in this step
        with torch.no_grad():
            for now, before in zip(current, saved):
                now.copy_(torch.where(keep.unsqueeze(1), before, now))
