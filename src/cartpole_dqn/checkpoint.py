"""Saving and loading: weights in safetensors, metadata in JSON, every file written atomically.

Loading never unpickles, so a checkpoint from anywhere cannot run code. A write goes to a temporary file in the
same folder, is flushed to disk and then renamed over the target, so a crash at any moment leaves either the old
file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .networks import QNetwork

FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A model or checkpoint that cannot be loaded; the CLI prints it as one line with exit code 2."""


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write `data` to `path` so that readers see the old content or the new, never a mix."""
    path = Path(path)
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{str(path)!r} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{str(path)!r} is not valid JSON (truncated or corrupted?): {e}") from None


def save_model(path: str | Path, net: QNetwork, k: int, meta: dict[str, Any]) -> None:
    """Seed k's weights, by layer name, plus the metadata to rebuild the network, in one safetensors file."""
    tensors = {name: t.detach()[k].contiguous().cpu() for name, t in net.named_tensors(net.flat.data).items()}
    arch = {"obs_size": net.shapes[0][0], "n_actions": net.shapes[net.n_body][1],
            "hidden": [o for _, o in net.shapes[:net.n_body]], "dueling": net.dueling}
    header = {key: json.dumps(value) for key, value in {**meta, **arch, "format_version": FORMAT_VERSION}.items()}
    atomic_write(path, st_save(tensors, metadata=header))


def load_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[QNetwork, dict[str, Any]]:
    """A one-seed QNetwork and its metadata from a model file; CheckpointError if it is missing, cut short,
    foreign or of another format version."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise CheckpointError(f"{str(path)!r} is a folder, not a model file") from None
    try:
        meta = {key: json.loads(value) for key, value in _header_metadata(raw).items()}
        tensors = st_load(raw)
    except (SafetensorError, ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{str(path)!r} is not a valid safetensors model (truncated or corrupted?): {e}") \
            from None
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{str(path)!r} has model format version {version}; this cartpole-dqn reads version "
                              f"{FORMAT_VERSION}")
    try:
        net = QNetwork(1, int(meta["obs_size"]), int(meta["n_actions"]), tuple(meta["hidden"]),
                       bool(meta["dueling"]), device)
        views = net.named_tensors(net.flat.data)
        if set(views) != set(tensors):
            raise ValueError(f"layers {sorted(tensors)} do not match the architecture {sorted(views)}")
        for name, view in views.items():
            view[0].copy_(tensors[name])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{str(path)!r} does not describe a cartpole-dqn network: {e}") from None
    return net, meta


def _header_metadata(raw: bytes) -> dict[str, str]:
    """The `__metadata__` of a safetensors header (its first 8 bytes give the header's length)."""
    if len(raw) < 8:
        raise ValueError("file shorter than a safetensors header")
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    return header.get("__metadata__", {}) or {}
