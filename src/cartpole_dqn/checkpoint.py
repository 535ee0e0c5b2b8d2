"""Saving and loading: weights in safetensors, metadata in JSON, every file written atomically (files.py).

Loading never unpickles, so a checkpoint from anywhere cannot run code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as st_np_load
from safetensors.numpy import save as st_np_save

from .config import Config, ConfigError, from_dict, to_dict
from .core import loop, snapshot
from .core.networks import Network, Params
from .envs import env_sizes
from .errors import CheckpointError  # re-exported: `from cartpole_dqn.checkpoint import CheckpointError` works
from .files import atomic_write, read_json, write_json
from .rundir import CHECKPOINT, RunDir
from .version import __version__

if TYPE_CHECKING:
    from .driver import Training

# Model files: 3 carries a checksum; 2 (without one) and 1 (the PyTorch trainer's) still load, as they did.
MODEL_FORMAT_VERSION = 3
# Checkpoint folders: 4 checksums meta.json itself; 3 (whose checksum covered only the tensor file) still resumes,
# its state is the same; 2 (without the numeric hyperparameters and next actions) and 1 (the PyTorch trainer's)
# are refused.
CHECKPOINT_FORMAT_VERSION = 4
CHECKSUM = "checksum"


def checksum(meta: dict[str, Any], tensors: dict[str, np.ndarray]) -> str:
    """The SHA-256 that a model file or a checkpoint's meta.json carries under CHECKSUM: of `meta` (all but that
    entry) as canonical JSON, then of each tensor's name, dtype, shape and bytes in name order. It covers the
    metadata as well as the weights, so neither a damaged byte nor an edited setting passes unnoticed."""
    h = hashlib.sha256(json.dumps({key: value for key, value in meta.items() if key != CHECKSUM},
                                  sort_keys=True, separators=(",", ":")).encode())
    for name in sorted(tensors):
        t = np.ascontiguousarray(tensors[name])
        h.update(json.dumps([name, t.dtype.str, list(t.shape)]).encode())
        h.update(t.tobytes())
    return h.hexdigest()


def save_model(path: str | Path, net: Network, params: Params, meta: dict[str, Any]) -> None:
    """One seed's weights (host or device arrays), by layer name, plus the metadata to rebuild the network, in one
    safetensors file; `meta` (say the environment and the seed) is stored beside the architecture."""
    tensors = {f"{layer}.{kind}": np.ascontiguousarray(value, dtype=np.float32)
               for layer, arrays in params.items() for kind, value in arrays.items()}
    if net.in_scale is not None:
        tensors["input.center"] = np.asarray(net.in_center, dtype=np.float32)
        tensors["input.scale"] = np.asarray(net.in_scale, dtype=np.float32)
    arch = {"obs_size": net.obs_size, "n_actions": net.n_actions, "hidden": list(net.hidden), "dueling": net.dueling,
            "noisy": net.noisy, "layer_norm": net.layer_norm}
    meta = {**meta, **arch, "format_version": MODEL_FORMAT_VERSION}
    header = {key: json.dumps(value) for key, value in {**meta, CHECKSUM: checksum(meta, tensors)}.items()}
    atomic_write(path, st_np_save(tensors, metadata=header))


def network_for(meta: dict[str, Any]) -> Network:
    """The architecture a model file's metadata describes, without input scaling (that lives in the tensors)."""
    return Network(int(meta["obs_size"]), int(meta["n_actions"]), tuple(int(h) for h in meta["hidden"]),
                   dueling=bool(meta["dueling"]), noisy=bool(meta.get("noisy", False)),
                   layer_norm=bool(meta.get("layer_norm", False)))


