"""How fast is the compiled JAX loop? Env steps/s for one seed and K seeds, with compile time reported apart.

    XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" \\
        PYTHONPATH=src python benchmarks/throughput_core.py --hidden 128,128 64,64 --seeds 1 16 --steps 20000 \\
        --repeats 3

Run it with the XLA_FLAGS above: they pin XLA's CPU work to one thread (the `threads=1` default of training), so
the figures do not depend on what else holds the other cores.

Each measurement trains the `default` preset (`hidden` from `--hidden`, evaluation off, `learning_starts` 500,
replay ratio 1) on gymnax's CartPole-v1 inside the program, with a solve threshold no run can reach (1e9) so every
seed runs the same fixed per-seed budget of `--steps` env steps. The loop is `core.loop.make_chunk` with chunks of
2000 env steps. Compiling (`jax.jit(chunk).lower(t, states, jnp.int32(CHUNK)).compile()`, the persistent compilation cache off, so
cold) is timed on its own; the timed part is then steps / 2000 calls of the compiled chunk from fresh seed states,
blocked on with `jax.block_until_ready`. Env steps/s counts all seeds together; each figure is the median of
`--repeats` runs, interleaved over K so drift hits every K alike.

It times the bare chunk, without the driver's files and evaluations; `benchmarks/throughput.py` times `train` itself
and, with `--baseline`, an older checkout beside it (the same-session ratio against the PyTorch trainer). It
measures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone

from cartpole_dqn.bench import cpu_model

CHUNK = 2000
RECOMMENDED_XLA_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def parse_hidden(text: str) -> tuple[int, ...]:
    return tuple(int(w) for w in text.split(",") if w)


def setup(hidden: tuple[int, ...], steps: int, k: int):
    """(compiled chunk, fresh states maker, compile seconds) for `k` seeds of the default preset at `hidden`."""
    import jax
    import jax.numpy as jnp

    from cartpole_dqn.config import preset
    from cartpole_dqn.rules import Rule
    from cartpole_dqn.program import build

    cfg = preset("default", hidden=hidden, eval_every=0, learning_starts=500, max_steps=steps,
                 max_episodes=1_000_000)
    program = build(cfg, Rule("never", "CartPole-v1", 1e9, 100))    # no seed stops early

    def fresh():
        return jnp.int32(0), jax.block_until_ready(program.init(list(range(k))))

    t, states = fresh()
    start = time.perf_counter()
    compiled = program.chunk(CHUNK).lower(t, states, jnp.int32(CHUNK)).compile()
    return compiled, fresh, time.perf_counter() - start


def run_once(compiled, fresh, steps: int) -> float:
    """Wall seconds of steps / CHUNK compiled chunks from fresh states."""
    import jax
    import jax.numpy as jnp

    t, states = fresh()
    start = time.perf_counter()
    for _ in range(steps // CHUNK):
        (t, states), records = compiled(t, states, jnp.int32(CHUNK))
    jax.block_until_ready((t, states, records))
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hidden", nargs="+", default=["128,128"], help="hidden widths, comma-separated, one per net")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 16], help="values of K to measure (first = base)")
    p.add_argument("--steps", type=int, default=20000, help=f"env steps per seed (a multiple of {CHUNK})")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    if args.steps % CHUNK or args.steps < CHUNK:
        p.error(f"--steps must be a positive multiple of {CHUNK}")
    widths = [parse_hidden(h) for h in args.hidden]

    import jax

    flags = os.environ.get("XLA_FLAGS")
    started = datetime.now(timezone.utc)
    print(f"# throughput_core: compiled JAX loop (core.loop), gymnax CartPole-v1, preset default, replay ratio 1, "
          f"learning_starts 500, eval off, threshold 1e9, {args.steps:,} env steps per seed in chunks of {CHUNK}, "
          f"median of {args.repeats}")
    print(f"# {started:%Y-%m-%d %H:%M} UTC; {cpu_model()}, {os.cpu_count()} cores; jax {jax.__version__} on "
          f"{jax.default_backend()}; python {platform.python_version()}")
    print(f"# XLA_FLAGS: {flags!r}" + ("" if flags and "intra_op_parallelism_threads=1" in flags else
                                       f"  (recommended, to pin one thread: XLA_FLAGS=\"{RECOMMENDED_XLA_FLAGS}\")"))
    print("# compile: jax.jit(chunk).lower(t, states, jnp.int32(CHUNK)).compile(), persistent cache off (cold), timed apart; "
          "the timed runs exclude it")

    results: dict[tuple[int, ...], dict[int, tuple[float, list[float]]]] = {}
    for hidden in widths:
        prepared = {k: setup(hidden, args.steps, k) for k in args.seeds}
        walls: dict[int, list[float]] = {k: [] for k in args.seeds}
        for _ in range(args.repeats):
            for k in args.seeds:
                compiled, fresh, _ = prepared[k]
                walls[k].append(run_once(compiled, fresh, args.steps))
        results[hidden] = {k: (prepared[k][2], walls[k]) for k in args.seeds}
        del prepared

    print()
    print(f"{'hidden':>9} | {'K':>3} | {'compile s':>9} | {'median wall s':>13} | {'env steps/s (all seeds)':>23} | "
          f"{'per seed':>9} | {'scaling':>7} | runs (s)")
    for hidden, by_k in results.items():
        base = statistics.median(by_k[args.seeds[0]][1])
        for k, (compile_s, walls) in by_k.items():
            wall = statistics.median(walls)
            print(f"{'x'.join(map(str, hidden)):>9} | {k:>3} | {compile_s:>9.2f} | {wall:>13.2f} | "
                  f"{k * args.steps / wall:>23,.0f} | {args.steps / wall:>9,.0f} | {wall / base:>7.2f} | "
                  f"{', '.join(f'{w:.2f}' for w in walls)}")
    print("# scaling: wall(K) / wall(first K) on the same per-seed budget")


if __name__ == "__main__":
    sys.exit(main())
