"""The greedy Q-network as an ONNX file, and an ONNX file as a policy: take a trained agent anywhere.

`export_onnx` converts one seed's network with jax2onnx (which translates the JAX function itself, so the file
computes what `Network.apply` computes): input `obs` [batch, obs_size] float32, output `q_values` [batch, actions];
the observation scaling (`in_center`, `in_scale`) is inside the graph, noisy layers keep their mean weights (the
network as it is judged), and the model's metadata_props carry what a user needs to act: `env_id`,
`action_meanings` (JSON, gymnasium's names where the environment gives them, else the action indices), `input_size`,
`n_actions`, `seed`. `load_onnx` reads such a file back as an `evaluation.Policy` whose actions come from
onnxruntime, so `evaluate`, `record` and `play` judge it on the same episodes as the run it came from.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from .checkpoint import read_model_file
from .errors import CheckpointError, ConfigError, require
from .evaluation import ONNX_SUFFIX, Act, Policy, load
from .files import atomic_write, check_output
from .version import __version__

INPUT, OUTPUT = "obs", "q_values"


def export_onnx(run_or_model: str | Path, out: str | Path, seed: int | None = None) -> Path:
    """Write the greedy Q-network of a run folder or model file to `out` (a `.onnx` file, written atomically).

    A K-seed run folder holds K networks: `seed` picks one (or give its `seed-<n>` folder); a one-seed folder or a
    model file needs none (a `seed` that is not its own is refused). ConfigError or CheckpointError, before any
    file is written, for a bad `out`, a missing `onnx` extra, or a run that cannot be loaded.
    """
    out = Path(out)
    if out.suffix.lower() != ONNX_SUFFIX:
        raise ConfigError(f"--out {str(out)!r} must end in {ONNX_SUFFIX}")
    check_output(out, "--out")
    require("jax2onnx", "onnx", "export")
    if Path(run_or_model).suffix.lower() == ONNX_SUFFIX:
        raise ConfigError(f"{str(run_or_model)!r} is an ONNX file already: export a run folder or a model file")
    policy = load(run_or_model)
    i = _seed_index(policy, run_or_model, seed)
    net, params = policy.net, jax.tree.map(lambda x: np.asarray(x[i]), policy.params)

    import onnx
    from jax2onnx import to_onnx

    model = to_onnx(lambda obs: net.apply(params, obs), [("batch", net.obs_size)], model_name="cartpole_dqn",
                    input_names=[INPUT], output_names=[OUTPUT])
    model.doc_string = f"Q-values of a cartpole-dqn agent for {policy.env}; act with the argmax over {OUTPUT}."
    onnx.helper.set_model_props(model, {
        "env_id": policy.env, "action_meanings": json.dumps(action_meanings(policy.env)),
        "input_size": str(net.obs_size), "n_actions": str(net.n_actions), "seed": str(policy.seeds[i]),
        "cartpole_dqn_version": __version__})
    atomic_write(out, model.SerializeToString())
    return out


def _seed_index(policy: Policy, source: str | Path, seed: int | None) -> int:
    """Which of the loaded seeds to export: the only one, or `seed`; a one-line error otherwise."""
    seeds = ", ".join(map(str, policy.seeds))
    if seed is None:
        if len(policy.seeds) > 1:
            raise ConfigError(f"{str(source)!r} holds {len(policy.seeds)} seeds ({seeds}): give --seed N (or "
                              f"export its seed-<n> folder)")
        return 0
    if seed not in policy.seeds:
        raise ConfigError(f"--seed {seed} is not in {str(source)!r}, which holds seed{'s' * (len(policy.seeds) > 1)} "
                          f"{seeds}")
    return policy.seeds.index(seed)


def action_meanings(env_id: str) -> list[str]:
    """The actions' names where the environment gives them (`get_action_meanings`, as Atari's do), else their
    indices as text ("0", "1", ...)."""
    env = gym.make(env_id)
    try:
        names = getattr(env.unwrapped, "get_action_meanings", None)
        return [str(a) for a in names()] if callable(names) else [str(a) for a in range(int(env.action_space.n))]
    finally:
        env.close()


def load_onnx(path: str | Path) -> Policy:
    """The policy of an `.onnx` file written by `export_onnx`: argmax over onnxruntime's Q-values, on the env the
    metadata names, as seed `seed` (so that it plays that seed's episodes). CheckpointError if the file is
    missing, not ONNX, not cartpole-dqn's, or made for other sizes than its environment's."""
    path = Path(path)
    raw = read_model_file(path, "an ONNX file")
    try:
        act, (env_id, n_actions, seed) = _onnx_act(raw)
    except CheckpointError as e:
        raise CheckpointError(f"{str(path)!r} {e}") from None
    return Policy(None, jnp.zeros(1), env_id, [seed], [path], greedy_act=act, n_actions=n_actions)


@functools.lru_cache(maxsize=8)
def _onnx_act(raw: bytes) -> tuple[Act, tuple[str, int, int]]:
    """The greedy policy function of an ONNX file's bytes, and its (env id, actions, seed); one function per
    content, so evaluating the same file again reuses the programs compiled for it."""
    import onnxruntime as ort

    from .envs import env_sizes

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1     # tiny networks: one thread is fastest
    try:
        session = ort.InferenceSession(raw, options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime's errors (InvalidProtobuf, Fail, ...) share no base class but Exception
        raise CheckpointError(f"is not a valid ONNX model: {str(e).splitlines()[0]}") from None
    meta: dict[str, Any] = session.get_modelmeta().custom_metadata_map
    try:
        env_id, size, n_actions = meta["env_id"], int(meta["input_size"]), int(meta["n_actions"])
        seed = int(meta.get("seed", 0))
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"is not a cartpole-dqn export (its metadata lacks {e}): write one with "
                              "`cartpole-dqn export RUN --out FILE.onnx`") from None
    try:
        sizes = env_sizes(env_id)
    except ConfigError as e:
        raise CheckpointError(f"plays {env_id!r}, which cannot be made here: {e}") from None
    if sizes != (size, n_actions):
        raise CheckpointError(f"was made for {size} observations and {n_actions} actions; {env_id} has "
                              f"{sizes[0]} and {sizes[1]}")

    def host(obs: np.ndarray) -> np.ndarray:
        q = session.run([OUTPUT], {INPUT: np.asarray(obs, np.float32).reshape(-1, size)})[0]
        return q.argmax(-1).astype(np.int32).reshape(obs.shape[:-1])

    def act(params: Any, obs: jax.Array) -> jax.Array:
        # A host callback: the episodes (a twin's inside the compiled program, too) ask onnxruntime each step.
        return jax.pure_callback(host, jax.ShapeDtypeStruct(obs.shape[:-1], jnp.int32), obs,
                                 vmap_method="expand_dims")

    return act, (env_id, n_actions, seed)
