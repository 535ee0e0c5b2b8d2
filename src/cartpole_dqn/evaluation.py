"""Greedy evaluation, recording and live play of trained agents.

`greedy_returns` is the one evaluation, used by training and by `evaluate`: K seeds' networks play M fresh
episodes each with epsilon 0 (or a given epsilon). It is a pure function of the weights and of (base, seed,
number), so evaluation n of a run can be replayed from its weights alone and there is nothing to checkpoint, and
it draws none of training's random numbers. Tasks with a JAX twin play inside one compiled program; the others
play gymnasium environments on the host. After training, `load` reads the saved models of a run (one seed or K),
or an exported `.onnx` file, and `evaluate`, `record` and `play` judge them, film them (GIF or MP4) and show them
in a window. Every episode loop takes a greedy policy function (`Act`), so a network and an ONNX file play the same
episodes through the same code.
"""

from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from .checkpoint import load_model
from .config import SEED_MAX
from .core import greedy, jit_brief
from .core.loop import Task
from .core.networks import Network, Params
from .core.twins import has_twin, make_twin
from .envs import FINAL_EVAL_SEED_BASE, env_sizes, make_envs
from .errors import CheckpointError, ConfigError, require
from .rundir import MODEL, SEED_PREFIX, RunDir

ONNX_SUFFIX = ".onnx"


# A greedy policy as the episodes see it: (one seed's params, observations [..., obs]) -> actions [...], a JAX
# function. A network's is its argmax (`net_act`); an ONNX file's asks onnxruntime from inside (export.py).
Act = Callable[[Any, jax.Array], jax.Array]


@functools.lru_cache(maxsize=None)
def net_act(net: Network) -> Act:
    """The greedy policy of `net` (noisy layers act on their mean weights); one function per architecture, so the
    programs compiled for it below are kept for every call."""
    return lambda p, obs: jnp.argmax(net.apply(p, obs), axis=-1)


@functools.lru_cache(maxsize=None)
def _batched(act: Act) -> Callable[[Any, jax.Array], jax.Array]:
    """Greedy actions [K, ...] of K seeds (params with a seed axis) for observations [K, ..., obs], compiled once
    per policy function."""
    return jax.jit(jax.vmap(act))


@functools.lru_cache(maxsize=None)
def _twin_returns(act: Act, n_actions: int, env_id: str, episodes: int,
                  epsilon: float) -> Callable[[Any, jax.Array], jax.Array]:
    """Returns [K, episodes] for params and keys [K] with a seed axis, on `env_id`'s twin; compiled once per
    (policy function, task, episodes, epsilon), so later evaluations reuse the program."""
    env, env_params = make_twin(env_id)
    task = Task(env, env_params, None, 0)        # the solve rule plays no part in judging
    return jit_brief(jax.vmap(lambda p, k: greedy.policy_returns(lambda obs: act(p, obs), n_actions, task, k,
                                                                 episodes, epsilon)))


def greedy_returns(net: Network, params: Params, env_id: str, seeds: list[int], episodes: int, *, base: int,
                   number: int, epsilon: float = 0.0) -> np.ndarray:
    """Undiscounted returns [K, M] of M = `episodes` fresh episodes per seed, played to their end.

    `params` holds K seeds' weights on a leading axis, `seeds` their numbers. Evaluation `number` of stream `base`
    plays the same episodes every time, and seed s's never depend on the other seeds: on a twin its key is
    `eval_key(base, s, number)`; on the host episode j starts from gymnasium's reset seeded by (base, s, number, j)
    and seed s's epsilon draws come from a generator seeded by (base, s, number).
    """
    return policy_returns(net_act(net), net.n_actions, params, env_id, seeds, episodes, base=base, number=number,
                          epsilon=epsilon)


def policy_returns(act: Act, n_actions: int, params: Any, env_id: str, seeds: list[int], episodes: int, *,
                   base: int, number: int, epsilon: float = 0.0) -> np.ndarray:
    """`greedy_returns` of any greedy policy function `act` (a network's, an ONNX file's): the same episodes."""
    if has_twin(env_id):
        keys = jnp.stack([greedy.eval_key(base, s, number) for s in seeds])
        return np.asarray(_twin_returns(act, n_actions, env_id, episodes, float(epsilon))(params, keys),
                          dtype=np.float64)
    return _host_returns(act, params, env_id, seeds, episodes, base, number, epsilon)


