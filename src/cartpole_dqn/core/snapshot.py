"""A training state (any pytree of arrays) as named arrays and back: what a checkpoint stores.

Names are the pytree's key paths (`agent.params['layer0']['weight']`), so a checkpoint file is readable, and
restoring checks every array against the freshly initialised state it replaces: a file written for another
configuration is refused naming the first array that differs, never silently reshaped. Nothing is pickled.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np


def _name(path: tuple) -> str:
    return jax.tree_util.keystr(path).lstrip(".")


def to_arrays(tree: Any) -> dict[str, np.ndarray]:
    """Every leaf of `tree` as a host array, by key path."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {_name(path): np.asarray(leaf) for path, leaf in leaves}


def from_arrays(template: Any, arrays: dict[str, np.ndarray]) -> Any:
    """`template` with every leaf replaced by the array of the same name; ValueError names a missing array or one
    whose shape or dtype differs from the template's."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    out = []
    for path, leaf in leaves:
        name = _name(path)
        if name not in arrays:
            raise ValueError(f"the checkpoint lacks {name!r}: it was written by another configuration or version")
        a = arrays[name]
        if a.shape != np.shape(leaf) or a.dtype != np.asarray(leaf).dtype:
            raise ValueError(f"checkpoint array {name!r} is {a.dtype} {a.shape}, this run needs "
                             f"{np.asarray(leaf).dtype} {np.shape(leaf)}: it was written by another configuration")
        out.append(jax.numpy.asarray(a))
    return jax.tree_util.tree_unflatten(treedef, out)
