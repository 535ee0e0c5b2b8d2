"""Seeds to a solved CartPole with the compiled core: every seed on the seed axis of one program, until each one
solves its rule or spends its budget. Prints each seed's episodes before solve and env steps to solve (METRICS.md,
training episodes), the median with unsolved seeds as infinity, the success rate, and the wall time of the whole
answer with compile seconds apart. It measures; it asserts nothing.

    XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" \\
        python benchmarks/solve_core.py --seeds 20 --set hidden=64,64

Greedy evaluations are not run here (the driver does them between chunks); see benchmarks/throughput_core.py for
env steps per second.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from datetime import datetime, timezone

import jax
import jax.numpy as jnp
import numpy as np

from cartpole_dqn.bench import cpu_model
from cartpole_dqn.config import parse_value, preset
from cartpole_dqn.program import build
from cartpole_dqn.rules import RULES, resolve_rule


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="default")
    ap.add_argument("--rule", default="v1", choices=sorted(RULES))
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--seed-start", type=int, default=0)
    ap.add_argument("--chunk", type=int, default=2000, help="env steps per compiled call")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    overrides = {k: parse_value(k, v) for k, v in (item.split("=", 1) for item in args.set)}
    cfg, rule = resolve_rule(preset(args.preset, **{"max_steps": 150_000, **overrides, "rule": args.rule}))
    program = build(cfg, rule)
    seeds = list(range(args.seed_start, args.seed_start + args.seeds))
    print(f"# solve_core: preset {cfg.preset}, rule {rule.name} ({rule.env}, {rule.threshold:g} over {rule.window}), "
          f"seeds {seeds[0]}-{seeds[-1]}, hidden {cfg.hidden}, replay ratio {cfg.replay_ratio:g}, "
          f"budget {cfg.max_steps:,} steps / {cfg.max_episodes:,} episodes")
    print(f"# {datetime.now(timezone.utc).isoformat(timespec='seconds')}; {cpu_model()}, {os.cpu_count()} cores; "
          f"jax {jax.__version__} on {jax.default_backend()}; XLA_FLAGS={os.environ.get('XLA_FLAGS', '(unset)')}")
    start = time.perf_counter()
    states = program.init(seeds)
    chunk = program.chunk(args.chunk).lower(jnp.int32(0), states, jnp.int32(args.chunk)).compile()
    compile_s = time.perf_counter() - start
    t = jnp.int32(0)
    returns = [[] for _ in seeds]
    steps = [[] for _ in seeds]
    solved_at: list[int | None] = [None] * len(seeds)
    while bool(states.active.any()):
        t0 = int(t)
        (t, states), rec = chunk(t, states, jnp.int32(args.chunk))
        rec = jax.device_get(rec)
        for i in range(len(seeds)):
            for j, e in np.argwhere(rec.ended[:, i]):       # vector step, environment
                returns[i].append(float(rec.ret[j, i, e]))
                steps[i].append(t0 + (j + 1) * cfg.num_envs)
                if rec.solved[j, i, e]:
                    solved_at[i] = len(returns[i]) - 1
    wall = time.perf_counter() - start
    print(f"{'seed':>6} | {'solved':>6} | {'EBS':>6} | {'steps to solve':>14} | {'episodes':>8}")
    ebs, sts = [], []
    for i, s in enumerate(seeds):
        k = solved_at[i]
        ebs.append(math.inf if k is None else k + 1 - rule.window)
        sts.append(math.inf if k is None else steps[i][k])
        print(f"{s:>6} | {'yes' if k is not None else 'no':>6} | {'-' if k is None else ebs[-1]:>6} | "
              f"{'-' if k is None else f'{sts[-1]:,}':>14} | {len(returns[i]):>8}")
    med = float(np.median(sts))
    print(f"median steps to solve {med:,.0f} (unsolved = infinity), median EBS {float(np.median(ebs)):.0f}, "
          f"solved {sum(k is not None for k in solved_at)}/{len(seeds)}")
    print(f"wall {wall:.1f} s for the whole answer, of which compile {compile_s:.1f} s; "
          f"{int(t) * len(seeds) / (wall - compile_s):,.0f} env steps/s over all seeds after compiling")


if __name__ == "__main__":
    main()
