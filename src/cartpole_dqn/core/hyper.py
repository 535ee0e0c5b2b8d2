"""The numeric hyperparameters as data: arrays in each agent's state, not constants of the compiled program.

A setting that shapes the program (network widths, buffer size, n-step, switches, E, T) is static: changing it
compiles another program. The numbers below only flow through arithmetic, so they travel in the state instead:
a run that differs from an earlier one only in them finds its program in the compile cache, and seeds side by
side may each have their own (`tune --batch` trains several trials as one program on the seed axis, as rejax runs
its searches). `config.HYPER` names the same fields; tests lower the program for two settings of them and check
that the compiled text is the same.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from ..config import Config


class Hyper(NamedTuple):
    """One agent's numeric hyperparameters (float32 scalars; [K] on the seed axis)."""

    lr: jax.Array
    lr_end: jax.Array                 # equal to lr when the learning rate is constant
    lr_decay_steps: jax.Array
    gamma: jax.Array
    tau: jax.Array
    huber_delta: jax.Array
    reward_scale: jax.Array
    epsilon_start: jax.Array
    epsilon_end: jax.Array
    epsilon_decay_steps: jax.Array
    epsilon_decay_rate: jax.Array
    priority_alpha: jax.Array
    priority_beta: jax.Array
    priority_eps: jax.Array
    q_lambda: jax.Array


def of(cfg: Config) -> Hyper:
    """The hyperparameters `cfg` sets, as float32 scalars."""
    values = {name: getattr(cfg, name) for name in Hyper._fields}
    if values["lr_end"] is None:
        values["lr_end"] = cfg.lr
    return Hyper(**{name: jnp.float32(v) for name, v in values.items()})


def stack(cfgs: list[Config]) -> Hyper:
    """[K] hyperparameters, one config per seed."""
    return jax.tree.map(lambda *v: jnp.stack(v), *[of(c) for c in cfgs])


def linear(start: jax.Array, end: jax.Array, steps: jax.Array, t: jax.Array) -> jax.Array:
    """From `start` at t = 0 to `end` at t = `steps`, then `end` (optax's linear_schedule, with arrays)."""
    frac = 1.0 - jnp.clip(t, 0, steps) / steps
    return (start - end) * frac + end
