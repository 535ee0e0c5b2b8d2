"""Many-seed benchmark: train N seeds, then report every seed and the statistics docs/metrics.md asks for over seeds.

`run_bench` trains the seeds (by default one process per core, each training its slice of the seeds on the seed
axis; one process holding every seed on an accelerator), reads every seed's summary and training curve back, and
writes (bench.csv and bench.json atomically: a reader sees a whole file or none):

- `bench.csv`: one row per seed (solved, EBS, steps and seconds to solve, final greedy score, eval steps and seconds
  to solve, episodes, env steps, wall seconds);
- `bench.json`: the same rows, the statistics, the configuration, the machine, the versions and the date;
- `curves.png`: rolling-window score against env steps, the IQM over seeds with a 95% bootstrap band, each seed
  faint behind it, and the threshold;
- `ebs.png`: the distribution of EBS over seeds, unsolved seeds counted beside it.

The statistics over seeds (medians, IQMs with 95% bootstrap intervals, success rates) are stats.py's.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from .config import Config, ConfigError, to_dict
from .errors import require
from .config import check_bench_arguments as check_arguments  # in config: the CLI checks without numpy
from .files import atomic_write, write_json
from .plotting import pyplot, save_png
from .rundir import SCORES, WANDB, RunDir
from .stats import FIGURES, as_array, bootstrap_band, iqm, median, statistics

# bench.csv columns, in order; every one is a key of a seed's summary.json.
COLUMNS = ("seed", "solved", "episodes_before_solve", "steps_to_solve", "seconds_to_solve", "final_greedy_score",
           "eval_steps_to_solve", "eval_seconds_to_solve", "episodes", "env_steps", "wall_seconds")


# ----------------------------------------------------------------------------------------------- machine ---
def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def machine(threads: int | None = None) -> str:
    """CPU model, cores, JAX version and backend, and the threads the timed work used: the context every timing
    needs."""
    import jax

    device = jax.devices()[0]
    where = "CPU" if device.platform == "cpu" else f"{device.platform.upper()} {device.device_kind}"
    return f"{cpu_model()}, {os.cpu_count()} cores, jax {jax.__version__} on {where}, {threads or 1} threads"


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("cartpole-dqn", "jax", "jaxlib", "optax", "gymnax", "gymnasium", "numpy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


# -------------------------------------------------------------------------------------------------- running ---
@dataclasses.dataclass
class BenchResult:
    """What `run_bench` returns: the folder, one row per seed, the statistics and the JSON written."""

    out: Path
    rows: list[dict]
    stats: dict
    report: dict


def load_bench(out: str | Path) -> BenchResult:
    """A finished benchmark read back from its folder (bench.json), to tabulate or compare it again."""
    out = Path(out)
    try:
        report = json.loads((out / "bench.json").read_text())
        return BenchResult(out, report["per_seed"], report["statistics"], report)
    except (OSError, ValueError, KeyError) as e:
        raise ConfigError(f"{str(out)!r} holds no finished benchmark (bench.json): {e}") from None


def bench_seed_dirs(result: BenchResult) -> list[Path]:
    """Every seed's run folder in a benchmark, in seed order, whether it trained in one process or several."""
    return _layout(result.out, result.report["seeds"], result.report.get("procs", 1))[2]


def _layout(out: Path, seeds: list[int], procs: int) -> tuple[list[list[int]], list[Path], list[Path]]:
    """(the seeds of each process, each process's run folder, each seed's run folder) of a benchmark in `out`."""
    parts = [[int(s) for s in p] for p in np.array_split(seeds, min(procs, len(seeds)))]
    runs = [out / "runs" / (f"seeds-{p[0]}-{p[-1]}" if len(parts) > 1 else "all") for p in parts]
    return parts, runs, [d for r, p in zip(runs, parts) for d in RunDir(r).seed_dirs(p)]


