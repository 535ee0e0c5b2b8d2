"""Q-networks with a leading seed axis: K independent MLPs evaluated as one batched matrix product per layer.

All of a network's weights live in one parameter `flat` of shape [K, P] (P numbers per seed), and so do their
gradients (`flat.grad`). Each layer's weight [K, in, out] and bias [K, 1, out] are leaf tensors that share that
storage, and their `.grad` shares the storage of `flat.grad`, so autograd works on ordinary layers while the
per-seed operations around the update (gradient norm, optimizer step, target sync, masking) are single operations
on `flat`. On small networks those operations, not the arithmetic, are what costs.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn

# The layer gradients are strided views into flat.grad by design; autograd accumulates into them in place.
warnings.filterwarnings("ignore", message="grad and param do not obey the gradient layout contract")


class QNetwork(nn.Module):
    """An MLP from observations [K, B, obs] to action values [K, B, actions], ReLU between layers.

    With `dueling`, the last hidden layer feeds a value stream V [K, B, 1] and an advantage stream A; subtracting
    the mean advantage makes V and A identifiable (Wang et al., 2016).
    """

    def __init__(self, seeds: int, obs_size: int, n_actions: int, hidden: tuple[int, ...], dueling: bool = False,
                 device: torch.device | str = "cpu"):
        super().__init__()
        sizes = (obs_size, *hidden)
        shapes = [(a, b) for a, b in zip(sizes[:-1], sizes[1:])] + [(sizes[-1], n_actions)]
        if dueling:
            shapes.append((sizes[-1], 1))
        self.shapes = shapes
        self.dueling = dueling
        self.n_body = len(hidden)
        self.flat = nn.Parameter(torch.zeros(seeds, sum(i * o + o for i, o in shapes), device=device))
        self.flat.grad = torch.zeros_like(self.flat)
        # Leaves for autograd, sharing flat's storage (not registered: `flat` is the one parameter).
        self._layers = [(w.requires_grad_(), b.requires_grad_()) for w, b in self.layers(self.flat.data)]
        for (w, b), (gw, gb) in zip(self._layers, self.layers(self.flat.grad)):
            w.grad, b.grad = gw, gb

    def layers(self, flat: torch.Tensor | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(weight [K, in, out], bias [K, 1, out]) of each layer, as views of `flat` (default: the weights)."""
        if flat is None:
            return self._layers
        views, at = [], 0
        for i, o in self.shapes:
            w = flat[:, at:at + i * o].view(-1, i, o)
            b = flat[:, at + i * o:at + i * o + o].view(-1, 1, o)
            views.append((w, b))
            at += i * o + o
        return views

    def zero_grad(self, set_to_none: bool = False) -> None:
        """Zero the shared gradient buffer in place (setting it to None would cut the layers' views loose)."""
        self.flat.grad.zero_()

    def named_tensors(self, flat: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The layers by name (`layer0.weight`, ..., `head.bias`, `value.weight`), for saving readable files."""
        names = [f"layer{j}" for j in range(self.n_body)] + ["head"] + (["value"] if self.dueling else [])
        out = {}
        for name, (w, b) in zip(names, self.layers(flat)):
            out[f"{name}.weight"], out[f"{name}.bias"] = w, b
        return out

    def init_weights(self, seed_list: list[int], init: str) -> None:
        """Seed k's weights come from a generator seeded with seed_list[k] alone, so they do not depend on K."""
        with torch.no_grad():
            for k, seed in enumerate(seed_list):  # init only, not the hot path
                g = torch.Generator().manual_seed(seed)
                for w, b in self.layers(self.flat.data):
                    fan_in, fan_out = w.shape[1], w.shape[2]
                    if init == "glorot":  # Keras' default Dense init, as in the article
                        bound = math.sqrt(6.0 / (fan_in + fan_out))
                        w[k].copy_(torch.empty(fan_in, fan_out).uniform_(-bound, bound, generator=g))
                        b[k].zero_()
                    else:  # torch.nn.Linear's default
                        bound = 1.0 / math.sqrt(fan_in)
                        w[k].copy_(torch.empty(fan_in, fan_out).uniform_(-bound, bound, generator=g))
                        b[k].copy_(torch.empty(1, fan_out).uniform_(-bound, bound, generator=g))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        layers = self.layers()
        x = obs
        for w, b in layers[:self.n_body]:
            x = torch.relu(torch.baddbmm(b, x, w))
        w, b = layers[self.n_body]
        q = torch.baddbmm(b, x, w)
        if self.dueling:
            w, b = layers[self.n_body + 1]
            q = torch.baddbmm(b, x, w) + q - q.mean(dim=-1, keepdim=True)
        return q