def load_model(path: str | Path) -> tuple[Network, Params, dict[str, Any]]:
    """One seed's network, weights and metadata from a model file of format 3, 2 or 1 (the PyTorch trainer's);
    CheckpointError if it is missing, cut short, damaged, foreign or of another format version."""
    path = Path(path)
    raw = read_model_file(path)
    try:
        meta = {key: json.loads(value) for key, value in _header_metadata(raw).items()}
        tensors = st_np_load(raw)
    except (SafetensorError, ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{str(path)!r} is not a valid safetensors model (truncated or corrupted?): {e}") \
            from None
    version = meta.get("format_version")
    if version not in (1, 2, MODEL_FORMAT_VERSION):
        raise CheckpointError(f"{str(path)!r} has model format version {version}; this cartpole-dqn reads version "
                              f"{MODEL_FORMAT_VERSION} (and 2, and 1, the PyTorch trainer's)")
    # Formats 1 and 2 predate the checksum; a file that carries one is held to it whatever version it claims.
    if (version == MODEL_FORMAT_VERSION or CHECKSUM in meta) and meta.get(CHECKSUM) != checksum(meta, tensors):
        raise CheckpointError(f"{str(path)!r} is damaged: its checksum does not match its weights and metadata "
                              "(corrupted on disk, or edited?)")
    try:
        net = network_for(meta)
        if "input.scale" in tensors:
            net = dataclasses.replace(net, in_center=tuple(float(c) for c in tensors.pop("input.center")),
                                      in_scale=tuple(float(s) for s in tensors.pop("input.scale")))
        kinds = ("weight", "bias", "weight_sigma", "bias_sigma") if net.noisy else ("weight", "bias")
        expected = {f"{layer}.{kind}" for layer in net.shapes for kind in kinds}
        if set(tensors) != expected:
            raise ValueError(f"layers {sorted(tensors)} do not match the architecture {sorted(expected)}")
        params: Params = {}
        for layer, (fan_in, fan_out) in net.shapes.items():
            params[layer] = {}
            for kind in kinds:
                name, t = f"{layer}.{kind}", tensors[f"{layer}.{kind}"]
                shape = (fan_in, fan_out) if kind.startswith("weight") else (fan_out,)
                # Format 1 kept each bias [1, out], broadcastable over the PyTorch trainer's batch axis.
                stored = (1, fan_out) if version == 1 and kind.startswith("bias") else shape
                if t.shape != stored:
                    raise ValueError(f"{name} is {list(t.shape)}, the architecture needs {list(stored)}")
                params[layer][kind] = jnp.asarray(t.reshape(shape), dtype=jnp.float32)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{str(path)!r} does not describe a cartpole-dqn network: {e}") from None
    return net, params, meta


def read_model_file(path: Path, what: str = "a model file") -> bytes:
    """The bytes of the model file `path`; CheckpointError, naming it, if it is missing or a folder."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise CheckpointError(f"{str(path)!r} is a folder, not {what}") from None


def _header_metadata(raw: bytes) -> dict[str, str]:
    """The `__metadata__` of a safetensors header (its first 8 bytes give the header's length)."""
    if len(raw) < 8:
        raise ValueError("file shorter than a safetensors header")
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    return header.get("__metadata__", {}) or {}


# ------------------------------------------------------------------------------------------- full checkpoints ---
# A checkpoint is a folder holding `meta.json` (counters, random states of the environments, the configuration)
# and one `state-<n>.safetensors` (every tensor: weights, optimizer moments, replay memory, generator states,
# scores). meta.json names its tensor file and that file's SHA-256 (`sha256`), carries a checksum of its own
# content (CHECKSUM), and it is written last: replacing meta.json is the one moment a new checkpoint takes effect,
# so a crash before it leaves the previous checkpoint whole, and a tensor file or a meta.json that was cut short,
# damaged or edited is refused.

CHECKPOINT_META = "meta.json"
TENSOR_FILE = re.compile(r"state-(\d+)\.safetensors")      # a bare name: never a path out of the folder


def save_checkpoint(folder: str | Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write a checkpoint into `folder` (created if needed) without ever leaving it unreadable."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    previous = {p.name for p in folder.glob("state-*.safetensors")}
    n = 1 + max((int(m[1]) for m in map(TENSOR_FILE.fullmatch, previous) if m), default=0)
    name = f"state-{n:06d}.safetensors"
    raw = st_np_save({key: np.ascontiguousarray(a) for key, a in arrays.items()})
    atomic_write(folder / name, raw)
    meta = {**meta, "format_version": CHECKPOINT_FORMAT_VERSION, "tensors": name,
            "sha256": hashlib.sha256(raw).hexdigest()}
    write_json(folder / CHECKPOINT_META, {**meta, CHECKSUM: checksum(meta, {})})
    for old in previous - {name}:  # only now is the old tensor file no longer needed
        (folder / old).unlink(missing_ok=True)


def load_checkpoint(folder: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(arrays, metadata) of the checkpoint in `folder`; CheckpointError if it is missing, cut short, damaged,
    edited or written by another version of the format. Nothing is unpickled."""
    folder = Path(folder)
    meta_path = folder / CHECKPOINT_META
    if not meta_path.exists():
        raise CheckpointError(f"{str(folder)!r} holds no checkpoint ({CHECKPOINT_META} is missing)")
    meta = read_json(meta_path)
    if not isinstance(meta, dict):
        raise CheckpointError(f"{str(meta_path)!r} is not a checkpoint description (truncated or corrupted?)")
    version = meta.get("format_version")
    if version not in (3, CHECKPOINT_FORMAT_VERSION):
        old = {1: " (the PyTorch trainer's; retrain, or resume it with cartpole-dqn 0.1)",
               2: " (cartpole-dqn before hyperparameters became data; retrain, or resume it with the version that "
                  "wrote it)"}.get(version, "")
        raise CheckpointError(f"{str(folder)!r} is a checkpoint of format version {version}{old}; this "
                              f"cartpole-dqn reads version {CHECKPOINT_FORMAT_VERSION} (and 3)")
    # Format 3 predates meta.json's own checksum; a meta.json that carries one is held to it whatever it claims.
    if (version == CHECKPOINT_FORMAT_VERSION or CHECKSUM in meta) and meta.get(CHECKSUM) != checksum(meta, {}):
        raise CheckpointError(f"the checkpoint in {str(folder)!r} is damaged or was edited: {CHECKPOINT_META} "
                              "does not match its checksum")
    name = meta.get("tensors")
    if not isinstance(name, str) or not TENSOR_FILE.fullmatch(name):
        raise CheckpointError(f"{str(meta_path)!r} names no tensor file of a checkpoint ({name!r}; corrupted?)")
    path = folder / name
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{str(path)!r} does not exist: the checkpoint is incomplete") from None
    except OSError as e:
        raise CheckpointError(f"{str(path)!r} cannot be read: {e.strerror or e}") from None
    if hashlib.sha256(raw).hexdigest() != meta.get("sha256"):
        raise CheckpointError(f"{str(path)!r} does not match its checksum in {CHECKPOINT_META} "
                              "(truncated or corrupted?)")
    try:
        arrays = st_np_load(raw)
    except (SafetensorError, ValueError) as e:  # pragma: no cover - the checksum catches damage first
        raise CheckpointError(f"{str(path)!r} is not a valid safetensors file: {e}") from None
    return arrays, meta


# ------------------------------------------------------------------------------------------ run checkpoints ---
# What a training run's checkpoint holds. Tensors: `state.<path>` (the seeds' state pytree by key path: networks,
# optimizer moments, replay memory or rollout, environments, keys, hyperparameters, next actions) and
# `scores.<seed index>.<name>` (each seed's score log). meta.json: the configuration, the environment's sizes, the
# clock (`steps`), wall and compile seconds, when each seed stopped and solved, and a host task's gymnasium
# environment states.

def save_run(run: Training) -> None:
    """Write everything `run` needs to continue into OUT/checkpoint (atomically)."""
    arrays = {f"state.{name}": a for name, a in snapshot.to_arrays(run.states).items()}
    for i, log in enumerate(run.logs):
        for name, a in log.arrays().items():
            arrays[f"scores.{i}.{name}"] = a
    cfg, net, envs = run.cfg, run.program.net, run.program.envs
    learning = cfg.buffer_size >= cfg.learning_starts
    meta = {"cartpole_dqn_version": __version__, "config": to_dict(cfg), "env": cfg.env,
            "obs_size": net.obs_size, "n_actions": net.n_actions, "seeds": cfg.seed_list, "steps": run.t,
            "learn_steps": max(0, run.t - cfg.learning_starts + 1) if learning else 0,
            "updates": np.asarray(run.states.agent.updates).tolist(), "wall": run.seconds(),
            "compile_seconds": run.compile_seconds, "stopped_wall": run.stopped_wall.tolist(),
            "solved_at": [log.solved_at for log in run.logs],
            "eval_solved_at": [log.eval_solved_at for log in run.logs],
            "envs": None if envs is None else [env_state(e) for e in envs.envs], "hypers": run.hypers}
    save_checkpoint(run.out / CHECKPOINT, arrays, meta)


def load_run(out: Path) -> tuple[Config, dict[str, np.ndarray], dict[str, Any]]:
    """(configuration, arrays, metadata) of the run checkpoint in OUT/checkpoint; CheckpointError if it is not
    usable, or is another run's (its environment or network contradicts OUT/config.json)."""
    arrays, meta = load_checkpoint(out / CHECKPOINT)
    try:
        cfg = from_dict(meta["config"])
    except (ConfigError, KeyError, TypeError) as e:
        raise CheckpointError(f"the checkpoint in {str(out)!r} holds no usable configuration: {e}") from None
    RunDir(out).check_own(f"the checkpoint in {str(out)!r}", to_dict(cfg))
    sizes = env_sizes(cfg.env)
    if (meta.get("obs_size"), meta.get("n_actions")) != sizes:
        raise CheckpointError(f"the checkpoint in {str(out)!r} was made for {meta.get('obs_size')} observations "
                              f"and {meta.get('n_actions')} actions; {cfg.env} has {sizes[0]} and {sizes[1]}")
    return cfg, arrays, meta


def restore_run(run: Training, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> bool:
    """Put every part of `run` back as the checkpoint recorded it; False if a host task's environments could not
    be restored exactly (the caller restarts their episodes). ValueError, KeyError... if the checkpoint does not
    fit the run."""
    from .scores import ScoreLog

    k = run.cfg.seeds
    if len(meta["seeds"]) != k:
        raise ValueError(f"it holds {len(meta['seeds'])} seeds, the configuration {k}")
    states = {name[6:]: a for name, a in arrays.items() if name.startswith("state.")}
    for name in loop.BUDGETS:      # the configuration's (resume may raise them), whatever the checkpoint says
        states[name] = np.asarray(getattr(run.states, name))
    run.states = jax.device_put(snapshot.from_arrays(run.states, states), jax.tree.leaves(run.states)[0].device)
    run.t, run.wall_before = int(meta["steps"]), float(meta["wall"])
    run.hypers = list(meta.get("hypers") or [])
    run.compile_seconds = float(meta.get("compile_seconds", 0.0))
    run.stopped_wall = np.array(meta["stopped_wall"], dtype=float)
    run.logs = [ScoreLog.from_arrays(d, run.rule, {key: arrays[f"scores.{i}.{key}"] for key in ScoreLog.ARRAYS},
                                     meta["solved_at"][i], meta["eval_solved_at"][i])
                for i, d in enumerate(run.dirs)]
    envs = run.program.envs
    if envs is None:
        return True
    if not all(env_state_exact(e) and "state" in snap for e, snap in zip(envs.envs, meta["envs"])):
        return False
    for env, snap in zip(envs.envs, meta["envs"]):
        set_env_state(env, snap)
    return True


# ----------------------------------------------------------------------------------- environment states ---
# Exact resume needs each environment exactly where it was. gymnasium has no general way to save an environment,
# but the classic-control tasks keep all of theirs in a few attributes: the physical `state` array, CartPole's
# `steps_beyond_terminated`, the TimeLimit wrapper's step count and the numpy generator that draws starting
# states. For other environments only the generator and step count are kept; `env_state_exact` says which case
# applies, and `train.resume` then restarts the unfinished episodes instead (see its docstring).

def env_state_exact(env: Any) -> bool:
    """Whether `env_state` captures everything `env` (one gymnasium env) needs to continue exactly."""
    u = env.unwrapped
    return (type(u).__module__.startswith("gymnasium.envs.classic_control")
            and isinstance(getattr(u, "state", None), np.ndarray))


def env_state(env: Any) -> dict[str, Any]:
    """A JSON-able snapshot of one environment: random generator, step count and (classic control) physics."""
    u = env.unwrapped
    snap: dict[str, Any] = {"np_random": _jsonable(u.np_random.bit_generator.state),
                            "elapsed_steps": _time_limit(env)._elapsed_steps if _time_limit(env) else None}
    if env_state_exact(env):
        snap["state"] = [float(x) for x in u.state]     # float64 repr round-trips exactly through JSON
        snap["steps_beyond_terminated"] = getattr(u, "steps_beyond_terminated", None)
    return snap


def set_env_state(env: Any, snap: dict[str, Any]) -> None:
    """Put back what `env_state` captured (the environment must have been reset once)."""
    u = env.unwrapped
    try:
        u.np_random.bit_generator.state = snap["np_random"]
        limit = _time_limit(env)
        if limit is not None and snap.get("elapsed_steps") is not None:
            limit._elapsed_steps = int(snap["elapsed_steps"])
        if "state" in snap:
            u.state = np.array(snap["state"], dtype=np.float64)
            if hasattr(u, "steps_beyond_terminated"):
                u.steps_beyond_terminated = snap["steps_beyond_terminated"]
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"the checkpoint's environment state is not usable: {e}") from None


def _time_limit(env: Any) -> Any:
    while env is not None:
        if isinstance(env, gym.wrappers.TimeLimit):
            return env
        env = getattr(env, "env", None)
    return None


def _jsonable(obj: Any) -> Any:
    """numpy's generator state holds Python ints (JSON-safe, arbitrary size); nested dicts pass through."""
    if isinstance(obj, dict):
        return {key: _jsonable(value) for key, value in obj.items()}
    if isinstance(obj, np.integer):
        return int(obj)
    return obj