def _train_part(cfg: Config, out: Path, wandb: Any = None) -> list[dict]:
    """One process's share of the seeds (module level, so a spawned worker can import it)."""
    from .training import train

    return train(cfg, out, verbose=False, wandb=wandb).summaries


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Pass an interrupt (or a failure) on to the worker processes as SIGTERM: each ends its run at the current
    chunk with complete files and a checkpoint, instead of training on to its budget while the pool waits for it
    (a `kill` of the benchmark once left its workers running)."""
    for proc in list((getattr(pool, "_processes", None) or {}).values()):   # the pool keeps them by pid
        if proc.is_alive():
            proc.terminate()


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity where the system says, else every core)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # macOS, Windows
        return os.cpu_count() or 1


def default_procs(cfg: Config) -> int:
    """Processes a benchmark uses when none is asked for: one per usable core, at most one per seed, on the CPU
    (a compiled loop keeps one core busy, so cores add seeds nearly for free); one on an accelerator, which takes
    every seed on the seed axis of one program (several processes would each claim the device's memory)."""
    from .config import resolve_device

    if resolve_device(cfg.device).platform != "cpu":
        return 1
    return max(1, min(usable_cores(), cfg.seeds))


def run_bench(cfg: Config, out: str | Path, *, procs: int | None = None, verbose: bool = True,
              wandb: Any = False) -> BenchResult:
    """Train `cfg.seeds` seeds from `cfg.seed`, then write bench.csv, bench.json, curves.png and ebs.png in `out`.

    Args:
        cfg: the configuration of every seed (its `seeds` and `seed` pick the seed list; its `threads`, the CPU
            threads of each process, default 1: small matrices do not pay for the synchronisation, far less when
            other work shares the cores).
        out: the benchmark folder; the training runs go in `out/runs`.
        procs: processes to split the seeds over (each trains its slice on the seed axis); 1 trains every seed
            in this process. None (the default): `default_procs(cfg)`, the usable cores on the CPU (at most one per
            seed), 1 on an accelerator.
        verbose: print the table (and, for W&B runs kept offline, one line saying where).
        wandb: track every seed as a W&B run, as `train` does (True or a dict of options), grouped by the
            benchmark folder's name.
    """
    from .rules import resolve_rule
    from .tracking import offline_notice, wandb_options

    check_arguments(cfg.seeds, cfg.seed, 1 if procs is None else procs)
    if procs is None:
        procs = default_procs(cfg)
    cfg = dataclasses.replace(cfg, plot_every=0.0)
    cfg, rule = resolve_rule(cfg)
    out = Path(out)
    if wandb:
        require("wandb", "wandb", "--wandb")
    wb = wandb_options(wandb, group=out.name, name=out.name, job_type="bench")
    RunDir(out).prepare()
    if (out / "bench.json").exists():
        raise ConfigError(f"--out {str(out)!r} already holds a benchmark: choose another folder")
    started, clock = datetime.now(timezone.utc), time.perf_counter()
    seeds = cfg.seed_list
    parts, runs, dirs = _layout(out, seeds, procs)
    configs = [dataclasses.replace(cfg, seed=p[0], seeds=len(p)) for p in parts]
    notice = wb and offline_notice(wb, out / "runs" / "*" / WANDB)
    if notice and verbose:
        print(notice, file=sys.stderr, flush=True)
    if len(parts) == 1:
        summaries = _train_part(configs[0], runs[0], wb)
    else:
        with ProcessPoolExecutor(len(parts), mp_context=get_context("spawn")) as pool:
            try:
                futures = [pool.submit(_train_part, c, r, wb) for c, r in zip(configs, runs)]
                summaries = [s for f in futures for s in f.result()]
            except BaseException:
                _stop_workers(pool)
                raise
    rows = [{key: s[key] for key in COLUMNS} for s in summaries]
    stats = statistics(rows)
    report = {"date": started.isoformat(timespec="seconds"), "machine": machine(cfg.threads), "versions": versions(),
              "procs": len(parts), "env": cfg.env, "preset": cfg.preset, "seeds": seeds,
              "rule": rule.as_dict(),
              "wall_seconds": round(max(s["wall_seconds"] for s in summaries), 3),
              "compile_seconds": round(max(s["compile_seconds"] for s in summaries), 3),
              "bench_seconds": round(time.perf_counter() - clock, 3),
              "statistics": stats, "per_seed": rows, "config": to_dict(cfg)}
    write_csv(out / "bench.csv", rows)
    write_json(out / "bench.json", report)
    curves = [read_curve(d / SCORES, rule.window) for d in dirs]
    plot_curves(out / "curves.png", curves, rule.threshold, f"{cfg.env} - preset {cfg.preset} - "
                f"{len(seeds)} seeds - rule {rule.name}")
    plot_ebs(out / "ebs.png", [r["episodes_before_solve"] for r in rows], f"{cfg.env} - preset {cfg.preset} - "
             f"episodes before solve ({rule.name})")
    result = BenchResult(out, rows, stats, report)
    if verbose:
        print(table(result))
    return result


def write_csv(path: Path, rows: list[dict]) -> None:
    """bench.csv (atomically): one row per seed; a figure the run never reached is an empty cell."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        w.writerow(["" if r[k] is None else r[k] for k in COLUMNS])
    atomic_write(path, buf.getvalue())


def read_curve(path: Path, window: int) -> tuple[np.ndarray, np.ndarray]:
    """(env steps at the end of each training episode, rolling-`window` mean return there) from scores.csv."""
    from .scores import rolling_mean

    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    returns = np.array([float(r["return"]) for r in rows])
    return np.array([int(r["env_steps"]) for r in rows]), rolling_mean(returns, window)


# -------------------------------------------------------------------------------------------------- figures ---
def curves_on_grid(curves: list[tuple[np.ndarray, np.ndarray]], points: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """(grid of env steps, [seeds, points] rolling score): each seed's latest value at each grid step (NaN before
    its first episode; its last value after it stopped, which is the agent it stopped with)."""
    end = max((int(s[-1]) for s, _ in curves if len(s)), default=1)
    grid = np.linspace(0, end, points)
    values = np.full((len(curves), points), np.nan)
    for i, (steps, score) in enumerate(curves):   # figures only, after training
        at = np.searchsorted(steps, grid, side="right") - 1
        values[i] = np.where(at >= 0, score[np.maximum(at, 0)] if len(score) else np.nan, np.nan)
    return grid, values


def plot_curves(path: Path, curves: list[tuple[np.ndarray, np.ndarray]], threshold: float | None,
                title: str) -> None:
    """curves.png: each seed faint, the IQM over seeds with its 95% band, the threshold line."""
    fig, ax = pyplot().subplots(figsize=(10, 5), dpi=100)
    for steps, score in curves:
        ax.plot(steps, score, color="#9bb7d4", lw=0.8, alpha=0.5)
    grid, values = curves_on_grid(curves)
    started = ~np.isnan(values).any(axis=0)      # the IQM needs every seed to have finished an episode
    if started.any():
        mid, lo, hi = bootstrap_band(values[:, started])
        ax.fill_between(grid[started], lo, hi, color="#1f4e79", alpha=0.2, label="95% bootstrap CI")
        ax.plot(grid[started], mid, color="#1f4e79", lw=2, label=f"IQM over {len(curves)} seeds")
    if threshold is not None:
        ax.axhline(threshold, color="#c0392b", ls=":", lw=1.5, label=f"threshold {threshold:g}")
    ax.set_xlabel("env steps (per seed)")
    ax.set_ylabel("rolling mean of training returns")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    save_png(fig, path)


def plot_ebs(path: Path, ebs: list[int | None], title: str) -> None:
    """ebs.png: a histogram of EBS over the solved seeds, with the median and IQM, and how many never solved."""
    solved = np.array([e for e in ebs if e is not None], dtype=float)
    fig, ax = pyplot().subplots(figsize=(8, 4.5), dpi=100)
    if len(solved):
        ax.hist(solved, bins=min(20, max(5, len(solved))), color="#9bb7d4", edgecolor="#1f4e79")
        ax.plot(solved, np.zeros_like(solved), "|", color="#1f4e79", ms=20)
    for value, name, style in ((median(ebs), "median", "--"), (float(iqm(as_array(ebs))), "IQM", "-")):
        if math.isfinite(value):
            ax.axvline(value, color="#c0392b", ls=style, lw=1.5, label=f"{name} {value:.0f}")
    unsolved = len(ebs) - len(solved)
    ax.set_title(f"{title}\n{len(solved)} of {len(ebs)} seeds solved" + (f", {unsolved} never did" if unsolved
                                                                          else ""))
    ax.set_xlabel("episodes before solve (EBS)")
    ax.set_ylabel("seeds")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    save_png(fig, path)


# ---------------------------------------------------------------------------------------------------- table ---
def fmt(v: float | int | bool | str | None) -> str:
    """A table cell: '-' for a figure never reached, thousands separators otherwise."""
    if v is None or (isinstance(v, float) and (math.isinf(v) or math.isnan(v))):
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, str):
        return v
    return f"{v:,.1f}" if isinstance(v, float) else f"{v:,}"


def table(result: BenchResult) -> str:
    """Every seed, then the median, the IQM with its 95% interval, and the success rates."""
    rep, stats = result.report, result.stats
    heads = ("seed", "solved", "EBS", "steps", "seconds", "final greedy", "eval steps", "eval s")
    keys = ("seed", "solved", *FIGURES[:3], "final_greedy_score", *FIGURES[3:5])
    lines = [f"# bench: preset {rep['preset']}, env {rep['env']}, rule {rep['rule']['name']} "
             f"(threshold {rep['rule']['threshold']}, window {rep['rule']['window']}), seeds {_span(rep['seeds'])}",
             f"# {rep['date']}; {rep['machine']}; {rep['procs']} process(es); training {rep['wall_seconds']:,.1f} s "
             f"(compiling {rep.get('compile_seconds', 0):,.1f} s of it), whole bench "
             f"{rep.get('bench_seconds', rep['wall_seconds']):,.1f} s",
             " | ".join(f"{h:>12}" for h in heads)]
    for r in result.rows:
        lines.append(" | ".join(f"{fmt(r[k]):>12}" for k in keys))
    n = len(result.rows)
    lines.append(" | ".join(f"{v:>12}" for v in ["median", f"{sum(r['solved'] for r in result.rows)}/{n}",
                                                  *(fmt(stats[k]["median"]) for k in keys[2:])]))
    lines.append(" | ".join(f"{v:>12}" for v in ["IQM", "", *(fmt(stats[k]["iqm"]) for k in keys[2:])]))
    lines.append(" | ".join(f"{v:>12}" for v in ["95% CI", "", *(_interval(stats[k]) for k in keys[2:])]))
    lines.append(f"# success rate {stats['success_rate']:.0%} (training rule), {stats['eval_success_rate']:.0%} "
                 "(greedy evaluation); '-' = never reached (counted as infinity in medians and IQMs)")
    return "\n".join(lines)


def _interval(s: dict) -> str:
    lo, hi = s["ci_low"], s["ci_high"]
    return f"[{fmt(lo)}, {fmt(hi)}]" if lo is not None or hi is not None else "-"


def _span(seeds: list[int]) -> str:
    return f"{seeds[0]}-{seeds[-1]}" if len(seeds) > 1 and seeds == list(range(seeds[0], seeds[-1] + 1)) \
        else ", ".join(map(str, seeds))

