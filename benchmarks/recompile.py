"""Compile seconds of a second run that differs from the first only in numeric hyperparameters.

Two `cartpole-dqn train` commands, one after the other, sharing a compile cache that starts empty: the first with
the preset's settings, the second with other `lr` and `gamma`. Prints each run's compile seconds (summary.json's
`compile_seconds`: the training program's) and the command's wall seconds, and the ratio second / first. Since
the numeric hyperparameters are data in the state (core/hyper.py), the second run finds its program in the cache.

    python benchmarks/recompile.py                      # this checkout
    python benchmarks/recompile.py --src /path/to/src   # another checkout's package (the same-session baseline)

Pin one XLA thread for a fair comparison: XLA_FLAGS="--xla_cpu_multi_thread_eigen=false
intra_op_parallelism_threads=1" (training sets it itself unless XLA_FLAGS already names the threads).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path


def run(src: str | None, cache: Path, out: Path, preset: str, steps: int, extra: list[str]) -> tuple[float, float]:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    if src:
        env["PYTHONPATH"] = src
    cmd = [sys.executable, "-m", "cartpole_dqn", "train", "--preset", preset, "--max-steps", str(steps), "--quiet",
           "--out", str(out), "--set", "final_eval_episodes=0", "--set", "eval_every=0", *extra]
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    return json.loads((out / "summary.json").read_text())["compile_seconds"], wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", help="PYTHONPATH of the package to measure (default: the installed one)")
    ap.add_argument("--preset", default="default")
    ap.add_argument("--steps", type=int, default=20_000)
    args = ap.parse_args()
    print(f"# recompile: preset {args.preset}, {args.steps:,} steps; {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; src {args.src or '(installed)'}; "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '(unset)')}")
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        first = run(args.src, cache, Path(tmp) / "a", args.preset, args.steps, [])
        second = run(args.src, cache, Path(tmp) / "b", args.preset, args.steps,
                     ["--set", "lr=0.0005", "--set", "gamma=0.95"])
    print(f"first run:  compile {first[0]:.2f} s, command {first[1]:.1f} s")
    print(f"second run (lr 5e-4, gamma 0.95): compile {second[0]:.2f} s, command {second[1]:.1f} s")
    print(f"ratio of compile seconds, second / first: {second[0] / first[0]:.3f}")


if __name__ == "__main__":
    main()