def _host_returns(act: Act, params: Any, env_id: str, seeds: list[int], episodes: int, base: int,
                  number: int, epsilon: float) -> np.ndarray:
    """`greedy_returns` on gymnasium environments: K x M side by side, actions from the compiled policy."""
    k, m = len(seeds), episodes
    envs = make_envs(env_id, k * m)      # seeded per episode below
    try:
        n_actions = envs.single_action_space.n
        starts = [int(np.random.SeedSequence([base, s, number, j]).generate_state(1)[0])
                  for s in seeds for j in range(m)]
        rngs = [np.random.default_rng([base, s, number]) for s in seeds]
        obs, _ = envs.reset(seed=starts)
        returns = np.zeros(k * m)
        done = np.zeros(k * m, dtype=bool)
        batched = _batched(act)
        while not done.all():
            actions = np.asarray(batched(params, jnp.asarray(obs, jnp.float32).reshape(k, m, -1))).reshape(-1)
            if epsilon > 0:
                # Every seed draws M pairs per step, finished episodes included, so its stream is fixed.
                explore = np.concatenate([r.random(m) for r in rngs]) < epsilon
                random_actions = np.concatenate([r.integers(0, n_actions, m) for r in rngs])
                actions = np.where(explore, random_actions, actions)
            obs, reward, terminated, truncated, _ = envs.step(actions)
            returns += np.where(done, 0.0, reward)
            done |= terminated | truncated
    finally:
        envs.close()
    return returns.reshape(k, m)


# ------------------------------------------------------------------------------------------ trained agents ---
@dataclass
class Policy:
    """The greedy policies of a trained run: K seeds' weights on a leading seed axis, and the task they learned;
    or an ONNX file's policy (`net` None, `greedy_act` asking onnxruntime, one seed)."""

    net: Network | None
    params: Any
    env: str
    seeds: list[int]
    paths: list[Path]
    greedy_act: Act | None = None  # default: the network's argmax
    n_actions: int = 0             # default: the network's

    def __post_init__(self) -> None:
        if self.greedy_act is None:
            self.greedy_act = net_act(self.net)
        self.n_actions = self.n_actions or self.net.n_actions

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Greedy actions [K] for observations [K, obs] (one per seed)."""
        return np.asarray(_batched(self.greedy_act)(self.params, jnp.asarray(obs, jnp.float32)))


def _model_files(path: Path) -> list[Path]:
    if not path.exists():
        raise CheckpointError(f"{str(path)!r} does not exist")
    if path.is_file():
        return [path]
    seeds = RunDir(path).find_seed_dirs(MODEL)
    if not seeds:
        raise CheckpointError(f"{str(path)!r} holds no {MODEL} (nor {SEED_PREFIX}*/{MODEL}): train one "
                              "with `cartpole-dqn train --out FOLDER`")
    return [d / MODEL for d in seeds]


def load(path: str | Path) -> Policy:
    """The trained agents in a run folder (one seed, or every `seed-<n>/` of a K-seed run), one model file, or
    one `.onnx` file written by `export` (its policy runs in onnxruntime: the `onnx` extra).

    Raises CheckpointError for a missing path, a folder with no model, a damaged file, a model of another format
    version, one whose observation or action sizes do not match its environment, or one whose environment or
    network is not the one its run folder's config.json records (another run's model copied in).
    """
    path = Path(path)
    if path.suffix.lower() == ONNX_SUFFIX:
        require("onnxruntime", "onnx", "an .onnx policy")
        from .export import load_onnx

        return load_onnx(path)
    files = _model_files(path)
    loaded = [load_model(f) for f in files]
    net, _, first = loaded[0]
    for f, (other, _, m) in zip(files, loaded):
        if other != net or m.get("env") != first.get("env"):
            raise CheckpointError(f"{str(f)!r} differs from {str(files[0])!r} in environment or architecture")
    env_id = first.get("env")
    try:
        sizes = env_sizes(env_id)
    except ConfigError as e:
        raise CheckpointError(f"{str(files[0])!r} was trained on {env_id!r}, which cannot be made here: {e}") \
            from None
    if sizes != (net.obs_size, net.n_actions):
        raise CheckpointError(f"{str(files[0])!r} was made for {net.obs_size} observations and "
                              f"{net.n_actions} actions; {env_id} has {sizes[0]} and {sizes[1]}")
    # A model file named on its own is held to the run folder it lies in, as a folder's models are to theirs.
    RunDir(path if path.is_dir() else path.parent).check_own(
        repr(str(files[0])), {"env": env_id, "hidden": list(net.hidden), "dueling": net.dueling, "noisy": net.noisy,
                              "layer_norm": net.layer_norm})
    params = jax.tree.map(lambda *seeds: jnp.stack(seeds), *(p for _, p, _ in loaded))
    return Policy(net, params, env_id, [int(m.get("seed", i)) for i, (_, _, m) in enumerate(loaded)], files)


def _policy(model: str | Path | Policy) -> Policy:
    return model if isinstance(model, Policy) else load(model)


@dataclass
class EvalResult:
    """Returns [K, M] of M fresh greedy episodes per seed, and their statistics."""

    env: str
    seeds: list[int]
    returns: np.ndarray
    epsilon: float
    seed: int

    @staticmethod
    def _stats(r: np.ndarray) -> dict[str, float]:
        return {"mean": float(r.mean()), "std": float(r.std()), "min": float(r.min()), "max": float(r.max())}

    @property
    def mean(self) -> float:
        return float(self.returns.mean())

    def per_seed(self) -> list[dict]:
        return [{"seed": s, **self._stats(r)} for s, r in zip(self.seeds, self.returns)]

    def to_dict(self) -> dict:
        """Everything, every episode's return included (what `evaluate --json` writes)."""
        return {"env": self.env, "episodes": int(self.returns.shape[1]), "epsilon": self.epsilon,
                "episode_seed": self.seed, "aggregate": self._stats(self.returns), "per_seed":
                [{**d, "returns": r.tolist()} for d, r in zip(self.per_seed(), self.returns)]}

    def lines(self) -> list[str]:
        """One line per seed, and the aggregate when there are several."""
        text = lambda who, d: (f"{who}: {d['mean']:.1f} +- {d['std']:.1f} (min {d['min']:g}, max {d['max']:g}) "
                               f"over {self.returns.shape[1]} episodes")
        out = [text(f"seed {d['seed']}", d) for d in self.per_seed()]
        if len(self.seeds) > 1:
            out.append(text(f"all {len(self.seeds)} seeds", self._stats(self.returns)))
        return out


