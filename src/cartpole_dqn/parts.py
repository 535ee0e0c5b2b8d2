"""The driver's parts: each output of a run is a small object whose hooks the loop calls between chunks.

`Scores` writes the finished episodes (scores.csv) and must come first: the others read what it logged. Then, in
the order the driver calls them: `Evaluation` (greedy episodes every eval_every env steps, eval.csv),
`Checkpoints` (when a seed solves, every save_every episodes, at the end), `Progress` (the live bar and the solve
lines), `Plots` (scores.png, redrawn every plot_every seconds), `TensorBoard`, `TunerReport` (the tuner's pruner
listens here) and `Results` (the final evaluation, models and summaries).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import checkpoint
from .checkpoint import save_model
from .config import Config, to_dict
from .driver import Chunk, Part, Training, crossed
from .envs import EVAL_SEED_BASE, FINAL_EVAL_SEED_BASE
from .errors import missing
from .evaluation import greedy_returns
from .files import write_json
from .rundir import CONFIG, MODEL, SUMMARY, RunDir
from .stats import aggregate_summary


def title(cfg: Config, seed: int) -> str:
    return f"{cfg.env} - preset {cfg.preset} - seed {seed}"


class Scores(Part):
    """Appends each chunk's finished episodes to the seeds' score logs, each seed's in the order they finished;
    notes on the chunk the seeds that solved and whether a checkpoint is due. Closes the logs' files."""

    def __init__(self, run: Training):
        self.logs = run.logs

    def on_chunk(self, run: Training, chunk: Chunk) -> None:
        r, cfg = chunk.records, run.cfg
        for j, i, e in np.argwhere(r.ended):     # step, seed, environment: each seed's episodes in order
            log = self.logs[i]
            solved = log.add_episode(r.ret[j, i, e], r.length[j, i, e], r.epsilon[j, i], r.loss[j, i, e],
                                     int(chunk.steps[j]), chunk.wall[j], solved=bool(r.solved[j, i, e]))
            if solved:
                chunk.solved.append(int(i))
            chunk.checkpoint_due |= solved or (cfg.save_every > 0 and len(log.returns) % cfg.save_every == 0)
        for j, i in np.argwhere(r.stopped):
            run.stopped_wall[i] = chunk.wall[j]

    def close(self) -> None:
        for log in self.logs:
            log.close()


