"""How fast is the training loop? Env steps per second for K = 1 and K = 16 seeds, and the seed scaling ratio.

    python benchmarks/throughput.py                      # default preset, K = 1 and 16, 3 repeats
    python benchmarks/throughput.py --seeds 1 4 16 --steps 5000 --repeats 5 --threads 1 2

Each measurement trains the preset with evaluation off (`eval_every=0`, `final_eval_episodes=0`), replay ratio 1,
`learning_starts` small so gradient updates dominate, and a solve threshold no run can reach, so every seed runs the
same fixed per-seed step budget. The time is the training loop's own wall clock (setup and file writing excluded),
env steps/s counts all seeds together, and seed scaling is wall(K) / wall(1) on the same budget (METRICS.md). The
machine is noisy, so each figure is the median of `--repeats` runs, interleaved so drift hits every K alike. It
measures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from cartpole_dqn import build, train
from cartpole_dqn.bench import machine
from cartpole_dqn.config import parse_value


def measure(preset: str, seeds: int, steps: int, learning_starts: int, threads: int, overrides: dict,
            out: Path) -> float:
    """Wall seconds of the training loop for `seeds` seeds x `steps` env steps each on `threads` torch threads."""
    cfg = build(preset, overrides={
        "seeds": seeds, "max_steps": steps, "max_episodes": 1_000_000, "learning_starts": learning_starts,
        "replay_ratio": 1.0, "eval_every": 0, "final_eval_episodes": 0, "plot_every": 0.0,
        "solve_score": 1e9, "threads": threads, **overrides})
    result = train(cfg, out, verbose=False)
    return max(s["wall_seconds"] for s in result.summaries)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="default")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 16], help="values of K to measure (first = base)")
    p.add_argument("--steps", type=int, default=5000, help="env steps per seed")
    p.add_argument("--learning-starts", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, nargs="+", default=[1],
                   help="torch intra-op thread counts to measure (the config's `threads`)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args()
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = parse_value(key, value)

    started = datetime.now(timezone.utc)
    print(f"# throughput: preset {args.preset}, replay ratio 1, learning_starts {args.learning_starts}, "
          f"{args.steps:,} env steps per seed, eval off, median of {args.repeats}")
    print(f"# seeds 0..K-1; {started:%Y-%m-%d %H:%M} UTC; {machine(args.threads[0])}")
    if overrides:
        print(f"# overrides: {overrides}")
    with tempfile.TemporaryDirectory(prefix="throughput-") as tmp:
        for threads in args.threads:
            walls: dict[int, list[float]] = {k: [] for k in args.seeds}
            for r in range(args.repeats):
                for k in args.seeds:
                    out = Path(tmp) / f"t{threads}-k{k}-r{r}"
                    walls[k].append(measure(args.preset, k, args.steps, args.learning_starts, threads, overrides,
                                          out))
            base = statistics.median(walls[args.seeds[0]])
            print(f"\n## torch threads {threads}")
            print(f"{'K':>4} | {'median wall s':>13} | {'env steps/s (all seeds)':>23} | {'per seed':>9} | "
                  f"{'scaling':>7} | runs (s)")
            for k in args.seeds:
                wall = statistics.median(walls[k])
                print(f"{k:>4} | {wall:>13.2f} | {k * args.steps / wall:>23,.0f} | {args.steps / wall:>9,.0f} | "
                      f"{wall / base:>7.2f} | {', '.join(f'{w:.2f}' for w in walls[k])}")


if __name__ == "__main__":
    sys.exit(main())
