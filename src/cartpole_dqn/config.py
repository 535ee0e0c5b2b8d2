"""Every hyperparameter in one dataclass: its default, its allowed range and a one-line meaning.

`Config()` holds the DQN settings of the `sample-efficient` preset; every preset, `default` included, is a named
set of overrides on it (`PRESETS`). The CLI flags, `--set key=value` and a TOML config file are three views of
this one object, and `validate` is the single place that decides what is allowed, so every entry point refuses the
same bad values with the same message.
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python 3.10
    import tomli as tomllib

from .errors import ConfigError  # re-exported: `from cartpole_dqn.config import ConfigError` keeps working
from .presets import PRESET_FOR_ENV, PRESETS

# The largest seed: JAX seeds its random keys from int32, and every seed of a run (seed .. seed+seeds-1) must fit.
SEED_MAX = 2**31 - 1


def _param(default: Any, help: str, *, low: float | None = None, high: float | None = None,
           low_open: bool = False, high_open: bool = False, choices: tuple[str, ...] | None = None) -> Any:
    return field(default=default, metadata=dict(help=help, low=low, high=high, low_open=low_open,
                                                high_open=high_open, choices=choices))


@dataclass(frozen=True)
class Config:
    """A complete description of a training run. The field defaults are the `sample-efficient` preset; `default`
    overrides them (`PRESETS`)."""

    preset: str = _param("sample-efficient", "the preset these settings started from (recorded; picks the default "
                                             "rule)")

    # --- task and solve rule -------------------------------------------------------------------------------------
    env: str = _param("CartPole-v1", "gymnasium environment id (Discrete actions, flat Box observations)")
    rule: str | None = _param(None, "solve rule from docs/metrics.md (sets env and threshold); none: the env's own",
                              choices=("article", "v0", "v1"))
    solve_score: float | None = _param(None, "mean training return that counts as solved (overrides the rule)")
    solve_window: int = _param(100, "consecutive training episodes averaged by the solve rule", low=1)

    # --- run -----------------------------------------------------------------------------------------------------
    seed: int = _param(0, "first seed; a K-seed run uses seed, seed+1, ..., seed+K-1", low=0, high=SEED_MAX)
    seeds: int = _param(1, "number of independent agents trained at once on the seed axis", low=1)
    max_episodes: int = _param(2000, "episode budget per seed", low=1)
    max_steps: int = _param(300_000, "env-step budget per seed", low=1)
    eval_every: int = _param(2000, "greedy evaluation every N env steps (0: off)", low=0)
    eval_episodes: int = _param(10, "episodes per greedy evaluation", low=1)
    final_eval_episodes: int = _param(100, "greedy episodes played by the final network (0: skip)", low=0)

    # --- algorithm -----------------------------------------------------------------------------------------------
    algo: str = _param("dqn", "dqn: replay memory and n-step targets; pqn: parallel Q-learning on rollouts of "
                              "num_envs x rollout_steps with Q(lambda) targets, no replay memory",
                       choices=("dqn", "pqn"))
    num_envs: int = _param(1, "environments each seed steps together (a vmap inside the seed); env-step budgets, "
                              "clocks and the replay ratio count the steps of all of them", low=1, high=4096)
    rollout_steps: int = _param(128, "pqn: steps of each environment per rollout (one learning phase each)", low=1)
    q_lambda: float = _param(0.9, "pqn: lambda of the Q(lambda) targets (0: one-step, 1: Monte Carlo)",
                             low=0.0, high=1.0)
    epochs: int = _param(4, "pqn: passes over each rollout", low=1)
    minibatches: int = _param(16, "pqn: minibatches each pass splits the rollout into", low=1)

    # --- network -------------------------------------------------------------------------------------------------
    hidden: tuple[int, ...] = _param((128, 128), "hidden layer widths of the Q-network MLP", low=1)
    init: str = _param("torch", "weight init: torch (PyTorch Linear) or glorot (Keras default, zero bias)",
                       choices=("torch", "glorot"))
    dueling: bool = _param(False, "dueling head: Q = V + A - mean(A)")
    layer_norm: bool = _param(False, "normalise each hidden layer's pre-activations (LayerNorm, no learned scale)")
    noisy: bool = _param(False, "noisy linear layers (factorised Gaussian) explore instead of epsilon (implies "
                                "epsilon 0)")
    noisy_sigma0: float = _param(0.5, "noisy: initial noise scale sigma0 (sigma = sigma0 / sqrt(fan_in))",
                                 low=0.0, low_open=True)

    # --- optimisation --------------------------------------------------------------------------------------------
    lr: float = _param(1e-3, "Adam learning rate (the start of the decay if lr_end is set)", low=0.0, low_open=True,
                       high=1.0)
    lr_end: float | None = _param(None, "decay the learning rate linearly to this over lr_decay_steps env steps "
                                        "(none: constant)", low=0.0, high=1.0)
    lr_decay_steps: int = _param(50_000, "env steps of the learning-rate decay", low=1)
    adam_eps: float = _param(1e-8, "Adam's epsilon: a floor under the step-size normaliser (Rainbow: 1.5e-4)",
                             low=0.0, low_open=True)
    gamma: float = _param(0.99, "discount factor", low=0.0, low_open=True, high=1.0)
    loss: str = _param("huber", "TD loss: huber (smooth L1) or mse", choices=("huber", "mse"))
    huber_delta: float = _param(1.0, "huber: TD errors beyond this count linearly, not squared (SB3's: 1)",
                                low=0.0, low_open=True)
    max_grad_norm: float = _param(10.0, "clip each seed's gradient norm to this (0: off)", low=0.0)
    batch_size: int = _param(64, "transitions per gradient update", low=1)
    replay_ratio: float = _param(1.0, "gradient updates per env step (0.25: one update every 4 steps)",
                                 low=0.0, low_open=True, high=64.0)
    train_every: int = _param(1, "learn in bursts: act N env steps, then make the N x replay_ratio updates due "
                                 "(SB3's train_freq)", low=1)
    sequential_fit: bool = _param(False, "fit a batch one sample at a time, one optimizer step each (the article)")
    learning_starts: int = _param(500, "transitions in memory before the first update", low=1)
    update_on_episode_end: bool = _param(True, "also update after the step that ends an episode")

    # --- replay memory -------------------------------------------------------------------------------------------
    buffer_size: int = _param(100_000, "replay memory capacity per seed", low=1)
    replacement: bool = _param(True, "sample the batch with replacement (False: distinct transitions)")
    n_step: int = _param(5, "n-step returns: sum n rewards before bootstrapping (stops at episode ends)", low=1,
                         high=100)
    prioritized: bool = _param(False, "proportional prioritized replay (sum tree)")
    priority_alpha: float = _param(0.6, "prioritized: how strongly priority shapes sampling (0 = uniform)",
                                   low=0.0, high=1.0)
    priority_beta: float = _param(0.4, "prioritized: initial importance-weight exponent, annealed to 1",
                                  low=0.0, high=1.0)
    priority_eps: float = _param(1e-6, "prioritized: added to |TD error| so no transition is never replayed",
                                 low=0.0, low_open=True)

    # --- targets -------------------------------------------------------------------------------------------------
    target_update_interval: int = _param(1, "sync the target network every N updates (0: no target network)",
                                         low=0)
    tau: float = _param(0.005, "target sync weight: 1 copies, below 1 is Polyak averaging", low=0.0,
                        low_open=True, high=1.0)
    double: bool = _param(True, "Double DQN: online net picks the next action, target net values it")
    obs_scale: str = _param("none", "bounds: scale observations to [-1, 1] by the space's finite bounds",
                            choices=("none", "bounds"))
    reward_clip: float = _param(0.0, "clip rewards to [-c, c] before learning (0: off)", low=0.0)
    reward_scale: float = _param(1.0, "multiply rewards by this before learning (scores stay unscaled)", low=0.0,
                                 low_open=True)
    terminal_on_truncation: bool = _param(False, "treat a time-limit cut-off as terminal (the article's bug)")
    negate_final_reward: bool = _param(False, "store the final step's reward negated (the article's penalty)")

    # --- exploration ---------------------------------------------------------------------------------------------
    epsilon_schedule: str = _param("linear", "linear over env steps, or exponential per update (the article)",
                                   choices=("linear", "exponential"))
    epsilon_start: float = _param(1.0, "initial exploration rate", low=0.0, high=1.0)
    epsilon_end: float = _param(0.01, "final exploration rate", low=0.0, high=1.0)
    epsilon_decay_steps: int = _param(2000, "linear: env steps from start to end", low=1)
    epsilon_decay_rate: float = _param(0.995, "exponential: factor applied after each update",
                                       low=0.0, low_open=True, high=1.0)

    # --- hardware ------------------------------------------------------------------------------------------------
    device: str = _param("auto", "where tensors live: auto (CUDA if available, else CPU), cpu, cuda or cuda:N")
    threads: int = _param(1, "CPU threads of the compiled program (XLA); 1 measured fastest for these small networks",
                          low=1, high=256)

    # --- output --------------------------------------------------------------------------------------------------
    save_every: int = _param(0, "write a full checkpoint every N episodes of a seed (0: only at solve, at the end "
                                "and on Ctrl-C)", low=0)
    plot_every: float = _param(15.0, "seconds between redraws of scores.png during training (0: only at the end)",
                               low=0.0)

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seed, self.seed + self.seeds))


# Three kinds of settings. The CLI, TOML and `--set` see one flat Config; the compiled program does not.
# HYPER: numbers that only flow through arithmetic. They are data in each seed's state (core/hyper.py), so changing
#   them reuses the compiled program and seeds side by side may differ in them (`tune --batch`).
# RUN: the driver's: which seeds, evaluation, output, hardware, and the budgets. The program reads none of them as
#   a constant (`seeds` sets how many states it is mapped over; the budgets are data in each seed's state, so a
#   resume that raises them compiles nothing).
# PROGRAM: everything else shapes the compiled program (widths, buffer, n-step, switches, E, T, the environment,
#   the solve rule and `preset`, which picks the classic's rule); a change compiles another program.
HYPER = frozenset({
    "lr", "lr_end", "lr_decay_steps", "gamma", "tau", "huber_delta", "reward_scale", "epsilon_start", "epsilon_end",
    "epsilon_decay_steps", "epsilon_decay_rate", "priority_alpha", "priority_beta", "priority_eps", "q_lambda",
})
RUN = frozenset({
    "seed", "seeds", "eval_every", "eval_episodes", "final_eval_episodes", "device", "threads",
    "save_every", "plot_every", "max_steps", "max_episodes",
})
PROGRAM = frozenset(f.name for f in dataclasses.fields(Config)) - HYPER - RUN


FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(Config)}
_TYPES: dict[str, Any] = typing.get_type_hints(Config)


def preset(name: str, **overrides: Any) -> Config:
    """The named preset with `overrides` applied, validated."""
    return build(name, overrides=overrides)


def _base_type(tp: Any) -> tuple[Any, bool]:
    """(the non-None type, whether None is allowed) of an annotation such as `float | None`."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        return next(a for a in args if a is not type(None)), True
    return tp, False


