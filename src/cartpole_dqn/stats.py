"""Statistics over seeds: medians, interquartile means, bootstrap intervals and success rates (docs/metrics.md).

They follow rliable (Agarwal et al., 2021): the interquartile mean (the mean of the middle 50% of seeds, scipy's
`trim_mean(x, 0.25)`) with a 95% percentile-bootstrap interval; with one task, the stratified bootstrap is the
bootstrap over seeds. An unsolved run counts as +infinity in medians and IQMs (never as its budget, which would
make a failure look like a slow success) and as not solved in rates. The benchmark (bench.py), a K-seed run's
summary (parts.Results), the tuner's objective (tune.py) and the scripts in benchmarks/ all compute them here.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Sequence

import numpy as np

from .config import Config, to_dict
from .rules import Rule

CONFIDENCE = 0.95
RESAMPLES = 2000

# A seed's figures (keys of its summary.json) that have statistics over seeds: the solve figures (None, never
# reached, counts as +infinity) and the final greedy score.
SOLVE_FIGURES = ("episodes_before_solve", "steps_to_solve", "seconds_to_solve", "eval_steps_to_solve",
                 "eval_seconds_to_solve")
FIGURES = (*SOLVE_FIGURES, "final_greedy_score")

Values = Sequence[float | None] | np.ndarray


def as_array(values: Values) -> np.ndarray:
    """Values as floats, with None (a run that never got there) as +infinity."""
    if isinstance(values, np.ndarray):
        return np.asarray(values, dtype=float)
    return np.array([math.inf if v is None else float(v) for v in values], dtype=float)


def median(values: Values) -> float:
    """Median with None as +infinity (unsolved runs are infinitely slow, not as slow as the budget)."""
    return float(np.median(as_array(values)))


def median_or_none(values: Values) -> float | None:
    """`median`, or None where it is infinite or there are no values (as JSON summaries write it)."""
    if not len(values):
        return None
    m = median(values)
    return None if math.isinf(m) else m


def iqm(values: Values, axis: int = -1) -> float | np.ndarray:
    """Interquartile mean: the mean of the values left after cutting floor(n/4) from each end (scipy's
    `trim_mean(x, 0.25)`, as rliable computes it). None counts as +infinity; the result is infinite only when an
    infinite value survives the cut."""
    x = np.sort(as_array(values), axis=axis)
    n = x.shape[axis]
    if n == 0:
        raise ValueError("the IQM of no values is undefined")
    cut = int(0.25 * n)
    return np.take(x, np.arange(cut, n - cut), axis=axis).mean(axis=axis)


def _quantiles(samples: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """The central `confidence` of bootstrap samples along axis 0. Interpolating between inf and inf gives nan
    (inf - inf); the quantile there is inf."""
    tail = (1.0 - confidence) / 2
    with np.errstate(invalid="ignore"):
        lo, hi = np.quantile(samples, [tail, 1.0 - tail], axis=0)
    return np.where(np.isnan(lo), math.inf, lo), np.where(np.isnan(hi), math.inf, hi)


def bootstrap_ci(values: Values, statistic: Callable[..., float | np.ndarray] = iqm,
                 confidence: float = CONFIDENCE, resamples: int = RESAMPLES, seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap interval of `statistic` over seeds: resample the seeds with replacement `resamples`
    times (all at once, as one [resamples, n] index array) and take the central `confidence` of the statistic.

    `statistic` must accept an array and an `axis`. Infinite values are allowed: a quantile between two
    infinities is infinity.
    """
    x = as_array(values)
    rng = np.random.default_rng(seed)
    samples = np.asarray(statistic(x[rng.integers(0, len(x), size=(resamples, len(x)))], axis=1), dtype=float)
    lo, hi = _quantiles(samples, confidence)
    return float(lo), float(hi)


def bootstrap_band(values: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(IQM, low, high) over seeds at each point of curves [seeds, points]: the 95% bootstrap band, every point
    resampled with the same seeds so that the band is one curve's worth of uncertainty."""
    rng = np.random.default_rng(seed)
    n = values.shape[0]
    boot = iqm(values[rng.integers(0, n, size=(RESAMPLES, n))], axis=1)      # [resamples, points]
    lo, hi = _quantiles(boot, CONFIDENCE)
    return iqm(values, axis=0), lo, hi


def success_rate(solved: Sequence[bool]) -> float:
    """Solved runs over all runs: an unsolved run counts in the denominator, never in the numerator."""
    if not len(solved):
        raise ValueError("the success rate of no runs is undefined")
    return sum(bool(s) for s in solved) / len(solved)


def _finite(v: float) -> float | None:
    return None if math.isinf(v) or math.isnan(v) else round(float(v), 4)


def describe(values: Values, seed: int = 0) -> dict[str, float | None]:
    """Median, IQM and its 95% bootstrap interval of one figure over seeds (infinity written as None in JSON)."""
    x = as_array(values)
    lo, hi = bootstrap_ci(x, seed=seed)
    return {k: _finite(v) for k, v in (("median", median(x)), ("iqm", float(iqm(x))), ("ci_low", lo),
                                        ("ci_high", hi))}


def statistics(rows: list[dict]) -> dict:
    """Every figure's median, IQM and interval over seeds, and the success rates (training rule, greedy eval)."""
    stats = {key: describe([r[key] for r in rows]) for key in FIGURES}
    stats["success_rate"] = success_rate([r["solved"] for r in rows])
    stats["eval_success_rate"] = success_rate([r["eval_steps_to_solve"] is not None for r in rows])
    return stats


def objective_value(steps_to_solve: Iterable[int | None], budget: int) -> float:
    """The tuner's objective: the median over seeds of the env steps to solve, an unsolved seed (None) counting as
    twice the budget (finite, so that Optuna can rank trials where most seeds failed)."""
    return float(np.median([2 * budget if s is None else s for s in steps_to_solve]))


def aggregate_summary(summaries: list[dict], cfg: Config, rule: Rule, interrupted: bool) -> dict:
    """A K-seed run's summary.json: every seed's figures, their medians (unsolved = infinity) and the success
    rates."""
    per_seed = [{k: v for k, v in s.items() if k != "config"} for s in summaries]
    finals = [s["final_greedy_score"] for s in summaries if s["final_greedy_score"] is not None]
    return {
        "env": cfg.env, "preset": cfg.preset, "seeds": cfg.seed_list, "rule": rule.as_dict(),
        "success_rate": success_rate([s["solved"] for s in summaries]),
        "eval_success_rate": success_rate([s["eval_steps_to_solve"] is not None for s in summaries]),
        **{f"median_{key}": median_or_none([s[key] for s in summaries]) for key in SOLVE_FIGURES},
        "median_final_greedy_score": float(np.median(finals)) if finals else None,
        "interrupted": interrupted, "per_seed": per_seed, "config": to_dict(cfg),
    }
