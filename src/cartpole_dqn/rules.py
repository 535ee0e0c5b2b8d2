"""Solve rules: when a seed has solved its task (docs/metrics.md), and the one tolerance every verdict uses.

A rule is a threshold on the mean training return over `window` consecutive episodes. The compiled loop decides
in float32 (core/loop.py), the score log in float64 (scores.py); both ask `reached`, so they agree on every window.
This module imports nothing heavy (the core imports it; gymnasium only when a rule is read from an env's spec).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .config import Config
from .errors import ConfigError


@dataclass(frozen=True)
class Rule:
    """A solve rule: the mean training return over `window` consecutive episodes that counts as solved."""

    name: str
    env: str
    threshold: float | None
    window: int

    def as_dict(self) -> dict[str, Any]:
        """The rule as summaries and benchmarks record it."""
        return {"name": self.name, "threshold": self.threshold, "window": self.window}


# docs/metrics.md: `article` is what the article's code ran (CartPole-v1 with the v0 threshold).
RULES: dict[str, Rule] = {
    "article": Rule("article", "CartPole-v1", 195.0, 100),
    "v0": Rule("v0", "CartPole-v0", 195.0, 100),
    "v1": Rule("v1", "CartPole-v1", 475.0, 100),
}


def tolerance(threshold: float) -> float:
    """How far below `threshold` a window's mean may sit and still count: a float32 sum of a window can be off by
    an ulp or two, and a window exactly at the threshold must count whichever precision adds it up."""
    return 1e-5 * max(1.0, abs(threshold))


def reached(mean: Any, threshold: float) -> Any:
    """Whether a window's mean return reaches `threshold`: a bool for a float, an array of them for a numpy or
    JAX array (inside a compiled program too)."""
    return mean >= threshold - tolerance(threshold)


def settle_env(cfg: Config, env_given: bool) -> Config:
    """`cfg` on the environment of its rule (if it has one). An env that was given (a flag, --set, a config file or
    a preset) must be the rule's, or it is a ConfigError naming both; one that was not given gives way."""
    if cfg.rule is None:
        return cfg
    rule = RULES[cfg.rule]
    if env_given and cfg.env != rule.env:
        raise ConfigError(f"--env {cfg.env} conflicts with --rule {cfg.rule}, which is defined on {rule.env}")
    return dataclasses.replace(cfg, env=rule.env)


def resolve_rule(cfg: Config) -> tuple[Config, Rule]:
    """Settle the environment and the solve rule a config asks for.

    `--rule` sets the environment; an explicit `solve_score` overrides the threshold. With no rule, the classic
    preset on CartPole-v1 uses `article` and everything else the environment spec's `reward_threshold`. `build`
    knows whether an env was given; a Config made directly does not, so here its default env gives way.
    """
    cfg = settle_env(cfg, env_given=cfg.env != Config.env)
    if cfg.rule is not None:
        rule = RULES[cfg.rule]
    elif cfg.preset == "classic" and cfg.env == "CartPole-v1":
        rule = RULES["article"]
    else:
        from .envs import env_spec  # gymnasium: only here, so that the core and the CLI import this module cheaply

        rule = Rule("spec", cfg.env, env_spec(cfg.env).reward_threshold, 100)
    if cfg.solve_score is not None:
        rule = Rule("custom", cfg.env, cfg.solve_score, cfg.solve_window)
    elif cfg.solve_window != rule.window:
        rule = Rule("custom", cfg.env, rule.threshold, cfg.solve_window)
    return cfg, rule
