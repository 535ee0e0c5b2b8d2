"""Q-networks as pure functions: `init(key) -> params` and `apply(params, obs) -> Q-values`.

Parameters are a plain dict of arrays, one entry per layer (`layer0`, ..., `head`, `value`), each holding
`weight` [in, out] and `bias` [out] (and `weight_sigma`, `bias_sigma` for noisy layers): the names and layout of
the model files. A batch of seeds is the same function under `jax.vmap`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp

Params = dict[str, dict[str, jax.Array]]


@dataclass(frozen=True)
class Network:
    """An MLP from observations [..., obs] to action values [..., actions], ReLU between layers.

    With `dueling`, the last hidden layer feeds a value stream V and an advantage stream A, and
    Q = V + A - mean(A) makes them identifiable (Wang et al., 2016). With `layer_norm`, each hidden pre-activation
    is normalised over the layer (Ba et al., 2016; no learned scale or shift), which keeps TD learning from running
    away (Gallici et al., 2024). With `noisy`, every layer is a factorised-Gaussian noisy layer (Fortunato et al.,
    2018): w = mu + sigma * noise with fresh noise per call given a key, the mean weights without one.
    `in_center` and `in_scale` map observations onto [-1, 1] by the space's finite bounds (None: raw inputs); being
    static, they are constants of the compiled program.
    """

    obs_size: int
    n_actions: int
    hidden: tuple[int, ...]
    dueling: bool = False
    noisy: bool = False
    layer_norm: bool = False
    sigma0: float = 0.5
    in_center: tuple[float, ...] | None = None
    in_scale: tuple[float, ...] | None = None

    @property
    def shapes(self) -> dict[str, tuple[int, int]]:
        sizes = (self.obs_size, *self.hidden)
        shapes = {f"layer{j}": (a, b) for j, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))}
        shapes["head"] = (sizes[-1], self.n_actions)
        if self.dueling:
            shapes["value"] = (sizes[-1], 1)
        return shapes

    def init(self, key: jax.Array, kind: str = "torch") -> Params:
        """Weights for one seed: `torch` is PyTorch Linear's uniform(+-1/sqrt(fan_in)) for weights and biases,
        `glorot` Keras' default (uniform(+-sqrt(6/(fan_in+fan_out))), zero bias), as in the article."""
        params: Params = {}
        for (name, (fan_in, fan_out)), k in zip(self.shapes.items(), jax.random.split(key, len(self.shapes))):
            kw, kb = jax.random.split(k)
            if kind == "glorot":
                bound = math.sqrt(6.0 / (fan_in + fan_out))
                layer = {"weight": jax.random.uniform(kw, (fan_in, fan_out), minval=-bound, maxval=bound),
                         "bias": jnp.zeros(fan_out)}
            else:
                bound = 1.0 / math.sqrt(fan_in)
                layer = {"weight": jax.random.uniform(kw, (fan_in, fan_out), minval=-bound, maxval=bound),
                         "bias": jax.random.uniform(kb, (fan_out,), minval=-bound, maxval=bound)}
            if self.noisy:
                sigma = self.sigma0 / math.sqrt(fan_in)
                layer["weight_sigma"] = jnp.full((fan_in, fan_out), sigma)
                layer["bias_sigma"] = jnp.full((fan_out,), sigma)
            params[name] = layer
        return params

    def apply(self, params: Params, obs: jax.Array, key: jax.Array | None = None) -> jax.Array:
        """Q-values for `obs` [..., obs_size]; noisy layers draw fresh noise from `key`, or act on their means."""
        x = obs
        if self.in_scale is not None:
            x = (x - jnp.asarray(self.in_center)) * jnp.asarray(self.in_scale)
        keys = [None] * len(self.shapes) if key is None or not self.noisy else list(
            jax.random.split(key, len(self.shapes)))
        for j in range(len(self.hidden)):
            x = _linear(params[f"layer{j}"], x, keys[j])
            if self.layer_norm:
                mean = x.mean(-1, keepdims=True)
                x = (x - mean) / jnp.sqrt(((x - mean) ** 2).mean(-1, keepdims=True) + 1e-5)
            x = jax.nn.relu(x)
        q = _linear(params["head"], x, keys[len(self.hidden)])
        if self.dueling:
            q = _linear(params["value"], x, keys[-1]) + q - q.mean(-1, keepdims=True)
        return q


def _scale_noise(x: jax.Array) -> jax.Array:
    return jnp.sign(x) * jnp.sqrt(jnp.abs(x))


def _linear(layer: dict[str, jax.Array], x: jax.Array, key: jax.Array | None) -> jax.Array:
    w, b = layer["weight"], layer["bias"]
    if key is not None:
        k_in, k_out = jax.random.split(key)
        noise_in = _scale_noise(jax.random.normal(k_in, (w.shape[0], 1)))
        noise_out = _scale_noise(jax.random.normal(k_out, (w.shape[1],)))
        w = w + layer["weight_sigma"] * (noise_in * noise_out)
        b = b + layer["bias_sigma"] * noise_out
    return x @ w + b


def input_bounds(low, high) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(center, scale) mapping each coordinate with finite bounds onto [-1, 1]; unbounded ones pass through."""
    import numpy as np

    low, high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
    finite = np.isfinite(low) & np.isfinite(high) & (high > low)
    low, high = np.where(finite, low, -1.0), np.where(finite, high, 1.0)   # unbounded: no inf - inf below
    center = np.where(finite, (high + low) / 2, 0.0)
    scale = np.where(finite, 2 / (high - low), 1.0)
    return tuple(float(c) for c in center), tuple(float(s) for s in scale)
