"""Time to a greedy 475: each seed alone, one after the other in one process, as `cartpole-dqn train --rule v1`
runs it (greedy evaluation of 10 fresh episodes every 2,000 env steps; wall time includes the evaluations).

Per seed it prints the env steps and wall seconds at the first evaluation whose mean reaches 475, the seconds
without compiling (the chunk's compile, timed apart by the trainer, subtracted), the compile seconds, and the
training rule's steps and seconds to solve v1. The side-by-side peer is benchmarks/peer_rejax.py (rejax's PQN, in
a virtual environment of its own), run right after this on the same seeds. Measures and prints; asserts nothing.

    python benchmarks/time_to_greedy.py --seeds 20 [--preset default] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

from cartpole_dqn.bench import machine, versions  # noqa: E402
from cartpole_dqn.config import preset  # noqa: E402
from cartpole_dqn.stats import median  # noqa: E402
from cartpole_dqn.training import train  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="default")
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    date = datetime.now(timezone.utc).isoformat(timespec="seconds")
    print(f"# time_to_greedy: preset {args.preset}, seeds {args.seed}-{args.seed + args.seeds - 1}, each alone; "
          f"{machine(1)}; {date}", flush=True)
    print(" seed | eval steps | eval s | eval s w/o compile | compile s | v1 steps | v1 s", flush=True)
    rows = []
    for seed in range(args.seed, args.seed + args.seeds):
        cfg = preset(args.preset, rule="v1", seed=seed, final_eval_episodes=0, plot_every=0.0)
        with tempfile.TemporaryDirectory() as tmp:
            s = train(cfg, Path(tmp) / "run", verbose=False).summaries[0]
        run_s = None if s["eval_seconds_to_solve"] is None else s["eval_seconds_to_solve"] - s["compile_seconds"]
        rows.append({"seed": seed, "eval_steps": s["eval_steps_to_solve"], "eval_seconds": s["eval_seconds_to_solve"],
                     "eval_seconds_without_compile": run_s, "compile_seconds": s["compile_seconds"],
                     "steps_to_solve": s["steps_to_solve"], "seconds_to_solve": s["seconds_to_solve"]})
        r = rows[-1]
        show = lambda v, f="{:,.2f}": "-" if v is None else f.format(v)
        print(f" {seed:>4} | {show(r['eval_steps'], '{:,}'):>10} | {show(r['eval_seconds']):>6} | "
              f"{show(run_s):>18} | {r['compile_seconds']:>9.2f} | {show(r['steps_to_solve'], '{:,}'):>8} | "
              f"{show(r['seconds_to_solve'])}", flush=True)
    med = {key: median([r[key] for r in rows]) for key in rows[0] if key != "seed"}
    print("median | " + " | ".join(f"{key} {value:,.2f}" for key, value in med.items()), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"date": date, "machine": machine(1), "versions": versions(),
                                         "preset": args.preset, "rows": rows, "median": med}, indent=2))


if __name__ == "__main__":
    main()
