"""Training's entry points: `train(cfg)` starts a run, `resume(out)` continues one from its checkpoint.

Both set up a `driver.Training` (the program built from the config, the seeds' state, the score logs) and hand
it to the driver loop with the parts that write what the user sees (parts.py). A task with a JAX twin (CartPole,
Acrobot, MountainCar) is stepped inside the compiled program; any other gymnasium task (LunarLander, any
Discrete-action, flat-Box id) is stepped by gymnasium, which the program calls back once per env step, and yields
the same records. A seed that solves or spends its budget freezes inside the program at that step, so its files
describe the agent at that moment.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .checkpoint import CheckpointError, load_run, restore_run
from .config import HYPER, Config, ConfigError, resolve_device, to_dict, validate
from .core import enable_compile_cache, use_threads
from .driver import Part, Training, drive
from .envs import env_sizes
from .errors import require
from .files import write_json
from .parts import Checkpoints, Evaluation, Plots, Progress, Report, Results, Scores, TensorBoard, TunerReport
from .program import build
from .rules import resolve_rule
from .rundir import CONFIG, RunDir
from .scores import ScoreLog
from .tracking import Wandb, WandB, WandbOptions, wandb_options


@dataclass
class RunResult:
    """What `train` returns: where the files went and every seed's summary (as written to summary.json)."""

    out: Path
    summaries: list[dict]
    aggregate: dict | None
    interrupted: bool

    @property
    def solved(self) -> bool:
        return all(s["solved"] for s in self.summaries)


def train(cfg: Config, out: str | Path | None = None, *, verbose: bool = True, tensorboard: bool = False,
          wandb: Wandb = False, report: Report | None = None, report_every: int = 1000,
          hypers: Sequence[Mapping[str, Any]] | None = None) -> RunResult:
    """Train `cfg.seeds` agents until each solves or its budget runs out; write scores, plots, models, summaries.

    Args:
        cfg: the complete configuration (see `config.Config`); validated again here.
        out: output folder; default `runs/<env>-<preset>-s<seed>-<time>`. A K-seed run writes `seed-<n>/` in it.
        verbose: show the progress bar and the solve lines.
        tensorboard: also write live scalars under `OUT/tb` (needs the `tensorboard` extra).
        wandb: also track every seed as a W&B run (needs the `wandb` extra): True, or a dict of
            `tracking.WandbOptions` fields (project, entity, group, name, job_type, tags, notes, mode). Its files
            go to `OUT/wandb`; without an API key the runs stay offline there, and one line says so.
        report: called every `report_every` env steps with (env steps, [K] rolling mean of each seed's training
            returns over the solve window, NaN before its first episode); returning True stops the run as an
            interrupt does, a [K] mask stops those seeds. The tuner's pruner listens here, between chunks.
        hypers: for each seed, numeric hyperparameters (`config.HYPER`) of its own in place of `cfg`'s: seeds
            that differ only in those train as one program (`tune --batch`).

    Returns:
        A RunResult with every seed's summary. Ctrl-C (SIGINT) or SIGTERM stops at the end of the current chunk
        and returns with `interrupted=True`, every file complete and a checkpoint in `OUT/checkpoint` that `resume`
        continues from.
    """
    cfg = validate(cfg)
    cfg, rule = resolve_rule(cfg)
    own = _own_hypers(cfg, hypers)
    use_threads(cfg.threads)
    env_sizes(cfg.env)             # refuse a bad environment, device or extra before creating any folder
    device = resolve_device(cfg.device)
    if tensorboard:
        require("tensorboardX", "tensorboard", "--tensorboard")
    wb = _wandb(wandb)
    run_dir = RunDir(Path(out)) if out is not None else RunDir.default(cfg)
    with run_dir.claim():
        enable_compile_cache()
        out, dirs = run_dir.path, run_dir.seed_dirs(cfg.seed_list)
        write_json(out / CONFIG, to_dict(cfg))
        with jax.default_device(device):
            program = build(cfg, rule)
            try:
                states = jax.device_put(program.init(cfg.seed_list, own or None), device)
                run = Training(program, rule, out, dirs, states, [], stopped_wall=np.zeros(cfg.seeds), hypers=own)
                run.logs = [ScoreLog(d, rule) for d in dirs]
                return _drive(run, verbose, tensorboard, wb, report, report_every)
            finally:
                program.close()