def parse_value(key: str, text: str) -> Any:
    """Turn the string of `--set key=value` into the field's type."""
    if key not in FIELDS:
        raise ConfigError(f"unknown setting {key!r}: allowed are {', '.join(FIELDS)}")
    tp, optional = _base_type(_TYPES[key])
    raw = text.strip()
    if optional and raw.lower() in ("none", "null", ""):
        return None
    try:
        if tp is bool:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if tp is int:
            number = float(raw)  # accepts 1e5 and 100_000 alike
            if not number.is_integer():
                raise ValueError
            return int(number)
        if tp is float:
            return float(raw)
        if typing.get_origin(tp) is tuple:
            parts = [p for p in raw.strip("[]()").replace(" ", "").split(",") if p]
            return tuple(int(p) for p in parts)
        return raw
    except ValueError:
        raise ConfigError(f"{key}={text!r} is not a valid {_type_name(key)}") from None


def _type_name(key: str) -> str:
    tp, optional = _base_type(_TYPES[key])
    name = {bool: "boolean (true/false)", int: "integer", float: "number", str: "string"}.get(
        tp, "comma-separated list of integers")
    return name + (" or none" if optional else "")


def _check_type(key: str, value: Any) -> Any:
    tp, optional = _base_type(_TYPES[key])
    if value is None and optional:
        return None
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(tp)
    if ok is None:  # tuple[int, ...]
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, int) and not isinstance(v, bool)
                                                              for v in value):
            return tuple(value)
        ok = False
    if not ok:
        raise ConfigError(f"{key}={value!r} is not a valid {_type_name(key)}")
    return float(value) if tp is float else value