def evaluate(model: str | Path | Policy, episodes: int = 100, seed: int | None = None,
             epsilon: float = 0.0) -> EvalResult:
    """Play `episodes` fresh episodes per seed, greedily (or epsilon-greedily), and return every return.

    By default the episodes are those of training's final greedy evaluation (seeds disjoint from training), so
    evaluating a finished run reproduces its `final_greedy_score`; `seed` picks another set.
    """
    if episodes < 1:
        raise ConfigError(f"--episodes {episodes} is not allowed: an integer >= 1")
    if not 0.0 <= epsilon <= 1.0:
        raise ConfigError(f"--epsilon {epsilon} is not allowed: a number in [0, 1]")
    base = episode_base(seed)
    policy = _policy(model)
    returns = policy_returns(policy.greedy_act, policy.n_actions, policy.params, policy.env, policy.seeds, episodes,
                             base=base, number=0, epsilon=epsilon)
    return EvalResult(policy.env, policy.seeds, returns, epsilon, base)


def episode_base(seed: int | None) -> int:
    """The seed the episodes of `evaluate`, `record` and `play` descend from: `seed`, by default training's final
    evaluation's; a ConfigError outside [0, SEED_MAX] (gymnasium refuses negative seeds, JAX wider than int32)."""
    if seed is None:
        return FINAL_EVAL_SEED_BASE
    if not 0 <= seed <= SEED_MAX:
        raise ConfigError(f"--seed {seed} is out of range: integer in [0, {SEED_MAX}]")
    return seed


# ------------------------------------------------------------------------------------ recording and play ---
RECORD_FORMATS = (".gif", ".mp4")


