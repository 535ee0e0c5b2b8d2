"""Scores: the per-episode record of one seed (scores.csv), its plot (scores.png), and the solve arithmetic.

docs/metrics.md defines the figures: EBS is the smallest k with mean(returns[k : k + window]) >= threshold; steps and
seconds to solve are read at the end of episode k + window - 1; the eval figures come from the first greedy
evaluation whose mean reaches the threshold.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .files import atomic_write
from .plotting import pyplot, save_png
from .rules import Rule, reached
from .rundir import CONFIG, EVALS, PLOT, SCORES, RunDir

CSV_COLUMNS = ("episode", "return", "length", "rolling_mean", "epsilon", "mean_loss", "env_steps", "wall_seconds")
EVAL_COLUMNS = ("env_steps", "wall_seconds", "mean", "std", "min", "max")


def rolling_mean(returns: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last `window` returns at each episode (fewer at the start)."""
    r = np.asarray(returns, dtype=float)
    c = np.concatenate([[0.0], np.cumsum(r)])
    n = np.arange(1, len(r) + 1)
    lo = np.maximum(0, n - window)
    return (c[n] - c[lo]) / (n - lo)


def episodes_before_solve(returns: np.ndarray, threshold: float | None, window: int) -> int | None:
    """EBS: the smallest k with mean(returns[k:k+window]) >= threshold, or None if no window reaches it."""
    r = np.asarray(returns, dtype=float)
    if threshold is None or len(r) < window:
        return None
    c = np.concatenate([[0.0], np.cumsum(r)])
    means = (c[window:] - c[:-window]) / window
    hits = np.flatnonzero(reached(means, threshold))
    return int(hits[0]) if len(hits) else None


