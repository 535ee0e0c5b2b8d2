"""Hyperparameter search with Optuna: a TPE sampler, a median pruner fed by the rolling mean, shared storage.

Each trial trains K seeds at once on the seed axis with the hyperparameters the sampler proposes and scores them by
the median over seeds of the env steps to solve (docs/metrics.md), an unsolved seed counting as twice the step budget;
lower is better. While a trial trains, the median over seeds of the rolling mean of training returns is reported
to Optuna every `report_every` env steps, negated so that lower is better there too, and a trial that falls below
the median of earlier trials at the same step is stopped (pruned).

The study lives in storage that many processes can share: an SQLite file by default (`OUT/study.db`, nothing to
start), a PostgreSQL (or any SQLAlchemy) URL, or an Optuna journal file (`journal:PATH`). Running the same command
on several machines against one PostgreSQL study adds every machine's trials to it; `jobs` runs several worker
processes on this machine. The study records the environment, preset, rule and budget it was made for, and refuses
a run that asks for others. A worker that dies mid-trial leaves that trial RUNNING; the next worker on the same
host marks it FAIL at once (its process is gone), and Optuna's heartbeat marks it FAIL from any host of an SQL
storage after `GRACE_SECONDS`.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import time
import warnings
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import optuna
from optuna.trial import FrozenTrial, Trial, TrialState

from .config import FIELDS, Config, ConfigError, build, load_toml, to_dict, validate
from .rules import Rule, resolve_rule
from .stats import objective_value

HEARTBEAT_SECONDS = 30      # a running trial of an SQL storage says it is alive this often
GRACE_SECONDS = 120         # ... and is marked failed by the next worker this long after its last heartbeat
STUDY_FILE = "study.db"
# Settings that describe the run rather than the agent: never searched, never exported.
RUN_KEYS = ("seed", "seeds", "max_episodes", "max_steps", "eval_every", "eval_episodes", "final_eval_episodes",
            "save_every", "plot_every", "device", "threads")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


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


# ----------------------------------------------------------------------------------------------- storage ---
def default_storage(out: Path) -> str:
    return f"sqlite:///{(Path(out) / STUDY_FILE).resolve()}"


def shown(url: str) -> str:
    """The storage URL as it may be printed: any password hidden."""
    if url.startswith("journal:"):
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0].strip() if text else type(e).__name__


def _with_driver(url: str) -> str:
    """A plain postgresql:// URL with the psycopg2 driver when that is the one installed (the `tune` extra's):
    SQLAlchemy 2.1 would otherwise ask for psycopg 3."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme in ("postgresql", "postgres"):
        import importlib.util

        if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
            return f"postgresql+psycopg2://{rest}"
    return url


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """Optuna storage for `url`: `journal:PATH` is a journal file, anything else an SQLAlchemy URL (sqlite:///...,
    postgresql://user:pass@host:port/db, ...). A malformed or unreachable storage is a ConfigError of one line."""
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        path = url[len("journal:"):].removeprefix("//")
        try:
            return optuna.storages.JournalStorage(JournalFileBackend(path))
        except OSError as e:
            raise ConfigError(f"cannot open storage {url!r}: {e.strerror or e}") from None
    import sqlalchemy.exc

    connect_args: dict[str, Any] = {}
    if url.startswith("sqlite"):
        connect_args["timeout"] = 60          # several workers write one file: wait for the lock, do not fail
    elif url.startswith("postgres"):
        connect_args["connect_timeout"] = 10  # an unreachable host is an error in seconds, not minutes
    try:
        for attempt in range(3):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    return optuna.storages.RDBStorage(
                        _with_driver(url), engine_kwargs={"connect_args": connect_args, "pool_pre_ping": True},
                        heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS)
            except sqlalchemy.exc.SQLAlchemyError as e:
                # Workers starting together on an empty database race to create Optuna's tables; the loser gets
                # an IntegrityError or "already exists" (PostgreSQL, SQLite) and finds them made on its next try.
                racing = isinstance(e, sqlalchemy.exc.IntegrityError) or "already exists" in str(e)
                if not racing or attempt == 2:
                    raise
                time.sleep(1.0 + attempt)
        raise AssertionError("unreachable")
    except ImportError as e:
        raise ConfigError(f"storage {shown(url)!r} needs a driver that is not installed "
                          f"({_first_line(e.__cause__ or e)}): pip install 'cartpole-dqn[tune]'") from None
    except (sqlalchemy.exc.SQLAlchemyError, ValueError, TypeError) as e:
        raise ConfigError(f"cannot open storage {shown(url)!r}: {_first_line(e)}") from None


