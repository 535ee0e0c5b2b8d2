"""Candidates for the `default` preset, timed on the clock: K seeds of each, trained as one program on one core.

For every candidate (a named set of overrides on a preset) this trains seeds 0..K-1 under the `v1` rule and prints
how many solved, the median env steps and seconds to solve (the seeds run in lockstep, so a seed's seconds are
those of the whole program when it solved), the wall seconds until every seed had stopped, and the compile
seconds apart. Reliability first (K of K), then the wall time. Measures and prints; asserts nothing.

    python benchmarks/choose_default.py --seeds 20 pqn-e16 dqn-e8        # named candidates (default: all)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

from cartpole_dqn.bench import machine, versions  # noqa: E402
from cartpole_dqn.config import preset  # noqa: E402
from cartpole_dqn.stats import median  # noqa: E402
from cartpole_dqn.training import train  # noqa: E402

_FAST_PQN = dict(epsilon_decay_steps=30_000, epsilon_end=0.01, max_episodes=100_000)
CANDIDATES: dict[str, tuple[str, dict]] = {
    "default": ("default", {}),
    "sample-efficient": ("sample-efficient", {}),
    "pqn": ("pqn", dict(max_episodes=100_000)),
    "pqn-e16": ("pqn", _FAST_PQN),
    "pqn-e16-lr1e-3": ("pqn", dict(_FAST_PQN, lr=1e-3)),
    "pqn-e32-t64": ("pqn", dict(_FAST_PQN, num_envs=32, rollout_steps=64)),
    "pqn-e64-t32": ("pqn", dict(_FAST_PQN, num_envs=64, rollout_steps=32, minibatches=16)),
    "pqn-e16-t64": ("pqn", dict(_FAST_PQN, rollout_steps=64, minibatches=8)),
    "pqn-e16-eps0": ("pqn", dict(_FAST_PQN, epsilon_end=0.0)),
    "pqn-lr1e-3-decay": ("pqn", dict(lr=1e-3, lr_end=0.0, lr_decay_steps=300_000, max_episodes=100_000)),
    "pqn-e32-lr1e-3-decay": ("pqn", dict(num_envs=32, rollout_steps=64, lr=1e-3, lr_end=0.0, lr_decay_steps=300_000,
                                         max_episodes=100_000)),
    "pqn-lr1e-3-decay-eps.01": ("pqn", dict(lr=1e-3, lr_end=0.0, lr_decay_steps=300_000, epsilon_end=0.01,
                                            epsilon_decay_steps=50_000, max_episodes=100_000)),
    "pqn-rs.1": ("pqn", dict(reward_scale=0.1, max_episodes=100_000)),
    "pqn-rs.1-lr1e-3-decay": ("pqn", dict(reward_scale=0.1, lr=1e-3, lr_end=0.0, lr_decay_steps=500_000,
                                          max_episodes=100_000)),
    "pqn-rs.1-e32-lr1e-3-decay": ("pqn", dict(reward_scale=0.1, num_envs=32, rollout_steps=64, lr=1e-3, lr_end=0.0,
                                              lr_decay_steps=500_000, max_episodes=100_000)),
    "pqn-rs.1-lam.95-128": ("pqn", dict(reward_scale=0.1, q_lambda=0.95, hidden=(128, 128), lr=1e-3, lr_end=0.0,
                                        lr_decay_steps=500_000, max_episodes=100_000)),
    "pqn-rs.1-eps50k": ("pqn", dict(reward_scale=0.1, epsilon_decay_steps=50_000, max_episodes=100_000)),
    "pqn-rs.1-lr1e-3-decay-eps50k": ("pqn", dict(reward_scale=0.1, lr=1e-3, lr_end=0.0, lr_decay_steps=500_000,
                                                 epsilon_decay_steps=50_000, max_episodes=100_000)),
    "pqn-rs.1-e32-t32": ("pqn", dict(reward_scale=0.1, num_envs=32, rollout_steps=32, max_episodes=100_000)),
    "pqn-rs.1-t64-eps50k": ("pqn", dict(reward_scale=0.1, rollout_steps=64, minibatches=8,
                                        epsilon_decay_steps=50_000, max_episodes=100_000)),
    "pqn-rs.1-e32-lr1e-3-decay-eps50k": ("pqn", dict(reward_scale=0.1, num_envs=32, rollout_steps=64, lr=1e-3,
                                                     lr_end=0.0, lr_decay_steps=500_000, epsilon_decay_steps=50_000,
                                                     max_episodes=100_000)),
    "pqn-rs.1-e64-t32-lr1e-3-decay": ("pqn", dict(reward_scale=0.1, num_envs=64, rollout_steps=32, lr=1e-3,
                                                  lr_end=0.0, lr_decay_steps=500_000, max_episodes=100_000)),
    "dqn-e8-rr0.25": ("sample-efficient", dict(num_envs=8, replay_ratio=0.25, batch_size=128, max_episodes=20_000)),
    "dqn-e16-rr0.125": ("sample-efficient", dict(num_envs=16, replay_ratio=0.125, batch_size=256,
                                                 max_episodes=20_000)),
    "dqn-e8-rr0.25-64": ("sample-efficient", dict(num_envs=8, replay_ratio=0.25, batch_size=128, hidden=(64, 64),
                                                  max_episodes=20_000)),
}


def run(name: str, seeds: int, max_steps: int | None) -> dict:
    base, overrides = CANDIDATES[name]
    extra = {"max_steps": max_steps} if max_steps else {}
    cfg = preset(base, rule="v1", seed=0, seeds=seeds, eval_every=0, final_eval_episodes=0, plot_every=0.0,
                 **{**overrides, **extra})
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        result = train(cfg, Path(tmp) / "run", verbose=False)
        whole = time.perf_counter() - started
    s = result.summaries
    return {"candidate": name, "preset": base, "overrides": overrides, "seeds": seeds,
            "solved": sum(x["solved"] for x in s),
            "median_steps_to_solve": median([x["steps_to_solve"] for x in s]),
            "median_seconds_to_solve": median([x["seconds_to_solve"] for x in s]),
            "max_seconds_to_solve": max((x["seconds_to_solve"] or float("inf")) for x in s),
            "wall_seconds": round(max(x["wall_seconds"] for x in s), 2),
            "compile_seconds": round(s[0]["compile_seconds"], 2), "call_seconds": round(whole, 2),
            "per_seed_steps": [x["steps_to_solve"] for x in s]}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("candidates", nargs="*", help=f"names among: {', '.join(CANDIDATES)} (default: all)")
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--max-steps", type=int, default=None, help="override every candidate's step budget")
    p.add_argument("--json", type=Path, help="also write every row here")
    args = p.parse_args(argv)
    names = args.candidates or list(CANDIDATES)
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        sys.exit(f"choose_default.py: unknown candidate(s) {', '.join(unknown)}; known: {', '.join(CANDIDATES)}")
    print(f"# choose_default: seeds 0-{args.seeds - 1} as one program, rule v1; {machine(1)}; "
          f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}", flush=True)
    print(f"{'candidate':>18} | solved | median steps | median s | all solved s | wall s | compile s", flush=True)
    rows = []
    for name in names:
        r = run(name, args.seeds, args.max_steps)
        rows.append(r)
        print(f"{name:>18} | {r['solved']:>3}/{r['seeds']:<2} | {r['median_steps_to_solve']:>12,.0f} | "
              f"{r['median_seconds_to_solve']:>8.1f} | {r['max_seconds_to_solve']:>12.1f} | {r['wall_seconds']:>6.1f} | "
              f"{r['compile_seconds']:>9.1f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(1), "versions": versions(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