def _own_hypers(cfg: Config, hypers: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """Each seed's own numeric hyperparameters, checked: one mapping per seed, of `config.HYPER` settings only."""
    if hypers is None:
        return []
    own = [dict(h) for h in hypers]
    if len(own) != cfg.seeds:
        raise ConfigError(f"hypers gives {len(own)} seeds' hyperparameters for {cfg.seeds} seeds")
    for h in own:
        other = sorted(set(h) - HYPER)
        if other:
            raise ConfigError(f"hypers may set only the numeric hyperparameters ({', '.join(sorted(HYPER))}), "
                              f"not {other[0]!r}")
        validate(dataclasses.replace(cfg, **h))
    return own


def resume(out: str | Path, *, max_episodes: int | None = None, max_steps: int | None = None,
           verbose: bool = True, tensorboard: bool = False, wandb: Wandb = False) -> RunResult:
    """Continue the run in `out` from its checkpoint; a larger `max_episodes` or `max_steps` extends the budget
    and re-activates the unsolved seeds.

    Tasks stepped inside the program continue exactly: the result equals the run left uninterrupted, wall-clock
    aside. So do the classic-control tasks played on the host. For other host environments, whose state
    gymnasium cannot hand over, resuming is an approximation: the networks, memory, optimizer, keys and scores are
    restored, but every unfinished episode is abandoned and the environments restart on new seeds (a message says
    so). `tensorboard` and `wandb` are `train`'s."""
    if tensorboard:
        require("tensorboardX", "tensorboard", "--tensorboard")
    wb = _wandb(wandb)
    out = _run_folder(out)
    with RunDir(out).claim(resuming=True):
        run = restored(out, max_episodes=max_episodes, max_steps=max_steps, verbose=verbose)
        try:
            with jax.default_device(resolve_device(run.cfg.device)):
                return _drive(run, verbose, tensorboard, wb, None, 0)
        finally:
            run.program.close()


def _run_folder(out: str | Path) -> Path:
    """`out` as a Path, refused unless it is a folder."""
    out = Path(out)
    if not out.is_dir():
        raise CheckpointError(f"{str(out)!r} is not a run folder" + ("" if out.exists() else " (it does not exist)"))
    return out


def restored(out: str | Path, *, max_episodes: int | None = None, max_steps: int | None = None,
             verbose: bool = True) -> Training:
    """The run in `out` as its checkpoint left it, under the budgets given, ready to drive; the caller closes
    `run.program`."""
    out = _run_folder(out)
    enable_compile_cache()
    cfg, arrays, meta = load_run(out)
    budgets = {key: value for key, value in (("max_episodes", max_episodes), ("max_steps", max_steps))
               if value is not None}
    cfg = validate(dataclasses.replace(cfg, **budgets))
    cfg, rule = resolve_rule(cfg)
    use_threads(cfg.threads)
    active = _resumable(out, cfg, arrays, meta)
    device = resolve_device(cfg.device)
    with jax.default_device(device):
        program = build(cfg, rule)
        try:
            states = jax.device_put(program.init(cfg.seed_list), device)
            run = Training(program, rule, out, RunDir(out).seed_dirs(cfg.seed_list), states, [],
                           stopped_wall=np.zeros(cfg.seeds))
            try:
                exact = restore_run(run, arrays, meta)
            except (KeyError, TypeError, ValueError, IndexError) as e:
                raise CheckpointError(f"the checkpoint in {str(out)!r} is not usable: {e}") from None
            _continue_host_episodes(run, active, exact, verbose)
            run.states = run.states._replace(active=jnp.asarray(active))
            return run
        except BaseException:
            program.close()
            raise


def _resumable(out: Path, cfg: Config, arrays: dict[str, np.ndarray], meta: dict) -> np.ndarray:
    """[K] the seeds that train on under `cfg`'s budgets: unsolved, and within both; refused if none is."""
    try:
        solved, episodes, steps = arrays["state.solved"], arrays["state.episodes"], int(meta["steps"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"the checkpoint in {str(out)!r} is not usable: {e}") from None
    active = ~np.asarray(solved, bool) & (np.asarray(episodes) < cfg.max_episodes) & (steps < cfg.max_steps)
    if not active.any():
        raise ConfigError(f"nothing to resume in {str(out)!r}: every seed has solved or spent its budget "
                          f"(max_episodes={cfg.max_episodes}, max_steps={cfg.max_steps}); raise "
                          "--max-episodes or --max-steps to train the unsolved ones further")
    return active


def _continue_host_episodes(run: Training, active: np.ndarray, exact: bool, verbose: bool) -> None:
    """A host task's episodes restart where the checkpoint could not hold them, or where a frozen seed's
    environments kept stepping while it stood still (its last observation is stale)."""
    if run.program.envs is None:
        return
    if exact:
        s = run.states
        restart = active & ~np.asarray(s.active) & (np.asarray(s.stopped_at) < run.t)
    else:
        restart = np.ones(run.cfg.seeds, dtype=bool)
        if verbose:
            print(f"cartpole-dqn: {run.cfg.env}'s state cannot be saved: unfinished episodes restart on new seeds, "
                  "so this resumed run only approximates an uninterrupted one", file=sys.stderr)
    if restart.any():
        run.states = run.program.restart_episodes(run.states, restart, [run.cfg.seed, run.t])


def _wandb(wandb: Wandb) -> WandbOptions | None:
    """The W&B options asked for, checked (the package too) before any folder is created."""
    if wandb is not None and wandb is not False:
        require("wandb", "wandb", "--wandb")
    return wandb_options(wandb)


def _drive(run: Training, verbose: bool, tensorboard: bool, wandb: WandbOptions | None, report: Report | None,
           report_every: int) -> RunResult:
    """The driver loop with the parts this run asks for; the run's result (W&B's part after `Results`, whose
    summaries it sends)."""
    cfg = run.cfg
    results = Results()
    parts: list[Part] = [TensorBoard(run)] if tensorboard else []
    parts = [Scores(run), Evaluation(cfg), Checkpoints(), *([Progress(cfg.max_steps)] if verbose else []),
             Plots(cfg), *parts, *([TunerReport(report, report_every)] if report is not None else []), results,
             *([WandB(wandb, results, verbose)] if wandb is not None else [])]
    drive(run, parts)
    return RunResult(run.out, results.summaries, results.aggregate, run.interrupted)
