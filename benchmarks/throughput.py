"""How fast is the training loop? Env steps per second for K = 1 and K = 16 seeds, and the seed scaling ratio.

    python benchmarks/throughput.py                      # default preset, K = 1 and 16, 3 repeats
    python benchmarks/throughput.py --seeds 1 --steps 20000 --baseline /tmp/wt-torch   # against older code

With `--baseline DIR` every measurement is also made with the cartpole-dqn in `DIR/src` (a `git worktree` of an
older commit, for instance the last PyTorch one), in a subprocess, interleaved with this tree's runs so that the
machine's drift hits both alike, and the ratio of the two is printed: a same-session speed claim.

Each measurement trains the preset with evaluation off (`eval_every=0`, `final_eval_episodes=0`), replay ratio 1,
`learning_starts` small so gradient updates dominate, and a solve threshold no run can reach, so every seed runs the
same fixed per-seed step budget. The time is the training loop's own wall clock (setup and file writing excluded;
compiling included, and also shown apart), env steps/s counts all seeds together, and seed scaling is wall(K) / wall(1) on the same budget (METRICS.md). The
machine is noisy, so each figure is the median of `--repeats` runs, interleaved so drift hits every K alike. It
measures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path


def measure(preset: str, seeds: int, steps: int, learning_starts: int, threads: int, overrides: dict,
            out: Path) -> tuple[float, float]:
    """(wall seconds of the training loop, seconds of it compiling) for `seeds` seeds x `steps` env steps each."""
    from cartpole_dqn import build, train

    cfg = build(preset, overrides={
        "seeds": seeds, "max_steps": steps, "max_episodes": 1_000_000, "learning_starts": learning_starts,
        "replay_ratio": 1.0, "eval_every": 0, "final_eval_episodes": 0, "plot_every": 0.0,
        "solve_score": 1e9, "threads": threads, **overrides})
    result = train(cfg, out, verbose=False)
    return (max(s["wall_seconds"] for s in result.summaries),
            max(s.get("compile_seconds", 0.0) for s in result.summaries))


def measure_in(src: Path, *args) -> tuple[float, float]:
    """`measure(*args)` run by the cartpole-dqn in `src`, in a fresh process."""
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); from throughput import measure; "
            "a = json.loads(sys.argv[2]); print(json.dumps(measure(*a[:-1], __import__('pathlib').Path(a[-1]))))")
    env = {**os.environ, "PYTHONPATH": str(src)}
    args = [str(a) if isinstance(a, Path) else a for a in args]
    r = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent), json.dumps(args)], env=env,
                       capture_output=True, text=True, check=True)
    return tuple(json.loads(r.stdout.strip().splitlines()[-1]))


def main() -> None:
    from cartpole_dqn.bench import machine
    from cartpole_dqn.config import parse_value

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="default")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 16], help="values of K to measure (first = base)")
    p.add_argument("--steps", type=int, default=5000, help="env steps per seed")
    p.add_argument("--learning-starts", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, nargs="+", default=[1],
                   help="CPU thread counts to measure (the config's `threads`)")
    p.add_argument("--baseline", type=Path, help="also measure the cartpole-dqn of this checkout (its src/)")
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
    if args.baseline:
        print(f"# baseline: {args.baseline} (in a subprocess), runs interleaved with this tree's")
    if overrides:
        print(f"# overrides: {overrides}")
    with tempfile.TemporaryDirectory(prefix="throughput-") as tmp:
        for threads in args.threads:
            runs: dict[tuple[str, int], list[tuple[float, float]]] = {}
            for r in range(args.repeats):
                for k in args.seeds:
                    job = (args.preset, k, args.steps, args.learning_starts, threads, overrides)
                    runs.setdefault(("this", k), []).append(measure(*job, Path(tmp) / f"t{threads}-k{k}-r{r}"))
                    if args.baseline:
                        runs.setdefault(("base", k), []).append(
                            measure_in(args.baseline / "src", *job, Path(tmp) / f"b-t{threads}-k{k}-r{r}"))
            print(f"\n## threads {threads}")
            print(f"{'code':>8} | {'K':>4} | {'median wall s':>13} | {'compile s':>9} | {'env steps/s (all)':>17} | "
                  f"{'per seed':>9} | {'scaling':>7} | runs (s)")
            for who in ("this", "base") if args.baseline else ("this",):
                base = statistics.median(w for w, _ in runs[(who, args.seeds[0])])
                for k in args.seeds:
                    wall = statistics.median(w for w, _ in runs[(who, k)])
                    compile_s = statistics.median(c for _, c in runs[(who, k)])
                    print(f"{who:>8} | {k:>4} | {wall:>13.2f} | {compile_s:>9.2f} | {k * args.steps / wall:>17,.0f} | "
                          f"{args.steps / wall:>9,.0f} | {wall / base:>7.2f} | "
                          f"{', '.join(f'{w:.2f}' for w, _ in runs[(who, k)])}")
            if args.baseline:
                for k in args.seeds:
                    base_wall = statistics.median(w - c for w, c in runs[("base", k)])
                    ratio = base_wall / statistics.median(w for w, _ in runs[("this", k)])
                    running = base_wall / statistics.median(w - c for w, c in runs[("this", k)])
                    print(f"# K={k}: this tree {ratio:.1f}x the baseline's env steps/s with its compiling counted, "
                          f"{running:.1f}x without")


if __name__ == "__main__":
    sys.exit(main())
