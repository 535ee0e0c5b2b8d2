"""Trials per minute of `cartpole-dqn tune` with `--batch B` against `--batch 1`, run one after the other.

Each run adds `--trials` trials to a new study (its own folder and compile cache, both empty at the start) on the
tuner's defaults (preset `default`, 3 seeds per trial, a budget of 100,000 env steps per seed, one job) and is
timed as a whole command: compiling, sampling and pruning included. Prints each run's wall seconds, trials per
minute and trial states, and the ratio.

    python benchmarks/tune_batch.py --trials 16 --batch 8

Pin one XLA thread for the comparison: XLA_FLAGS="--xla_cpu_multi_thread_eigen=false
intra_op_parallelism_threads=1" (training sets it itself unless XLA_FLAGS already names the threads).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path


def run(batch: int, trials: int, budget: int, folder: Path) -> tuple[float, str]:
    env = {**os.environ, "XDG_CACHE_HOME": str(folder / "cache")}
    cmd = [sys.executable, "-m", "cartpole_dqn", "tune", "--trials", str(trials), "--batch", str(batch),
           "--budget-steps", str(budget), "--out", str(folder / "study")]
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - start
    states = re.search(r": (.*?)(;|$)", done.stdout.splitlines()[0])
    return wall, states.group(1) if states else done.stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--budget", type=int, default=100_000)
    args = ap.parse_args()
    print(f"# tune_batch: {args.trials} trials, budget {args.budget:,}, preset default, 3 seeds per trial; "
          f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {platform.machine()}, {os.cpu_count()} cores; "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '(unset)')}")
    rates = {}
    for batch in (1, args.batch):
        with tempfile.TemporaryDirectory() as tmp:
            wall, states = run(batch, args.trials, args.budget, Path(tmp))
        rates[batch] = args.trials / wall * 60
        print(f"--batch {batch}: {wall:.1f} s, {rates[batch]:.2f} trials/min ({states})", flush=True)
    print(f"ratio, --batch {args.batch} / --batch 1: {rates[args.batch] / rates[1]:.2f}")


if __name__ == "__main__":
    main()