# ------------------------------------------------------------------------------------------------- study ---
def setup_of(cfg: Config, rule: Rule) -> dict[str, Any]:
    """What a study is for (stored as its user attributes): runs that differ here cannot share a study."""
    return {"env": cfg.env, "preset": cfg.preset, "rule": rule.name, "threshold": rule.threshold,
            "window": rule.window, "budget_steps": cfg.max_steps}


def default_study_name(cfg: Config) -> str:
    return f"{cfg.env}-{cfg.preset}"


def _sampler() -> optuna.samplers.BaseSampler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # constant_liar: parallel workers see each other's running trials and spread out.
        return optuna.samplers.TPESampler(n_startup_trials=5, constant_liar=True)


def default_pruner(budget: int) -> optuna.pruners.BasePruner:
    """Stop a trial whose rolling mean is below the median of earlier trials at the same step, once 5 trials
    have finished and a fifth of the budget is spent."""
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=budget // 5)


def open_study(storage: optuna.storages.BaseStorage, name: str, setup: dict[str, Any], *,
               url: str = "", pruner: optuna.pruners.BasePruner | None = None) -> optuna.Study:
    """Create the study or join it; refuse one made for another environment, preset, rule or budget.

    The setup is one user attribute written in one go, so a worker joining while another creates the study sees
    all of it or none (and then writes the same)."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "created" / "using an existing study" lines
    try:
        study = optuna.create_study(storage=storage, study_name=name, direction="minimize", sampler=_sampler(),
                                    pruner=pruner or default_pruner(setup["budget_steps"]), load_if_exists=True)
    finally:
        optuna.logging.set_verbosity(verbosity)
    theirs = study.user_attrs.get("setup")
    if study.direction != optuna.study.StudyDirection.MINIMIZE or (theirs is None and study.user_attrs):
        raise ConfigError(f"study {name!r} in {shown(url)!r} was not made by cartpole-dqn tune: "
                          "pick another --study name")
    if theirs is None:
        study.set_user_attr("setup", setup)
        return study
    for key, value in setup.items():
        if theirs.get(key) != value:
            what = "for " if key == "env" else f"with {key}="
            raise ConfigError(f"study {name!r} in {shown(url)!r} exists {what}{theirs.get(key)}; this run asks "
                              f"{value}: pick another --study name")
    return study


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_dead_trials(study: optuna.Study, storage: optuna.storages.BaseStorage) -> list[int]:
    """Mark FAIL every RUNNING trial whose worker ran on this host and has died (killed mid-trial); the numbers.

    Optuna's heartbeat does the same from any host, but only after its grace period; this needs no waiting."""
    host, failed = socket.gethostname(), []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.user_attrs.get("worker") or {}
        if worker.get("host") == host and isinstance(worker.get("pid"), int) and not _alive(worker["pid"]):
            try:
                # FrozenTrial has no public id; the storage API takes it (as Optuna's fail_stale_trials does).
                storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
                failed.append(t.number)
            except (RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
                pass  # another worker got there first
    return failed


# --------------------------------------------------------------------------------------------- objective ---
class Objective:
    """Train one trial's K seeds and return the median steps to solve; prune on the reported rolling mean."""

    def __init__(self, base: Config, fixed: frozenset[str], runs: Path):
        self.base, self.fixed, self.runs = base, fixed, runs
        self.budget = base.max_steps
        self.report_every = max(100, self.budget // 50)

    def __call__(self, trial: Trial) -> float:
        from .training import train

        trial.set_user_attr("worker", {"host": socket.gethostname(), "pid": os.getpid()})
        cfg = validate(dataclasses.replace(self.base, **search_space(trial, self.base, self.fixed)))
        trial.set_user_attr("config", to_dict(cfg))
        pruned_at: list[int] = []

        def report(steps: int, means: np.ndarray) -> bool:
            if np.isnan(means).all():
                return False
            trial.report(-float(np.nanmedian(means)), steps)
            if trial.should_prune():
                pruned_at.append(steps)
                return True
            return False

        out = self.runs / f"trial-{trial.number}"
        if out.exists():  # the same study number from another storage that shared this --out
            out = self.runs / f"trial-{trial.number}-{socket.gethostname()}-{os.getpid()}"
        result = train(cfg, out, verbose=False, report=report, report_every=self.report_every)
        shutil.rmtree(out / "checkpoint", ignore_errors=True)  # megabytes of replay memory per trial
        steps = [s["steps_to_solve"] for s in result.summaries]
        trial.set_user_attr("steps_to_solve", steps)
        trial.set_user_attr("solved", sum(s is not None for s in steps))
        trial.set_user_attr("wall_seconds", max(s["wall_seconds"] for s in result.summaries))
        if pruned_at:
            raise optuna.TrialPruned(f"rolling mean below the median at step {pruned_at[0]}")
        if result.interrupted:
            raise KeyboardInterrupt  # Ctrl-C or SIGTERM: Optuna marks the trial failed, the command stops
        return objective_value(steps, self.budget)


def _work(base: Config, fixed: frozenset[str], runs: Path, url: str, name: str, trials: int,
          pruner: optuna.pruners.BasePruner | None) -> None:
    """One worker: join the study and run `trials` trials (module level, so a spawned process can import it)."""
    storage = open_storage(url)
    _, rule = resolve_rule(base)
    study = open_study(storage, name, setup_of(base, rule), url=url, pruner=pruner)
    fail_dead_trials(study, storage)
    study.optimize(Objective(base, fixed, runs), n_trials=trials)


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
         pruner: optuna.pruners.BasePruner | None = None) -> TuneResult:
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
    """
    for flag, value in (("--trials", trials), ("--jobs", jobs), ("--budget-steps", budget)):
        if value < 1:
            raise ConfigError(f"{flag} {value} is not allowed: give at least 1")
    unknown = sorted(set(fixed) - set(FIELDS))
    if unknown:
        raise ConfigError(f"unknown setting {unknown[0]!r}: allowed are {', '.join(FIELDS)}")
    base, rule = resolve_rule(tune_config(base, budget))
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--out {str(out)!r} cannot be created: {e.strerror or e}") from None
    url = storage or default_storage(out)
    name = study or default_study_name(base)
    fixed = frozenset(fixed)
    runs = out / "trials" / name
    shares = [trials // jobs + (i < trials % jobs) for i in range(min(jobs, trials))]
    if len(shares) == 1:
        _work(base, fixed, runs, url, name, trials, pruner)
    else:
        # Create the study here, so a bad URL or a clash is one line before any worker starts.
        open_study(open_storage(url), name, setup_of(base, rule), url=url, pruner=pruner)
        ctx = get_context("spawn")
        procs = [ctx.Process(target=_work, args=(base, fixed, runs, url, name, n, pruner)) for n in shares]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        if any(p.exitcode for p in procs):
            codes = ", ".join(str(p.exitcode) for p in procs)
            raise ConfigError(f"a tune worker failed (exit codes {codes}); the study keeps every finished trial")
    return summary(load(url, name), url)


def load(url: str, name: str | None) -> optuna.Study:
    """An existing study; with no name, the only study in the storage."""
    storage = open_storage(url)
    names = optuna.get_all_study_names(storage)
    if name is None:
        if len(names) != 1:
            listed = f" ({', '.join(names)})" if names else ""
            raise ConfigError(f"{shown(url)!r} holds {len(names)} studies{listed}: name one with --study")
        name = names[0]
    if name not in names:
        raise ConfigError(f"no study {name!r} in {shown(url)!r}: there are {', '.join(names) or 'none'}")
    return optuna.load_study(study_name=name, storage=storage, sampler=_sampler())


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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    lines = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # experimental API; importance caveats on few trials
        for file, draw in (("history.png", ovm.plot_optimization_history),
                           ("importance.png", ovm.plot_param_importances)):
            try:
                ax = draw(study)
            except (ValueError, RuntimeError) as e:
                lines.append(f"{file}: not drawn ({_first_line(e)})")
                continue
            fig = ax.figure
            fig.set_size_inches(8, 5)
            fig.tight_layout()
            fig.savefig(out / file)
            plt.close(fig)
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
        if key in RUN_KEYS or key == "preset" or value is None or value == preset_cfg.get(key):
            continue
        lines.append(f"{key} = {_toml_value(value)}")
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
    except OSError as e:
        raise ConfigError(f"--export {str(path)!r} cannot be written: {e.strerror or e}") from None
    build(file=path)  # what we wrote must load
    return path