def _bound(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"   # an int bound in full: 2147483647, not 2.14748e+09


def _range_text(meta: dict[str, Any]) -> str:
    lo = "" if meta["low"] is None else ("(" if meta["low_open"] else "[") + _bound(meta["low"])
    hi = "" if meta["high"] is None else _bound(meta["high"]) + (")" if meta["high_open"] else "]")
    if lo and hi:
        return f"in {lo}, {hi}"
    if lo:
        return (">" if meta["low_open"] else ">=") + f" {_bound(meta['low'])}"
    return ("<" if meta["high_open"] else "<=") + f" {_bound(meta['high'])}"


def allowed(key: str) -> str:
    """What `key` accepts, in words, for help texts and error messages."""
    meta = FIELDS[key].metadata
    if meta["choices"]:
        return "one of " + ", ".join(meta["choices"]) + (" or none" if _base_type(_TYPES[key])[1] else "")
    if meta["low"] is None and meta["high"] is None:
        return _type_name(key)
    return f"{_type_name(key)} {_range_text(meta)}"


def validate(cfg: Config) -> Config:
    """Check every field's type and range and the rules that tie fields together; return the config."""
    values = {}
    for key, f in FIELDS.items():
        value = _check_type(key, getattr(cfg, key))
        values[key] = value
        meta = f.metadata
        if value is None:
            continue
        if meta["choices"] and value not in meta["choices"]:
            raise ConfigError(f"{key}={value!r} is not allowed: {allowed(key)}")
        for v in (value if isinstance(value, tuple) else (value,)):
            if isinstance(v, str) or isinstance(v, bool):
                continue
            if not math.isfinite(v):
                raise ConfigError(f"{key}={value!r} is not allowed: {allowed(key)}")
            lo, hi = meta["low"], meta["high"]
            bad_lo = lo is not None and (v <= lo if meta["low_open"] else v < lo)
            bad_hi = hi is not None and (v >= hi if meta["high_open"] else v > hi)
            if bad_lo or bad_hi:
                raise ConfigError(f"{key}={value!r} is out of range: {allowed(key)}")
    cfg = dataclasses.replace(cfg, **values)
    if cfg.preset not in PRESETS:
        raise ConfigError(f"unknown preset {cfg.preset!r}: allowed are {', '.join(PRESETS)}")
    if cfg.seed + cfg.seeds - 1 > SEED_MAX:
        raise ConfigError(f"seeds={cfg.seeds} from seed={cfg.seed} reach {cfg.seed + cfg.seeds - 1}: every seed must "
                          f"be in [0, {SEED_MAX}]")
    if cfg.batch_size > cfg.buffer_size:
        raise ConfigError(f"batch_size={cfg.batch_size} is larger than buffer_size={cfg.buffer_size}: "
                          "the batch must fit in the replay memory")
    if not cfg.replacement and cfg.batch_size > cfg.learning_starts:
        raise ConfigError(f"batch_size={cfg.batch_size} exceeds learning_starts={cfg.learning_starts}: sampling "
                          "without replacement needs at least a batch in memory")
    if cfg.noisy and (cfg.epsilon_start > 0 or cfg.epsilon_end > 0):
        raise ConfigError(f"noisy=true explores by itself: set epsilon_start=0 and epsilon_end=0 (got "
                          f"{cfg.epsilon_start} and {cfg.epsilon_end})")
    if cfg.epsilon_end > cfg.epsilon_start:
        raise ConfigError(f"epsilon_end={cfg.epsilon_end} is above epsilon_start={cfg.epsilon_start}: "
                          "epsilon must not grow")
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", cfg.device):
        raise ConfigError(f"device={cfg.device!r} is not allowed: auto, cpu, cuda or cuda:N")
    if cfg.prioritized and not cfg.replacement:
        raise ConfigError("prioritized=true samples by priority: it cannot be combined with replacement=false")
    if cfg.algo == "pqn":
        rollout = cfg.num_envs * cfg.rollout_steps
        if rollout % cfg.minibatches:
            raise ConfigError(f"minibatches={cfg.minibatches} does not divide a rollout of num_envs x rollout_steps = "
                              f"{rollout} transitions: pick a divisor")
        if cfg.prioritized or cfg.double or cfg.target_update_interval or cfg.sequential_fit:
            raise ConfigError("algo=pqn learns from its rollouts with no replay memory and no target network: "
                              "set prioritized, double and sequential_fit false and target_update_interval=0")
    if cfg.algo == "dqn":
        _check_learning_starts(cfg)
    if cfg.double and cfg.target_update_interval == 0:
        raise ConfigError("double=true needs a target network: set target_update_interval >= 1")
    return cfg


def _check_learning_starts(cfg: Config) -> None:
    """DQN's first update waits for learning_starts transitions: refuse a run that would never make one."""
    # The memory holds whole rows of num_envs transitions (core/replay.py's capacity), so it may hold a few less.
    capacity = max(1, cfg.buffer_size // cfg.num_envs) * cfg.num_envs
    if cfg.learning_starts > capacity:
        held = "" if capacity == cfg.buffer_size else f" (it holds {capacity}: whole rows of num_envs={cfg.num_envs})"
        raise ConfigError(f"learning_starts={cfg.learning_starts} is above buffer_size={cfg.buffer_size}{held}: the "
                          "replay memory would never hold enough to learn; lower learning_starts or raise buffer_size")
    if cfg.learning_starts >= cfg.max_steps:
        raise ConfigError(f"learning_starts={cfg.learning_starts} is not below max_steps={cfg.max_steps}: the agent "
                          "would never learn; lower learning_starts or raise max_steps")


def check_bench_arguments(seeds: int, seed_start: int, procs: int = 1) -> None:
    """The benchmark's own argument checks, one line each (the config checks the rest)."""
    if seeds < 1:
        raise ConfigError(f"--seeds {seeds} is not allowed: a benchmark needs at least 1 seed")
    if seed_start < 0:
        raise ConfigError(f"--seed-start {seed_start} is negative: seeds are numbered from 0")
    if procs < 1:
        raise ConfigError(f"--procs {procs} is not allowed: use 1 or more processes")


def resolve_device(name: str) -> Any:
    """The JAX device `name` asks for; a ConfigError if it is not there (say, CUDA on the CPU-only wheels)."""
    import jax

    if name == "auto":
        return jax.devices()[0]
    if name == "cpu":
        return jax.devices("cpu")[0]
    try:
        gpus = jax.devices("cuda")
    except RuntimeError:
        raise ConfigError(f"--device {name}: CUDA is not available here (jax {jax.__version__} found no CUDA "
                          "device; pip install 'cartpole-dqn[cuda]' on a machine with one); use cpu or auto") \
            from None
    index = int(name.partition(":")[2] or 0)
    if index >= len(gpus):
        raise ConfigError(f"--device {name}: this machine has {len(gpus)} CUDA device(s), numbered from 0")
    return gpus[index]


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a config file: top-level `key = value` pairs named as the Config fields, plus optional `preset`."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {e}") from None
    for key, value in data.items():
        if key not in FIELDS:
            raise ConfigError(f"unknown setting {key!r} in {str(path)!r}: allowed are {', '.join(FIELDS)}")
        if isinstance(value, dict):
            raise ConfigError(f"setting {key!r} in {str(path)!r} is a table; settings are top-level key = value")
    return data


def build(preset_name: str | None = None, file: str | Path | None = None,
          overrides: dict[str, Any] | None = None) -> Config:
    """Compose a Config: the preset (named, else the file's, else default), then the file's settings, then
    `overrides` (CLI flags and --set), validated. With `noisy` on, an epsilon bound that none of them sets is 0.
    With a rule, the env is the rule's; one that any of them gives must be the rule's."""
    from_file = load_toml(file) if file is not None else {}
    overrides = dict(overrides or {})
    env = overrides.get("env") or from_file.get("env")
    name = (preset_name or overrides.pop("preset", None) or from_file.get("preset")
            or PRESET_FOR_ENV.get(env, "default"))
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}: allowed are {', '.join(PRESETS)}")
    values = {**PRESETS[name], **from_file, **overrides, "preset": name}
    for key, value in values.items():
        values[key] = _check_type(key, value)
    if values.get("noisy"):
        # Noisy layers explore by themselves: epsilon defaults to 0 for them. Bounds the user gave (flag, file or
        # preset) are kept, so a non-zero one is still refused by `validate` rather than silently dropped.
        values.setdefault("epsilon_start", 0.0)
        values.setdefault("epsilon_end", 0.0)
    from .rules import settle_env  # here, not at the top: rules.py imports this module
    return settle_env(validate(dataclasses.replace(Config(), **values)), env_given="env" in values)


def to_dict(cfg: Config) -> dict[str, Any]:
    d = dataclasses.asdict(cfg)
    d["hidden"] = list(cfg.hidden)
    return d


def from_dict(d: dict[str, Any]) -> Config:
    """The inverse of `to_dict`, validated (used to read config.json back)."""
    unknown = set(d) - set(FIELDS)
    if unknown:
        raise ConfigError(f"unknown settings {sorted(unknown)}")
    return build(overrides=d) if "hidden" not in d else build(overrides={**d, "hidden": tuple(d["hidden"])})
