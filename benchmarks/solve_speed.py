"""How fast does a preset solve? Trains seeds 0-9 (one process, on the seed axis) and prints METRICS.md figures.

    python benchmarks/solve_speed.py --preset default --rule v1
    python benchmarks/solve_speed.py --preset classic --rule article --seeds 10

Prints every seed's EBS, steps and seconds to solve, eval steps and seconds to solve and final greedy score, then
the medians (unsolved = infinity) and the success rate, with the machine and the date. It measures; it asserts
nothing.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import tempfile
from datetime import datetime, timezone

from cartpole_dqn import build, train
from cartpole_dqn.bench import fmt, machine
from cartpole_dqn.config import parse_value
from cartpole_dqn.rules import RULES
from cartpole_dqn.rundir import SCORES, RunDir
from cartpole_dqn.scores import episodes_before_solve
from cartpole_dqn.stats import median as median_inf


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="default")
    p.add_argument("--rule", default=None)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--seed-start", type=int, default=0)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--max-episodes", type=int, default=None)
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--out", default=None, help="keep the run folders here (default: a temporary folder)")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.add_argument("--also", default=None, metavar="RULE",
                   help="also report a lower rule on the same env (e.g. article during a v1 run): its window is "
                        "reached first, and training up to it is the same run, so its figures come from the scores")
    args = p.parse_args()

    overrides = {"seeds": args.seeds, "seed": args.seed_start, "plot_every": 0.0}
    if args.rule:
        overrides["rule"] = args.rule
    if args.max_steps:
        overrides["max_steps"] = args.max_steps
    if args.max_episodes:
        overrides["max_episodes"] = args.max_episodes
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = parse_value(key, value)
    cfg = build(args.preset, overrides=overrides)
    out = args.out or tempfile.mkdtemp(prefix="solve-speed-")
    started = datetime.now(timezone.utc)
    result = train(cfg, os.path.join(out, f"{cfg.preset}-{args.rule or 'own'}"), verbose=False)

    print(f"# solve_speed: preset {cfg.preset}, env {cfg.env}, rule {result.summaries[0]['rule']}")
    print(f"# seeds {cfg.seed_list}; {started:%Y-%m-%d %H:%M} UTC; {machine()}")
    print(f"# {args.seeds} seeds trained together in one process; wall-clock figures are per run, all seeds at once")
    cols = ("seed", "solved", "EBS", "steps", "seconds", "eval steps", "eval s", "final greedy", "episodes")
    print(" | ".join(f"{c:>12}" for c in cols))
    keys = ("episodes_before_solve", "steps_to_solve", "seconds_to_solve", "eval_steps_to_solve",
            "eval_seconds_to_solve", "final_greedy_score")
    for s in result.summaries:
        row = [s["seed"], "yes" if s["solved"] else "no", *(s[k] for k in keys), s["episodes"]]
        print(" | ".join(f"{fmt(v):>12}" for v in row))
    # Unsolved runs count as infinity (METRICS.md); an infinite median is written as '-' and as null in JSON.
    medians = {k: median_inf([s[k] for s in result.summaries]) for k in keys}
    medians = {k: None if math.isinf(m) else m for k, m in medians.items()}
    solved = sum(s["solved"] for s in result.summaries)
    eval_solved = sum(s["eval_steps_to_solve"] is not None for s in result.summaries)
    print(" | ".join(f"{fmt(v):>12}" for v in ["median", f"{solved}/{len(result.summaries)}",
                                                 *medians.values(), ""]))
    print(f"# success rate {solved / len(result.summaries):.0%} (training rule), "
          f"{eval_solved / len(result.summaries):.0%} (greedy evaluation); total wall "
          f"{max(s['wall_seconds'] for s in result.summaries):.0f} s")
    also = _also(args.also, result, cfg) if args.also else None
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"date": started.isoformat(), "machine": machine(), "summaries": result.summaries,
                       "medians": medians, "solved": solved, "eval_solved": eval_solved, "also": also}, f, indent=2)


def _also(name: str, result, cfg) -> list[dict]:
    """METRICS.md figures of another rule, read from the training scores of this run."""
    rule = RULES[name]
    if rule.env != cfg.env:
        raise SystemExit(f"--also {name} is defined on {rule.env}, this run is on {cfg.env}")
    dirs = RunDir(result.out).seed_dirs(cfg.seed_list)
    rows = []
    for seed, d in zip(cfg.seed_list, dirs):
        scores = list(csv.DictReader(open(d / SCORES)))
        ebs = episodes_before_solve([float(r["return"]) for r in scores], rule.threshold, rule.window)
        end = scores[ebs + rule.window - 1] if ebs is not None else None
        rows.append({"seed": seed, "solved": ebs is not None, "episodes_before_solve": ebs,
                     "steps_to_solve": int(end["env_steps"]) if end else None,
                     "seconds_to_solve": float(end["wall_seconds"]) if end else None})
    print(f"# rule {name} (threshold {rule.threshold:g}, window {rule.window}) on the same training episodes:")
    print(" | ".join(f"{c:>12}" for c in ("seed", "solved", "EBS", "steps", "seconds")))
    for r in rows:
        print(" | ".join(f"{fmt(v):>12}" for v in (r["seed"], "yes" if r["solved"] else "no",
                                                   r["episodes_before_solve"], r["steps_to_solve"],
                                                   r["seconds_to_solve"])))
    keys = ("episodes_before_solve", "steps_to_solve", "seconds_to_solve")
    print(" | ".join(f"{fmt(v):>12}" for v in ["median", f"{sum(r['solved'] for r in rows)}/{len(rows)}",
                                                 *(median_inf([r[k] for r in rows]) for k in keys)]))
    return rows


if __name__ == "__main__":
    sys.exit(main())
