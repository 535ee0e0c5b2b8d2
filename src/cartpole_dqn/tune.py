"""Hyperparameter search with Optuna: a TPE sampler, a median pruner fed by the rolling mean, shared storage.

Each trial trains K seeds at once on the seed axis with the hyperparameters the sampler proposes and scores them by
the median over seeds of the env steps to solve (docs/metrics.md), an unsolved seed counting as twice the step budget;
lower is better. While a trial trains, the median over seeds of the rolling mean of training returns is reported
to Optuna every `report_every` env steps, negated so that lower is better there too, and a trial that falls below
the median of earlier trials at the same step is stopped (pruned). `batch` trains several trials that share a
compiled program side by side as one (see `Objective`).

The study lives in storage that many processes can share (studies.py). Running the same command on several
machines against one PostgreSQL study adds every machine's trials to it; `jobs` runs several worker processes on
this machine.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import sys
import warnings
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np
import optuna
from optuna.trial import FrozenTrial, Trial, TrialState

from .config import FIELDS, HYPER, PROGRAM, RUN, Config, ConfigError, build, load_toml, to_dict, validate
from .files import atomic_write
from .plotting import pyplot, save_png
from .errors import require
from .rules import resolve_rule
from .rundir import CHECKPOINT, WANDB
from .stats import objective_value
from .studies import (check_study_name, default_storage, default_study_name, fail_dead_trials, first_line, load,
                      open_storage, open_study, setup_of, shown)

if TYPE_CHECKING:  # tracking imports the driver (JAX), which a tune worker loads only to train
    from .tracking import Wandb, WandbOptions

# Settings that describe the run rather than the agent: never searched, never exported.


# ------------------------------------------------------------------------------------------- search space ---
# name: (what it sets, range as the README states it)
SEARCH_SPACE: dict[str, tuple[tuple[str, ...], str]] = {
    "lr": (("lr",), "1e-4 to 3e-3, log"),
    "gamma": (("gamma",), "0.95 to 0.999"),
    "batch_size": (("batch_size",), "32, 64, 128, 256"),
    "width": (("hidden",), "32, 64, 128, 256 units per hidden layer"),
    "depth": (("hidden",), "1 to 3 hidden layers"),
    "replay_ratio": (("replay_ratio",), "0.25, 0.5, 1, 2 updates per env step"),
    "target_sync": (("tau", "target_update_interval"), "polyak (every update) or hard (a full copy)"),
    "tau": (("tau",), "polyak: 0.001 to 0.1, log"),
    "target_update_interval": (("target_update_interval",), "hard: every 50 to 2,000 updates, log"),
    "epsilon_end": (("epsilon_end",), "0.005 to 0.1, log"),
    "epsilon_fraction": (("epsilon_decay_steps",), "linear decay over 2% to 50% of the step budget"),
    "n_step": (("n_step",), "1 to 5"),
    "prioritized": (("prioritized",), "on or off"),
    "priority_alpha": (("priority_alpha",), "prioritized: 0.2 to 0.8"),
    "priority_beta": (("priority_beta",), "prioritized: initial 0.2 to 0.8 (annealed to 1)"),
    # PQN's own (algo=pqn searches these instead of batch_size, replay_ratio, target_sync, n_step, prioritized).
    "q_lambda": (("q_lambda",), "pqn: 0.5 to 0.99"),
    "rollout_steps": (("rollout_steps",), "pqn: 16, 32, 64, 128 steps per environment"),
    "epochs": (("epochs",), "pqn: 1 to 8"),
    "minibatches": (("minibatches",), "pqn: 4, 8, 16, 32"),
}
# The settings that only one algorithm has.
ONLY = {"dqn": ("batch_size", "replay_ratio", "target_sync", "tau", "target_update_interval", "n_step",
                "prioritized", "priority_alpha", "priority_beta"),
        "pqn": ("q_lambda", "rollout_steps", "epochs", "minibatches")}


def search_space(trial: Trial, base: Config, fixed: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The settings a trial tries: Config fields to replace in `base`. A parameter whose setting is in `fixed`
    (given with --set or in --config) is held at that value and not searched."""

    other = ONLY["pqn" if base.algo == "dqn" else "dqn"]

    def free(name: str) -> bool:
        return name not in other and not fixed.intersection(SEARCH_SPACE[name][0])

    p: dict[str, Any] = {}
    if free("lr"):
        p["lr"] = trial.suggest_float("lr", 1e-4, 3e-3, log=True)
    if free("gamma"):
        p["gamma"] = trial.suggest_float("gamma", 0.95, 0.999)
    if free("batch_size"):
        p["batch_size"] = trial.suggest_categorical("batch_size", [32, 64, 128, 256])
    if free("width"):
        p["hidden"] = (trial.suggest_categorical("width", [32, 64, 128, 256]),) * trial.suggest_int("depth", 1, 3)
    if free("replay_ratio"):
        p["replay_ratio"] = trial.suggest_categorical("replay_ratio", [0.25, 0.5, 1.0, 2.0])
    if free("target_sync"):
        if trial.suggest_categorical("target_sync", ["polyak", "hard"]) == "polyak":
            p["target_update_interval"], p["tau"] = 1, trial.suggest_float("tau", 1e-3, 0.1, log=True)
        else:
            p["tau"] = 1.0
            p["target_update_interval"] = trial.suggest_int("target_update_interval", 50, 2000, log=True)
    if not base.noisy:  # noisy nets explore by themselves, with epsilon at 0
        if free("epsilon_end"):
            p["epsilon_end"] = trial.suggest_float("epsilon_end", 0.005, 0.1, log=True)
        if free("epsilon_fraction"):
            fraction = trial.suggest_float("epsilon_fraction", 0.02, 0.5)
            p["epsilon_decay_steps"] = max(1, round(fraction * base.max_steps))
    if free("n_step"):
        p["n_step"] = trial.suggest_int("n_step", 1, 5)
    if free("q_lambda"):
        p["q_lambda"] = trial.suggest_float("q_lambda", 0.5, 0.99)
    if free("rollout_steps"):
        p["rollout_steps"] = trial.suggest_categorical("rollout_steps", [16, 32, 64, 128])
    if free("epochs"):
        p["epochs"] = trial.suggest_int("epochs", 1, 8)
    if free("minibatches"):     # a divisor of the rollout (num_envs x rollout_steps)
        rollout = base.num_envs * p.get("rollout_steps", base.rollout_steps)
        p["minibatches"] = trial.suggest_categorical("minibatches", [m for m in (4, 8, 16, 32) if rollout % m == 0]
                                                     or [1])
    prioritized = base.prioritized
    if free("prioritized") and base.replacement:  # prioritized replay samples with replacement
        prioritized = p["prioritized"] = trial.suggest_categorical("prioritized", [False, True])
    if prioritized:
        if free("priority_alpha"):
            p["priority_alpha"] = trial.suggest_float("priority_alpha", 0.2, 0.8)
        if free("priority_beta"):
            p["priority_beta"] = trial.suggest_float("priority_beta", 0.2, 0.8)
    return p