@dataclass
class ScoreLog:
    """One seed's training episodes and evaluations, appended to `dir/scores.csv` and `dir/eval.csv` as they come.

    Each row is written with one call and flushed, so an interrupted run leaves every finished episode on disk.
    """

    dir: Path
    rule: Rule
    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    env_steps: list[int] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)
    epsilons: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    evals: list[tuple[int, float, float, float, float, float]] = field(default_factory=list)
    solved_at: int | None = None          # index of the episode that completed the first solving window
    eval_solved_at: int | None = None     # index into evals

    def __post_init__(self) -> None:
        """Write both files afresh with the rows already held (none, unless restored from a checkpoint), then
        keep them open for appending."""
        self.dir = Path(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        rows = [",".join(CSV_COLUMNS)] + [self._row_text(self._episode_row(i)) for i in range(len(self.returns))]
        atomic_write(self.dir / SCORES, "\n".join(rows) + "\n")
        rows = [",".join(EVAL_COLUMNS)] + [self._row_text(self._eval_row(row)) for row in self.evals]
        atomic_write(self.dir / EVALS, "\n".join(rows) + "\n")
        self._csv = open(self.dir / SCORES, "a", newline="")
        self._eval_csv = open(self.dir / EVALS, "a", newline="")

    def _episode_row(self, i: int) -> tuple:
        w = self.rule.window
        mean = float(np.mean(self.returns[max(0, i + 1 - w):i + 1]))
        return (i, _num(self.returns[i]), self.lengths[i], f"{mean:.4f}", f"{self.epsilons[i]:.6f}",
                _num(self.losses[i]), self.env_steps[i], f"{self.wall[i]:.3f}")

    @staticmethod
    def _eval_row(row: tuple) -> tuple:
        return (row[0], f"{row[1]:.3f}", *(f"{v:.4f}" for v in row[2:]))

    def add_episode(self, ret: float, length: int, epsilon: float, mean_loss: float, env_steps: int,
                    wall: float, solved: bool | None = None) -> bool:
        """Record one finished episode; True if this episode completes the first solving window. `solved` is the
        training program's own verdict, taken as given (its float32 window mean decided when the seed froze);
        without it the rule is applied here."""
        self.returns.append(float(ret))
        self.lengths.append(int(length))
        self.env_steps.append(int(env_steps))
        self.wall.append(float(wall))
        self.epsilons.append(float(epsilon))
        self.losses.append(float(mean_loss))
        n, w = len(self.returns), self.rule.window
        mean = float(np.mean(self.returns[-w:]))
        self._write(self._csv, self._episode_row(n - 1))
        if solved is None:
            solved = self.rule.threshold is not None and n >= w and reached(mean, self.rule.threshold)
        just_solved = self.solved_at is None and bool(solved)
        if just_solved:
            self.solved_at = n - 1
        return just_solved

    def add_eval(self, env_steps: int, wall: float, returns: np.ndarray) -> None:
        r = np.asarray(returns, dtype=float)
        row = (int(env_steps), float(wall), float(r.mean()), float(r.std()), float(r.min()), float(r.max()))
        self.evals.append(row)
        self._write(self._eval_csv, self._eval_row(row))
        if self.eval_solved_at is None and self.rule.threshold is not None and reached(row[2], self.rule.threshold):
            self.eval_solved_at = len(self.evals) - 1

    @staticmethod
    def _row_text(row: tuple) -> str:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="").writerow(row)
        return buf.getvalue()

    @classmethod
    def _write(cls, f: io.TextIOBase, row: tuple) -> None:
        f.write(cls._row_text(row) + "\n")
        f.flush()

    # ------------------------------------------------------------------------------------------ checkpoints ---
    ARRAYS = ("returns", "lengths", "env_steps", "wall", "epsilons", "losses", "evals")

    def arrays(self) -> dict[str, np.ndarray]:
        """Everything recorded, as arrays (for a checkpoint); `from_arrays` rebuilds the log and its files."""
        return {"returns": np.array(self.returns, dtype=np.float64),
                "lengths": np.array(self.lengths, dtype=np.int64),
                "env_steps": np.array(self.env_steps, dtype=np.int64),
                "wall": np.array(self.wall, dtype=np.float64),
                "epsilons": np.array(self.epsilons, dtype=np.float64),
                "losses": np.array(self.losses, dtype=np.float64),
                "evals": np.array(self.evals, dtype=np.float64).reshape(-1, len(EVAL_COLUMNS))}

    @classmethod
    def from_arrays(cls, dir: Path, rule: Rule, arrays: dict[str, np.ndarray], solved_at: int | None,
                    eval_solved_at: int | None) -> "ScoreLog":
        """The log as `arrays` recorded it, with scores.csv and eval.csv rewritten to exactly those rows."""
        evals = [(int(e[0]), *(float(v) for v in e[1:])) for e in arrays["evals"]]
        return cls(dir, rule, returns=arrays["returns"].tolist(), lengths=arrays["lengths"].tolist(),
                   env_steps=arrays["env_steps"].tolist(), wall=arrays["wall"].tolist(),
                   epsilons=arrays["epsilons"].tolist(), losses=arrays["losses"].tolist(), evals=evals,
                   solved_at=solved_at, eval_solved_at=eval_solved_at)

    def close(self) -> None:
        self._csv.close()
        self._eval_csv.close()

    # ---------------------------------------------------------------------------------------------- figures ---
    def figures(self) -> dict[str, object]:
        """The docs/metrics.md per-run figures (None where the run did not get there)."""
        solved = self.solved_at is not None
        e = self.eval_solved_at
        return {
            "solved": solved,
            "episodes_before_solve": self.solved_at + 1 - self.rule.window if solved else None,
            "steps_to_solve": self.env_steps[self.solved_at] if solved else None,
            "seconds_to_solve": round(self.wall[self.solved_at], 3) if solved else None,
            "episodes": len(self.returns),
            "eval_steps_to_solve": self.evals[e][0] if e is not None else None,
            "eval_seconds_to_solve": round(self.evals[e][1], 3) if e is not None else None,
        }

    def plot(self, title: str) -> None:
        """Draw scores.png (atomically): returns, rolling mean, threshold, trend line and greedy evaluations."""
        plot_scores(self.dir / PLOT, np.array(self.returns), np.array(self.env_steps), self.evals,
                    self.rule, title)


def _num(x: float) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.6g}"


def plot_scores(path: Path, returns: np.ndarray, env_steps: np.ndarray, evals: list, rule: Rule, title: str) -> None:
    """The article's "solved trials overview", readable at a glance."""
    fig, ax = pyplot().subplots(figsize=(10, 5), dpi=100)
    episodes = np.arange(len(returns))
    if len(returns):
        ax.plot(episodes, returns, color="#9bb7d4", lw=1, label="score per episode")
        ax.plot(episodes, rolling_mean(returns, rule.window), color="#1f4e79", lw=2,
                label=f"mean of last {rule.window}")
    if len(returns) > 1:
        slope, intercept = np.polyfit(episodes, returns, 1)
        ax.plot(episodes, slope * episodes + intercept, "--", color="#6b8e23", lw=1.2, label="trend")
    if rule.threshold is not None:
        ax.axhline(rule.threshold, color="#c0392b", ls=":", lw=1.5, label=f"goal {rule.threshold:g}")
    if evals and len(env_steps):
        steps = np.array([e[0] for e in evals])
        at = np.minimum(np.searchsorted(env_steps, steps), len(env_steps) - 1)
        ax.plot(at, [e[2] for e in evals], "o", ms=4, color="#e67e22", label="greedy evaluation (mean)")
    _finish(fig, ax, path, "score (return)", title)


def _finish(fig, ax, path: Path, ylabel: str, title: str) -> None:
    """Label, lay out and write a figure (atomically, as PNG)."""
    ax.set_xlabel("episode")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    save_png(fig, path)