def _episodes(policy: Policy, env: gym.Env, episodes: int, base: int):
    """Yield (step, return so far) after each step of the first seed's greedy episodes."""
    for e in range(episodes):
        obs, _ = env.reset(seed=base + 1000 * policy.seeds[0] + e)
        total, t, done = 0.0, 0, False
        while not done:
            # One network per seed: act with the first and give the others the same observation.
            action = int(policy.act(np.repeat(obs[None], len(policy.seeds), 0))[0])
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            t += 1
            done = terminated or truncated
            yield e, t, total, done


def _annotate(frame: np.ndarray, text: str) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    img = Image.fromarray(frame)
    draw = ImageDraw.Draw(img)
    size = max(12, frame.shape[0] // 22)
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - Pillow older than 10.1 has one size
        font = ImageFont.load_default()
    draw.text((10, 8), text, fill=(20, 20, 20), font=font)
    return np.asarray(img)


@dataclass
class Recording:
    path: Path
    frames: int
    returns: list[float]


def record(model: str | Path | Policy, out: str | Path, episodes: int = 1, fps: int = 50,
           seed: int | None = None, scale: float = 1.0) -> Recording:
    """Film the greedy agent (the first seed of a K-seed run) with gymnasium's rgb_array renderer to a GIF or an
    MP4: one frame per env step, with the step count and the return drawn on it. The file is written atomically.
    """
    out = Path(out)
    ext = out.suffix.lower()
    if ext not in RECORD_FORMATS:
        raise ConfigError(f"--out {str(out)!r} has an unknown extension {ext or '(none)'!r}: use "
                          + " or ".join(RECORD_FORMATS))
    if episodes < 1 or fps < 1:
        raise ConfigError(f"--episodes {episodes} and --fps {fps} must both be integers >= 1")
    base = episode_base(seed)
    # Refuse before a single frame is played, not after the whole film is in memory.
    require("imageio", "record", "recording")
    if ext == ".mp4":
        require("imageio_ffmpeg", "record", "an MP4")
    policy = _policy(model)
    if not has_display():
        # Off-screen rendering needs no window system; without this SDL prints a spurious "error:" line on
        # headless machines. Left alone where a display exists, so `play` in the same process still opens one.
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
        # gymnasium 1.3's renderer calls pygame.init(), which also opens audio: ALSA's "cannot find card" lines.
        os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    env = gym.make(policy.env, render_mode="rgb_array")
    frames, returns = [], []
    try:
        for e, t, total, done in _episodes(policy, env, episodes, base):
            frame = env.render()
            if scale != 1.0:
                from PIL import Image
                h, w = frame.shape[:2]
                frame = np.asarray(Image.fromarray(frame).resize((int(w * scale) // 2 * 2, int(h * scale) // 2 * 2)))
            label = f"step {t}   return {total:g}" + (f"   episode {e + 1}" if episodes > 1 else "")
            frames.append(_annotate(frame, label))
            if done:
                returns.append(total)
    finally:
        env.close()
    _write_video(out, frames, fps)
    return Recording(out, len(frames), returns)


def _write_video(out: Path, frames: list[np.ndarray], fps: int) -> None:
    import imageio.v2 as imageio

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp{out.suffix}")
    try:
        if out.suffix.lower() == ".gif":
            imageio.mimwrite(tmp, frames, format="GIF", duration=1000.0 / fps, loop=0)
        else:
            imageio.mimwrite(tmp, frames, format="FFMPEG", fps=fps, macro_block_size=2)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def has_display() -> bool:
    """Whether a window can open: on Linux and the BSDs an X11 or Wayland display must be set."""
    if sys.platform.startswith(("linux", "freebsd", "openbsd")):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def play(model: str | Path | Policy, episodes: int = 1, seed: int | None = None) -> list[float]:
    """Show the greedy agent live in a window (gymnasium's human renderer); returns each episode's return."""
    if not has_display():
        raise ConfigError("play needs a display and none was found (DISPLAY and WAYLAND_DISPLAY are unset): "
                          "record a GIF instead with `cartpole-dqn record OUT --out agent.gif`")
    base = episode_base(seed)
    policy = _policy(model)
    env = gym.make(policy.env, render_mode="human")
    try:
        return [total for _, _, total, done in _episodes(policy, env, episodes, base) if done]
    finally:
        env.close()
