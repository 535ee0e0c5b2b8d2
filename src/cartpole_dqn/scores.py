"""Scores: the per-episode record of one seed (scores.csv), its plot (scores.png), and the solve arithmetic.

METRICS.md defines the figures: EBS is the smallest k with mean(returns[k : k + window]) >= threshold; steps and
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

from .checkpoint import atomic_write
from .envs import Rule

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
    # Cumulative sums can be off by an ulp; a window exactly at the threshold must count.
    hits = np.flatnonzero(means >= threshold - 1e-9 * max(1.0, abs(threshold)))
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
    evals: list[tuple[int, float, float, float, float, float]] = field(default_factory=list)
    solved_at: int | None = None          # index of the episode that completed the first solving window
    eval_solved_at: int | None = None     # index into evals

    def __post_init__(self) -> None:
        self.dir = Path(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._csv = open(self.dir / "scores.csv", "w", newline="")
        self._csv.write(",".join(CSV_COLUMNS) + "\n")
        self._csv.flush()
        self._eval_csv = open(self.dir / "eval.csv", "w", newline="")
        self._eval_csv.write(",".join(EVAL_COLUMNS) + "\n")
        self._eval_csv.flush()

    def add_episode(self, ret: float, length: int, epsilon: float, mean_loss: float, env_steps: int,
                    wall: float) -> bool:
        """Record one finished episode; True if this episode completes the first solving window."""
        self.returns.append(float(ret))
        self.lengths.append(int(length))
        self.env_steps.append(int(env_steps))
        self.wall.append(float(wall))
        n, w = len(self.returns), self.rule.window
        mean = float(np.mean(self.returns[-w:]))
        self._write(self._csv, (n - 1, _num(ret), length, f"{mean:.4f}", f"{epsilon:.6f}", _num(mean_loss),
                                env_steps, f"{wall:.3f}"))
        just_solved = (self.solved_at is None and self.rule.threshold is not None and n >= w
                       and mean >= self.rule.threshold - 1e-9 * max(1.0, abs(self.rule.threshold)))
        if just_solved:
            self.solved_at = n - 1
        return just_solved

    def add_eval(self, env_steps: int, wall: float, returns: np.ndarray) -> None:
        r = np.asarray(returns, dtype=float)
        row = (int(env_steps), float(wall), float(r.mean()), float(r.std()), float(r.min()), float(r.max()))
        self.evals.append(row)
        self._write(self._eval_csv, (row[0], f"{row[1]:.3f}", *(f"{v:.4f}" for v in row[2:])))
        if self.eval_solved_at is None and self.rule.threshold is not None and row[2] >= self.rule.threshold:
            self.eval_solved_at = len(self.evals) - 1

    @staticmethod
    def _write(f: io.TextIOBase, row: tuple) -> None:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(row)
        f.write(buf.getvalue())
        f.flush()

    def close(self) -> None:
        self._csv.close()
        self._eval_csv.close()

    # ---------------------------------------------------------------------------------------------- figures ---
    def figures(self) -> dict[str, object]:
        """The METRICS.md per-run figures (None where the run did not get there)."""
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
        plot_scores(self.dir / "scores.png", np.array(self.returns), np.array(self.env_steps), self.evals,
                    self.rule, title)


def _num(x: float) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.6g}"


def plot_scores(path: Path, returns: np.ndarray, env_steps: np.ndarray, evals: list, rule: Rule, title: str) -> None:
    """The article's "solved trials overview", readable at a glance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5), dpi=100)
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
    ax.set_xlabel("episode")
    ax.set_ylabel("score (return)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write(path, buf.getvalue())
