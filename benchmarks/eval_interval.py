"""Training speed with `--eval-every 999` against the default interval, runs taken in turn.

An interval that does not divide the 1,000-step chunk once made every chunk 1 step long (the gcd); now a chunk
ends at its length or at the next multiple of an interval. Each run trains `--preset` (default `default`) for `--steps`
env steps with a solve score no seed reaches (so every run does the same work), evaluating every `--every` env
steps or every 2,000 (the default), one after the other `--rounds` times with a shared, warm compile cache.
Prints each run's training seconds (summary.json's wall_seconds less its compile_seconds, evaluations included)
and compile seconds, and the ratio of the medians (default / 999: the speed of 999 relative to the default).
A first, unmeasured run fills the compile cache. `--src` measures another checkout's package (PYTHONPATH).

Pin one XLA thread for the comparison: XLA_FLAGS="--xla_cpu_multi_thread_eigen=false
intra_op_parallelism_threads=1" (training sets it itself unless XLA_FLAGS already names the threads).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path


def run(every: int, steps: int, out: Path, src: str | None, preset: str) -> tuple[float, float]:
    env = {**os.environ, **({"PYTHONPATH": src} if src else {})}
    cmd = [sys.executable, "-m", "cartpole_dqn", "train", "--preset", preset, "--max-steps", str(steps), "--eval-every", str(every),
           "--set", "solve_score=1e9", "--set", "final_eval_episodes=0", "--set", "plot_every=0", "--quiet",
           "--out", str(out)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    s = json.loads((out / "summary.json").read_text())
    return s["wall_seconds"] - s["compile_seconds"], s["compile_seconds"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=50_000)
    ap.add_argument("--every", type=int, default=999)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--preset", default="default")
    ap.add_argument("--src", help="PYTHONPATH of the package to measure (default: the installed one)")
    args = ap.parse_args()
    print(f"# eval_interval: preset {args.preset}, {args.steps:,} steps, eval every {args.every} vs 2000, "
          f"{args.rounds} rounds; {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {platform.machine()}, "
          f"{os.cpu_count()} cores; src {args.src or '(installed)'}; XLA_FLAGS={os.environ.get('XLA_FLAGS', '(unset)')}")
    walls: dict[int, list[float]] = {args.every: [], 2000: []}
    with tempfile.TemporaryDirectory() as tmp:
        run(2000, args.steps, Path(tmp) / "warm-up", args.src, args.preset)
        for r in range(args.rounds):
            for every in (2000, args.every):
                wall, compile_s = run(every, args.steps, Path(tmp) / f"{every}-{r}", args.src, args.preset)
                walls[every].append(wall)
                print(f"eval every {every}: training {wall:.2f} s (compile {compile_s:.2f} s)", flush=True)
    base, other = statistics.median(walls[2000]), statistics.median(walls[args.every])
    print(f"median training seconds: every 2000 {base:.2f}, every {args.every} {other:.2f}; "
          f"speed ratio {base / other:.2f}")


if __name__ == "__main__":
    main()