# --------------------------------------------------------------------------------------------- objective ---
def shapes_program(param: str) -> bool:
    """Whether a searched parameter sets something the compiled program is built from (config.PROGRAM)."""
    return any(setting in PROGRAM for setting in SEARCH_SPACE[param][0])


class Objective:
    """Train trials' seeds and return each trial's median steps to solve; prune on the reported rolling mean.

    With `batch` B > 1, each call asks the study for B - 1 more trials that share the first one's program
    (its parameters of config.PROGRAM enqueued, the numeric ones sampled) and trains the B trials' seeds as one
    program: trial j of the batch trains seeds seed + j K ... seed + j K + K - 1. A pruned trial's seeds freeze
    while the others train on. The first trial's value is returned to `study.optimize`; the others are told."""

    def __init__(self, base: Config, fixed: frozenset[str], runs: Path, trials: int = 1, batch: int = 1,
                 wandb: WandbOptions | None = None):
        self.base, self.fixed, self.runs, self.wandb = base, fixed, runs, wandb
        self.budget = base.max_steps
        self.report_every = max(100, self.budget // 50)
        self.left, self.batch = trials, batch

    def calls(self) -> int:
        """How many calls add the trials (each call one batch)."""
        return -(-self.left // self.batch)

    def __call__(self, trial: Trial) -> float:
        first = self._config(trial)
        more = min(self.batch, self.left) - 1
        self.left -= more + 1
        static = {name: value for name, value in trial.params.items() if shapes_program(name)}
        for _ in range(more):
            trial.study.enqueue_trial(static, skip_if_exists=False)
        others = [trial.study.ask() for _ in range(more)]
        batch = [(trial, first), *((t, self._config(t)) for t in others)]
        try:
            outcome: dict[int, float | None] = {}
            for group in _by_program(batch):    # one group unless another worker's queued trial came in between
                outcome.update(self._train(group))
        except BaseException:
            for t in others:
                trial.study.tell(t, state=TrialState.FAIL)
            raise
        for t in others:
            value = outcome[t.number]
            trial.study.tell(t, value, state=TrialState.COMPLETE if value is not None else TrialState.PRUNED)
        if outcome[trial.number] is None:
            raise optuna.TrialPruned("rolling mean below the median of earlier trials")
        return outcome[trial.number]

    def _config(self, trial: Trial) -> Config:
        trial.set_user_attr("worker", {"host": socket.gethostname(), "pid": os.getpid()})
        return validate(dataclasses.replace(self.base, **search_space(trial, self.base, self.fixed)))

    def _train(self, group: list[tuple[Trial, Config]]) -> dict[int, float | None]:
        """Train the group's trials as one program; each trial's objective value (None: pruned)."""
        from .training import train

        k, n = self.base.seeds, len(group)
        cfg = dataclasses.replace(group[0][1], seed=self.base.seed, seeds=k * n)
        hypers = [{key: getattr(c, key) for key in HYPER} for _, c in group for _ in range(k)]
        pruned: dict[int, int] = {}

        def report(steps: int, means: np.ndarray) -> np.ndarray:
            stop = np.zeros(len(means), bool)
            for j, (t, _) in enumerate(group):
                mine = means[j * k:(j + 1) * k]
                if j not in pruned and not np.isnan(mine).all():
                    t.report(-float(np.nanmedian(mine)), steps)
                    if t.should_prune():
                        pruned[j] = steps
                stop[j * k:(j + 1) * k] = j in pruned
            return stop

        for j, (t, c) in enumerate(group):
            t.set_user_attr("config", to_dict(dataclasses.replace(c, seed=self.base.seed + j * k)))
        numbers = [t.number for t, _ in group]
        out = self.runs / (f"trial-{numbers[0]}" if n == 1 else f"trials-{'-'.join(map(str, numbers))}")
        if out.exists():  # the same study number from another storage that shared this --out
            out = out.with_name(f"{out.name}-{socket.gethostname()}-{os.getpid()}")
        result = train(cfg, out, verbose=False, report=report, report_every=self.report_every,
                       hypers=None if n == 1 else hypers, wandb=self.wandb)
        shutil.rmtree(out / CHECKPOINT, ignore_errors=True)  # megabytes of replay memory per trial
        if result.interrupted and len(pruned) < n:
            raise KeyboardInterrupt  # Ctrl-C or SIGTERM: Optuna marks the trial failed, the command stops
        values: dict[int, float | None] = {}
        for j, (t, _) in enumerate(group):
            mine = result.summaries[j * k:(j + 1) * k]
            steps = [s["steps_to_solve"] for s in mine]
            t.set_user_attr("run", str(out))
            t.set_user_attr("steps_to_solve", steps)
            t.set_user_attr("solved", sum(s is not None for s in steps))
            t.set_user_attr("wall_seconds", max(s["wall_seconds"] for s in mine))
            values[t.number] = None if j in pruned else objective_value(steps, self.budget)
        return values


def _by_program(batch: list[tuple[Trial, Config]]) -> list[list[tuple[Trial, Config]]]:
    """The trials grouped by the compiled program they need, in order."""
    groups: dict[tuple, list[tuple[Trial, Config]]] = {}
    for trial, cfg in batch:
        groups.setdefault(tuple(getattr(cfg, key) for key in sorted(PROGRAM)), []).append((trial, cfg))
    return list(groups.values())


def _work(base: Config, fixed: frozenset[str], runs: Path, url: str, name: str, trials: int,
          pruner: optuna.pruners.BasePruner | None, batch: int = 1, wandb: WandbOptions | None = None) -> None:
    """One worker: join the study and run `trials` trials, `batch` at a time (module level, so a spawned process
    can import it)."""
    storage = open_storage(url)
    _, rule = resolve_rule(base)
    study = open_study(storage, name, setup_of(base, rule), url=url, pruner=pruner)
    fail_dead_trials(study, storage)
    objective = Objective(base, fixed, runs, trials, batch, wandb)
    study.optimize(objective, n_trials=objective.calls())


# ---------------------------------------------------------------------------------------------- commands ---
@dataclass
class TuneResult:
    """What `tune` returns: the study, where it is stored, and its trials by state."""

    study: str
    storage: str
    counts: dict[str, int]
    best: FrozenTrial | None


def tune_config(base: Config, budget: int) -> Config:
    """`base` as a trial runs it: `budget` env steps per seed, no evaluation, no plots while training."""
    return validate(dataclasses.replace(base, max_steps=budget, max_episodes=budget, eval_every=0,
                                        final_eval_episodes=0, plot_every=0.0))


def fixed_keys(set_items: Iterable[str] = (), config_file: str | Path | None = None) -> frozenset[str]:
    """The settings a user fixed (--set key=value, keys of a --config file): the search leaves them alone."""
    keys = {item.partition("=")[0].strip() for item in set_items}
    if config_file is not None:
        keys |= set(load_toml(config_file))
    return frozenset(keys - {"preset"})


def tune(base: Config, *, trials: int, out: str | Path, budget: int = 100_000, storage: str | None = None,
         study: str | None = None, jobs: int = 1, fixed: Iterable[str] = (),
         pruner: optuna.pruners.BasePruner | None = None, batch: int = 1, wandb: Wandb = False) -> TuneResult:
    """Add `trials` trials to a study that minimises the median env steps to solve over `base.seeds` seeds.

    Args:
        base: the preset and fixed settings every trial starts from (env, rule, seeds, first seed, ...).
        trials: how many trials this call adds (shared among its `jobs` processes).
        out: folder for the default SQLite study (`OUT/study.db`) and every trial's run (`OUT/trials/<study>/`).
        budget: env steps per seed; a seed unsolved by then counts as 2 x budget.
        storage: an SQLAlchemy URL (postgresql://..., sqlite:///...) or `journal:PATH`; default the SQLite file.
        study: study name; default `<env>-<preset>`. A study made for another env, preset, rule or budget is
            refused.
        jobs: worker processes on this machine, each with `base.threads` CPU threads (default 1: small networks
            gain nothing from more).
        fixed: settings held at their `base` value instead of searched (see `search_space`).
        pruner: default `default_pruner(budget)`.
        batch: trials trained side by side as one program (see `Objective`): they share the first one's
            network shape and other program settings, and search the numeric hyperparameters.
        wandb: track every trial's seeds as W&B runs, as `train` does (True or a dict of options), grouped by
            the study's name; runs kept offline are said so in one line.
    """
    for flag, value in (("--trials", trials), ("--jobs", jobs), ("--budget-steps", budget), ("--batch", batch)):
        if value < 1:
            raise ConfigError(f"{flag} {value} is not allowed: give at least 1")
    unknown = sorted(set(fixed) - set(FIELDS))
    if unknown:
        raise ConfigError(f"unknown setting {unknown[0]!r}: allowed are {', '.join(FIELDS)}")
    if study is not None:
        check_study_name(study)
    base, rule = resolve_rule(tune_config(base, budget))
    name, out = study or default_study_name(base), Path(out)
    wb, notice = None, None
    if wandb:
        require("wandb", "wandb", "--wandb")
        from .tracking import offline_notice, wandb_options

        wb = wandb_options(wandb, group=name, job_type="tune")
        notice = offline_notice(wb, out / "trials" / name / "*" / WANDB)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--out {str(out)!r} cannot be created: {e.strerror or e}") from None
    url = storage or default_storage(out)
    fixed = frozenset(fixed)
    runs = out / "trials" / name
    if notice:
        print(notice, file=sys.stderr, flush=True)
    shares = [trials // jobs + (i < trials % jobs) for i in range(min(jobs, trials))]
    if len(shares) == 1:
        _work(base, fixed, runs, url, name, trials, pruner, batch, wb)
    else:
        # Create the study here, so a bad URL or a clash is one line before any worker starts.
        open_study(open_storage(url), name, setup_of(base, rule), url=url, pruner=pruner)
        ctx = get_context("spawn")
        procs = [ctx.Process(target=_work, args=(base, fixed, runs, url, name, n, pruner, batch, wb)) for n in shares]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        if any(p.exitcode for p in procs):
            codes = ", ".join(str(p.exitcode) for p in procs)
            raise ConfigError(f"a tune worker failed (exit codes {codes}); the study keeps every finished trial")
    return summary(load(url, name), url)


def summary(study: optuna.Study, url: str = "") -> TuneResult:
    trials = study.get_trials(deepcopy=False)
    counts = {state.name.lower(): sum(t.state == state for t in trials) for state in TrialState}
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    best = min(done, key=lambda t: t.value) if done else None
    return TuneResult(study.study_name, shown(url), counts, best)


def _params_text(t: FrozenTrial) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in t.params.items())


def report(url: str, name: str | None, out: str | Path, top: int = 5) -> list[str]:
    """Lines describing the study and its best trials; saves `OUT/history.png` and `OUT/importance.png`."""
    study = load(url, name)
    a = study.user_attrs.get("setup", {})
    res = summary(study, url)
    setup = (f": {a['env']}, preset {a['preset']}, rule {a['rule']} ({a['threshold']} over {a['window']}), "
             f"budget {a['budget_steps']:,} env steps per seed") if a else " (not made by cartpole-dqn tune)"
    lines = [f"study {study.study_name} in {shown(url)}{setup}",
             "trials: " + ", ".join(f"{k} {v}" for k, v in res.counts.items() if v or k in ("complete", "pruned"))]
    done = sorted((t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE),
                  key=lambda t: t.value)
    if done:
        lines.append("best trials (median env steps to solve over seeds, unsolved = 2 x budget):")
        for t in done[:top]:
            steps = t.user_attrs.get("steps_to_solve", [])
            solved = f"solved {sum(s is not None for s in steps)}/{len(steps)}"
            lines.append(f"  #{t.number:<4} {t.value:>10,.0f}  {solved}  {_params_text(t)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lines += _figures(study, out)
    return lines


def _figures(study: optuna.Study, out: Path) -> list[str]:
    pyplot()        # matplotlib set to draw into files, before optuna's plotting imports it
    from optuna.visualization import matplotlib as ovm

    lines = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # experimental API; importance caveats on few trials
        for file, draw in (("history.png", ovm.plot_optimization_history),
                           ("importance.png", ovm.plot_param_importances)):
            try:
                ax = draw(study)
            except (ValueError, RuntimeError) as e:
                lines.append(f"{file}: not drawn ({first_line(e)})")
                continue
            fig = ax.figure
            fig.set_size_inches(8, 5)
            save_png(fig, out / file)
            lines.append(f"{file}: {out / file}")
    return lines


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(v)


def export(url: str, name: str | None, path: str | Path) -> Path:
    """Write the best trial as a config file (`train --config`, `bench --config`): its preset and every agent
    setting that differs from that preset; run settings (seeds, budgets, evaluation) are left to the command."""
    study = load(url, name)
    best = summary(study).best
    if best is None or "config" not in best.user_attrs:
        raise ConfigError(f"study {study.study_name!r} has no finished trial to export yet")
    cfg = best.user_attrs["config"]
    preset_cfg = to_dict(build(cfg["preset"]))
    lines = [f"# best trial #{best.number} of study {study.study_name}: median {best.value:,.0f} env steps to solve "
             f"over seeds {cfg['seed']}..{cfg['seed'] + cfg['seeds'] - 1} (budget {cfg['max_steps']:,})",
             f"preset = {_toml_value(cfg['preset'])}"]
    for key, value in cfg.items():
        if key in RUN or key == "preset" or value is None or value == preset_cfg.get(key):
            continue
        lines.append(f"{key} = {_toml_value(value)}")
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, "\n".join(lines) + "\n")
    except OSError as e:
        raise ConfigError(f"--export {str(path)!r} cannot be written: {e.strerror or e}") from None
    build(file=path)  # what we wrote must load
    return path
