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

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

# The layer gradients are strided views into flat.grad by design; autograd accumulates into them in place.
warnings.filterwarnings("ignore", message="grad and param do not obey the gradient layout contract")


def _scale_noise(x: torch.Tensor) -> torch.Tensor:
    return x.sign() * x.abs().sqrt()


class QNetwork(nn.Module):
    """An MLP from observations [K, B, obs] to action values [K, B, actions], ReLU between layers.

    With `dueling`, the last hidden layer feeds a value stream V [K, B, 1] and an advantage stream A; subtracting
    the mean advantage makes V and A identifiable (Wang et al., 2016).
    With `layer_norm`, each hidden layer's pre-activations are normalised to zero mean and unit variance over the
    layer (Ba et al., 2016; no learned scale or shift, so the weights are the same tensors as without it), which
    keeps the features bounded and TD learning from running away (Gallici et al., 2024).
    With `noisy`, every layer is a factorised-Gaussian noisy layer (Fortunato et al., 2018): w = mu + sigma * noise,
    fresh noise on every forward pass in training mode, the mean weights in `eval()` mode, so exploration is
    learned instead of scheduled.
    """

    def __init__(self, seeds: int, obs_size: int, n_actions: int, hidden: tuple[int, ...], dueling: bool = False,
                 device: torch.device | str = "cpu", noisy: bool = False, sigma0: float = 0.5,
                 layer_norm: bool = False):
        super().__init__()
        sizes = (obs_size, *hidden)
        shapes = [(a, b) for a, b in zip(sizes[:-1], sizes[1:])] + [(sizes[-1], n_actions)]
        if dueling:
            shapes.append((sizes[-1], 1))
        self.shapes = shapes
        self.dueling, self.noisy, self.sigma0, self.layer_norm = dueling, noisy, sigma0, layer_norm
        self.n_body = len(hidden)
        self.noise_generator: torch.Generator | None = None   # the agent's, so noise is reproducible
        # Optional input scaling to [-1, 1] from the observation space's bounds (see `set_input_bounds`).
        self.register_buffer("in_center", None)
        self.register_buffer("in_scale", None)
        copies = 2 if noisy else 1                             # mean and sigma
        self.flat = nn.Parameter(torch.zeros(seeds, copies * sum(i * o + o for i, o in shapes), device=device))
        self.flat.grad = torch.zeros_like(self.flat)
        # Leaves for autograd, sharing flat's storage (not registered: `flat` is the one parameter).
        self._layers = [tuple(t.requires_grad_() for t in layer) for layer in self.layers(self.flat.data)]
        for layer, grads in zip(self._layers, self.layers(self.flat.grad)):
            for t, g in zip(layer, grads):
                t.grad = g

    def layers(self, flat: torch.Tensor | None = None) -> list[tuple[torch.Tensor, ...]]:
        """Per layer (weight [K, in, out], bias [K, 1, out]) and, if noisy, (weight sigma, bias sigma), as views
        of `flat` (default: the weights)."""
        if flat is None:
            return self._layers
        views, at = [], 0
        for i, o in self.shapes:
            layer = []
            for _ in range(2 if self.noisy else 1):
                layer += [flat[:, at:at + i * o].view(-1, i, o), flat[:, at + i * o:at + i * o + o].view(-1, 1, o)]
                at += i * o + o
            views.append(tuple(layer))
        return views

    def named_tensors(self, flat: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The layers by name (`layer0.weight`, ..., `head.bias`, `value.weight`), for saving readable files."""
        names = [f"layer{j}" for j in range(self.n_body)] + ["head"] + (["value"] if self.dueling else [])
        kinds = ("weight", "bias", "weight_sigma", "bias_sigma")
        return {f"{name}.{kind}": t for name, layer in zip(names, self.layers(flat)) for kind, t in zip(kinds, layer)}

    def set_input_bounds(self, low: np.ndarray | torch.Tensor, high: np.ndarray | torch.Tensor) -> None:
        """Map each observation coordinate with finite bounds onto [-1, 1]; unbounded ones pass through. Stateless
        and stored with the model, so training, evaluation and recording all see the same inputs."""
        low = torch.as_tensor(np.asarray(low, dtype=np.float64))
        high = torch.as_tensor(np.asarray(high, dtype=np.float64))
        finite = torch.isfinite(low) & torch.isfinite(high) & (high > low)
        center = torch.where(finite, (high + low) / 2, torch.zeros_like(low))
        scale = torch.where(finite, 2 / (high - low), torch.ones_like(low))
        self.in_center = center.float().to(self.flat.device)
        self.in_scale = scale.float().to(self.flat.device)

    def zero_grad(self, set_to_none: bool = False) -> None:
        """Zero the shared gradient buffer in place (setting it to None would cut the layers' views loose)."""
        self.flat.grad.zero_()

    def init_weights(self, seed_list: list[int], init: str) -> None:
        """Seed k's weights come from a generator seeded with seed_list[k] alone, so they do not depend on K."""
        with torch.no_grad():
            for k, seed in enumerate(seed_list):  # init only, not the hot path
                g = torch.Generator().manual_seed(seed)
                for layer in self.layers(self.flat.data):
                    w, b = layer[0], layer[1]
                    fan_in, fan_out = w.shape[1], w.shape[2]
                    if init == "glorot":  # Keras' default Dense init, as in the article
                        bound = math.sqrt(6.0 / (fan_in + fan_out))
                        w[k].copy_(torch.empty(fan_in, fan_out).uniform_(-bound, bound, generator=g))
                        b[k].zero_()
                    else:  # torch.nn.Linear's default
                        bound = 1.0 / math.sqrt(fan_in)
                        w[k].copy_(torch.empty(fan_in, fan_out).uniform_(-bound, bound, generator=g))
                        b[k].copy_(torch.empty(1, fan_out).uniform_(-bound, bound, generator=g))
                    if self.noisy:
                        layer[2][k].fill_(self.sigma0 / math.sqrt(fan_in))
                        layer[3][k].fill_(self.sigma0 / math.sqrt(fan_in))

    def _linear(self, x: torch.Tensor, layer: tuple[torch.Tensor, ...]) -> torch.Tensor:
        w, b = layer[0], layer[1]
        if self.noisy and self.training:
            k, i, o = w.shape
            noise_in = _scale_noise(torch.randn(k, i, 1, generator=self.noise_generator, device=w.device))
            noise_out = _scale_noise(torch.randn(k, 1, o, generator=self.noise_generator, device=w.device))
            w = w + layer[2] * (noise_in * noise_out)
            b = b + layer[3] * noise_out
        return torch.baddbmm(b, x, w)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        layers = self.layers()
        x = obs if self.in_scale is None else (obs - self.in_center) * self.in_scale
        for layer in layers[:self.n_body]:
            x = self._linear(x, layer)
            if self.layer_norm:
                x = F.layer_norm(x, x.shape[-1:])
            x = torch.relu(x)
        q = self._linear(x, layers[self.n_body])
        if self.dueling:
            q = self._linear(x, layers[self.n_body + 1]) + q - q.mean(dim=-1, keepdim=True)
        return q