class Evaluation(Part):
    """Greedy episodes of every seed's current network every `eval_every` env steps, logged (eval.csv) for the
    seeds still training or frozen at exactly this step. Evaluation n uses keys of its own, (EVAL_SEED_BASE, seed,
    n)."""

    def __init__(self, cfg: Config):
        self.every = cfg.eval_every

    def on_chunk(self, run: Training, chunk: Chunk) -> None:
        if not crossed(self.every, chunk.t0, run.t):
            return
        cfg = run.cfg
        returns = greedy_returns(run.program.net, run.states.agent.params, cfg.env, cfg.seed_list,
                                 cfg.eval_episodes, base=EVAL_SEED_BASE, number=run.t // self.every)
        now = run.seconds()
        stopped_here = np.asarray(run.states.stopped_at) == run.t
        for i in np.flatnonzero(run.active() | stopped_here):
            run.logs[i].add_eval(run.t, now, returns[i])


class Checkpoints(Part):
    """Everything the loop needs to continue, in OUT/checkpoint: when a seed solves, every save_every episodes
    of a seed, and at the end (interrupted or not)."""

    def on_chunk(self, run: Training, chunk: Chunk) -> None:
        if chunk.checkpoint_due and run.active().any():   # the last one is written at the end
            checkpoint.save_run(run)

    def on_end(self, run: Training) -> None:
        checkpoint.save_run(run)


class Progress(Part):
    """A live bar on a terminal, a plain line every 10 seconds when output is a file or a pipe; a line when a seed
    solves."""

    def __init__(self, total_steps: int):
        self.total = total_steps
        self.tty = sys.stderr.isatty()
        self.bar: Any = None
        self.last_line = 0.0
        self.shown = 0

    def on_start(self, run: Training) -> None:
        self.shown = run.t
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, initial=run.t, unit="step", dynamic_ncols=True, leave=True,
                            smoothing=0.1)

    def on_chunk(self, run: Training, chunk: Chunk) -> None:
        cfg, k = run.cfg, run.cfg.seeds
        for i in chunk.solved:
            f = run.logs[i].figures()
            who = f"seed {cfg.seed_list[i]}: " if k > 1 else ""
            self._write(f"{who}Solved: {f['episodes_before_solve']} episodes before solve ({f['episodes']} episodes, "
                        f"{f['steps_to_solve']} env steps, {f['seconds_to_solve']:.1f} s)")
        lead = int(np.argmax([len(log.returns) for log in run.logs]))
        recent = run.logs[lead].returns[-run.rule.window:]
        now = run.seconds()
        text = (f"ep {len(run.logs[lead].returns)} | mean100 {float(np.mean(recent)) if recent else 0.0:.1f} | "
                f"eps {float(chunk.records.epsilon[-1, lead]):.3f} | {run.t * k / max(now, 1e-9):,.0f} steps/s")
        if self.bar is not None:
            if run.t - self.shown >= 200 or now - self.last_line > 0.5:
                self.bar.update(run.t - self.shown)
                self.shown = run.t
                self.bar.set_postfix_str(text, refresh=False)
                self.last_line = now
        elif now - self.last_line >= 10.0:
            print(f"step {run.t:,} | {text}", file=sys.stderr, flush=True)
            self.last_line = now

    def _write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class Plots(Part):
    """scores.png of one seed in turn every `plot_every` seconds of training (0: only at the end), every seed's at
    the end."""

    def __init__(self, cfg: Config):
        self.seconds = cfg.plot_every
        self.next = math.inf
        self.turn = 0

    def on_start(self, run: Training) -> None:
        self.next = run.seconds() + self.seconds

    def on_chunk(self, run: Training, chunk: Chunk) -> None:
        now = run.seconds()
        if self.seconds and now >= self.next:
            i = self.turn % run.cfg.seeds
            run.logs[i].plot(title(run.cfg, run.cfg.seed_list[i]))
            self.turn += 1
            self.next = now + self.seconds

    def on_end(self, run: Training) -> None:
        for seed, log in zip(run.cfg.seed_list, run.logs):
            log.plot(title(run.cfg, seed))


def live_scalars(run: Training, chunk: Chunk) -> Iterator[tuple[int, int, dict[str, float]]]:
    """What a run reports live, for every live logger alike (TensorBoard, W&B): (seed index, env step, scalars)
    for each episode that ended in the chunk, in the order the seed finished them, then for each greedy
    evaluation made at its end. A NaN (no loss before learning starts) is left out."""
    r, w, k = chunk.records, run.rule.window, run.cfg.seeds
    ended = np.argwhere(r.ended)
    for n, (j, i, e) in enumerate(ended):
        returns = run.logs[i].returns
        index = len(returns) - int(np.sum(ended[n:, 1] == i))   # this episode's place in the seed's log
        steps = int(chunk.steps[j])
        scalars = {"episode/return": r.ret[j, i, e], "episode/length": r.length[j, i, e],
                   f"episode/rolling_mean_{w}": np.mean(returns[max(0, index + 1 - w):index + 1]),
                   "train/epsilon": r.epsilon[j, i], "train/loss": r.loss[j, i, e], "train/mean_q": r.q[j, i, e],
                   "train/td_error": r.td[j, i, e],
                   "speed/env_steps_per_s": steps * k / max(chunk.wall[j], 1e-9)}
        yield int(i), steps, {name: float(v) for name, v in scalars.items() if not math.isnan(float(v))}
    for i, log in enumerate(run.logs):
        if log.evals and log.evals[-1][0] > chunk.t0:          # `Evaluation` ran at this chunk's end
            steps, _, mean, std, low, high = log.evals[-1]
            yield i, int(steps), {"eval/mean_return": mean, "eval/std_return": std, "eval/min_return": low,
                                  "eval/max_return": high}