# -------------------------------------------------------------------------------------- redrawing from files ---
def read_scores(folder: Path) -> tuple[np.ndarray, np.ndarray, list]:
    """(returns, env_steps, evals) from a seed's scores.csv and eval.csv (optional); ValueError, naming the file,
    if either cannot be read or is damaged."""
    folder = Path(folder)
    rows = _rows(folder / SCORES)
    try:
        returns = np.array([float(r["return"]) for r in rows])
        steps = np.array([int(r["env_steps"]) for r in rows], dtype=np.int64)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{str(folder / SCORES)!r} is not a cartpole-dqn scores file: {e}") from None
    if not (folder / EVALS).exists():
        return returns, steps, []
    rows = _rows(folder / EVALS)
    try:
        evals = [(int(r["env_steps"]), float(r["wall_seconds"]), float(r["mean"]), float(r["std"]),
                  float(r["min"]), float(r["max"])) for r in rows]
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{str(folder / EVALS)!r} is not a cartpole-dqn evaluations file: {e}") from None
    return returns, steps, evals


def _rows(path: Path) -> list[dict[str, str]]:
    """The rows of the CSV file `path`; ValueError naming it if it cannot be read as UTF-8 text."""
    try:
        return list(csv.DictReader(path.read_text(encoding="utf-8").splitlines()))
    except OSError as e:
        raise ValueError(f"{str(path)!r} cannot be read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{str(path)!r} is not UTF-8 text (damaged?): {e}") from None


def plot_overlay(path: Path, runs: list[tuple[str, np.ndarray]], rule: Rule, title: str) -> None:
    """Several runs (or seeds) on one figure: each one's rolling mean, thin, and their median, bold."""
    fig, ax = pyplot().subplots(figsize=(10, 5), dpi=100)
    curves = [rolling_mean(r, rule.window) for _, r in runs]
    for (label, _), curve in zip(runs, curves):
        ax.plot(np.arange(len(curve)), curve, lw=1, alpha=0.6, label=label if len(runs) <= 12 else None)
    if len(curves) > 1 and max(map(len, curves)):
        n = max(map(len, curves))
        padded = np.full((len(curves), n), np.nan)
        for j, c in enumerate(curves):
            padded[j, :len(c)] = c
        # Median over the runs still going at each episode (a run that stopped early stops counting).
        ax.plot(np.arange(n), np.nanmedian(padded, axis=0), color="black", lw=2.5, label="median")
    if rule.threshold is not None:
        ax.axhline(rule.threshold, color="#c0392b", ls=":", lw=1.5, label=f"goal {rule.threshold:g}")
    _finish(fig, ax, path, f"mean of last {rule.window} returns", title)


def plot(runs: list[str | Path], out: str | Path | None = None) -> Path:
    """Redraw a run's scores.png from its files, or overlay several runs (or every seed of a K-seed run, with
    their median) on one figure. Default output: the run's own scores.png, or ./scores-overlay.png for several.
    """
    from .errors import CheckpointError
    from .files import check_output, read_json
    from .config import ConfigError, from_dict
    from .rules import resolve_rule

    if out is not None:
        check_output(out, "--out")
    curves, rules, single = [], [], None
    for run in map(Path, runs):
        if not run.is_dir():
            raise CheckpointError(f"{str(run)!r} is not a run folder" + ("" if run.exists() else
                                                                          " (it does not exist)"))
        try:
            cfg, rule = resolve_rule(from_dict(read_json(run / CONFIG)))
        except (ConfigError, TypeError, AttributeError) as e:
            raise CheckpointError(f"{str(run / CONFIG)!r} is not a cartpole-dqn configuration: {e}") from None
        folders = RunDir(run).find_seed_dirs(SCORES)
        if not folders:
            raise CheckpointError(f"{str(run)!r} holds no {SCORES}")
        for f in folders:
            try:
                returns, steps, evals = read_scores(f)
            except ValueError as e:
                raise CheckpointError(str(e)) from None
            label = run.name if f == run else f.name if len(runs) == 1 else f"{run.name}/{f.name}"
            curves.append((label, returns))
            single = (f, returns, steps, evals, cfg)
        rules.append(rule)
    if len(curves) == 1:
        f, returns, steps, evals, cfg = single
        path = Path(out) if out is not None else f / PLOT
        plot_scores(path, returns, steps, evals, rules[0], f"{cfg.env} - preset {cfg.preset} - seed {cfg.seed}")
        return path
    path = Path(out) if out is not None else (Path(runs[0]) / PLOT if len(runs) == 1
                                              else Path("scores-overlay.png"))
    title = f"{len(curves)} runs" if len(runs) > 1 else f"{Path(runs[0]).name}: {len(curves)} seeds"
    plot_overlay(path, curves, rules[0], title)
    return path
