"""TEMPORARY (replaced by the stats module being written beside): statistics over seeds."""

from __future__ import annotations

import math

import numpy as np

from .config import Config, to_dict
from .rules import Rule


def median_or_none(values: list[float | None]) -> float | None:
    """Median with unsolved runs (None) counted as +infinity (docs/metrics.md); None if that median is infinite."""
    if not values:
        return None
    m = float(np.median([math.inf if v is None else v for v in values]))
    return None if math.isinf(m) else m


def aggregate_summary(summaries: list[dict], cfg: Config, rule: Rule, interrupted: bool) -> dict:
    """Every seed's figures, their medians (unsolved = infinity) and the success rate."""
    keys = ("episodes_before_solve", "steps_to_solve", "seconds_to_solve", "eval_steps_to_solve",
            "eval_seconds_to_solve")
    per_seed = [{k: v for k, v in s.items() if k != "config"} for s in summaries]
    finals = [s["final_greedy_score"] for s in summaries if s["final_greedy_score"] is not None]
    return {
        "env": cfg.env, "preset": cfg.preset, "seeds": cfg.seed_list, "rule": rule.as_dict(),
        "success_rate": sum(s["solved"] for s in summaries) / len(summaries),
        "eval_success_rate": sum(s["eval_steps_to_solve"] is not None for s in summaries) / len(summaries),
        **{f"median_{key}": median_or_none([s[key] for s in summaries]) for key in keys},
        "median_final_greedy_score": float(np.median(finals)) if finals else None,
        "interrupted": interrupted, "per_seed": per_seed, "config": to_dict(cfg),
    }