class TensorBoard(Part):
    """Live metrics for TensorBoard (tensorboardX writes the event files, no torch needed): one run per seed under
    `OUT/tb` (rundir.py), the `live_scalars` written as episodes end and evaluations are made."""

    def __init__(self, run: Training):
        try:
            from tensorboardX import SummaryWriter
        except ImportError:  # `train` checked the package; this is its import failing
            raise missing("tensorboardX", "tensorboard", "--tensorboard") from None
        self.writers = [SummaryWriter(str(d)) for d in RunDir(run.out).tensorboard_dirs(run.cfg.seed_list)]

    def on_chunk(self, run: Training, chunk: Chunk) -> None:
        for i, steps, scalars in live_scalars(run, chunk):
            for name, value in scalars.items():
                self.writers[i].add_scalar(name, value, steps)

    def close(self) -> None:
        for w in self.writers:
            w.close()


# Called every `report_every` env steps with (env steps, each seed's rolling mean); the answer stops seeds: True
# (all of them, as an interrupt does) or a [K] mask.
Report = Callable[[int, np.ndarray], "bool | np.ndarray"]


class TunerReport(Part):
    """Hands the tuner each seed's rolling mean every `every` env steps. The seeds it answers with stop: all of
    them (True) as an interrupt does, a pruned trial; some of them (a mask), a pruned trial among several trained
    side by side, whose seeds freeze as a solved seed does while the others train on."""

    def __init__(self, report: Report, every: int):
        self.report, self.every = report, max(1, every)

    def on_chunk(self, run: Training, chunk: Chunk) -> None:
        if not crossed(self.every, chunk.t0, run.t):
            return
        stop = np.broadcast_to(np.asarray(self.report(run.t, run.rolling_means()), bool), (run.cfg.seeds,))
        active = run.active()
        if stop[active].all():
            run.stop_requested = True
        elif stop[active].any():
            frozen = stop & active
            run.stopped_wall[frozen] = run.seconds()
            s = run.states
            run.states = s._replace(active=jnp.asarray(active & ~frozen),
                                    stopped_at=jnp.where(jnp.asarray(frozen), run.t, s.stopped_at))


class Results(Part):
    """At the end: the final greedy episodes (unless interrupted), then config.json, every seed's model and
    summary.json, and for K seeds the aggregate summary."""

    def __init__(self) -> None:
        self.summaries: list[dict] = []
        self.aggregate: dict | None = None

    def on_end(self, run: Training) -> None:
        cfg, k = run.cfg, run.cfg.seeds
        net, params = run.program.net, run.states.agent.params
        final = None
        if cfg.final_eval_episodes and not run.interrupted:
            final = greedy_returns(net, params, cfg.env, cfg.seed_list, cfg.final_eval_episodes,
                                   base=FINAL_EVAL_SEED_BASE, number=0)
        write_json(run.out / CONFIG, to_dict(cfg))
        params = jax.device_get(params)
        stopped_at = np.where(run.active(), run.t, np.asarray(run.states.stopped_at))
        for i, (seed, log) in enumerate(zip(cfg.seed_list, run.logs)):
            save_model(run.dirs[i] / MODEL, net, jax.tree.map(lambda a: a[i], params),
                       {"env": cfg.env, "seed": seed})
            seed_cfg = run.seed_cfg(i)
            if k > 1:
                write_json(run.dirs[i] / CONFIG, to_dict(seed_cfg))
            summary = {"env": cfg.env, "preset": cfg.preset, "seed": seed, "rule": run.rule.as_dict(),
                       **log.figures(), "env_steps": int(stopped_at[i]),
                       "wall_seconds": round(float(run.stopped_wall[i]), 3),
                       "compile_seconds": round(run.compile_seconds, 3),
                       "final_greedy_score": None if final is None else round(float(final[i].mean()), 3),
                       "interrupted": run.interrupted, "config": to_dict(seed_cfg)}
            write_json(run.dirs[i] / SUMMARY, summary)
            self.summaries.append(summary)
        if k > 1:
            self.aggregate = aggregate_summary(self.summaries, cfg, run.rule, run.interrupted)
            write_json(run.out / SUMMARY, self.aggregate)
