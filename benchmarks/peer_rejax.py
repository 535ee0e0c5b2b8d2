"""Peer baseline: rejax's PQN on CartPole-v1, timed to the first greedy evaluation that reaches 475.

RUN THIS WITH REJAX'S OWN VENV, not the project's (it does not import cartpole_dqn):

    python3 -m venv /tmp/rejax-venv
    /tmp/rejax-venv/bin/pip install rejax==0.1.3 'gymnax<1' 'jax[cpu]'
    /tmp/rejax-venv/bin/python benchmarks/peer_rejax.py --seeds 20 --json /tmp/peer_rejax.json

What is trained: `rejax.get_algo("pqn").create(**config)` with the PQN entry of rejax's configs/gymnax/cartpole.yaml
(repeated below as PQN_CARTPOLE, since the package does not ship the configs folder): 16 envs x 128 steps,
16 minibatches, 5 epochs, Adam 3e-4 after clipping at 10, epsilon 1 -> 0.05 over half of 524,288 steps,
gamma 0.99, TD(lambda) 0.9, no observation normalisation; the network is rejax's own for PQN (64x64 MLP,
Dense -> LayerNorm -> ReLU). The training step, the loop and the evaluator are rejax's, unchanged.

Two departures from the stock run, both needed to measure the criterion:
  * The evaluation callback. rejax's stock callback plays 128 episodes with epsilon 0.005 (PQN.make_act). Here it
    plays 10 episodes GREEDILY (argmax of the Q-network), through rejax's own `rejax.evaluate.evaluate`, with
    the same rng rejax passes (ts.rng), every --eval-freq env steps (default 4,096 = two training iterations of
    16 x 128 steps; rejax's config uses 16,384). A seed "reaches 475" at the first such evaluation whose mean
    return over its 10 episodes is >= 475. The step-0 evaluation rejax's train makes is kept.
  * The epsilon schedule is pinned to the configured 524,288 steps. rejax derives it from total_timesteps, so a run
    truncated at step T (below) would otherwise explore on a shorter schedule: a different algorithm.
    `schedule_timesteps` feeds rejax's own EpsilonGreedyMixin.epsilon_schedule the configured horizon.

Method, per seed (the seed is the rng rejax.train gets: jax.random.PRNGKey(seed)), alone on one pinned core with
XLA on one thread:
  1. FIND: run rejax's compiled train for the full 524,288 steps (compiled once, shared by all seeds) and read the
     first evaluation >= 475 from its record: step T (a multiple of --eval-freq). Unsolved seeds: T = none.
  2. COMPILE: build a fresh jax.jit of rejax's train with total_timesteps = T (same config otherwise) and time
     `.lower(rng).compile()`: that is the compile seconds reported (ahead-of-time compile; tracing + lowering +
     XLA compile, measured from a fresh function so that no cache is hit).
  3. RUN: call the compiled executable --repeats times (default 3; same rng, same result) and time each call to
     block_until_ready; seconds_to_475 is the median of those calls (all kept in run_s_all): the wall seconds to
     reach 475, compile excluded. It trains T steps and makes every evaluation up to and including the passing one (the
     evaluations are part of the cost of knowing it passed).
  4. CHECK: the truncated run's evaluation record must equal the full run's first T/eval_freq + 1 entries and its
     last one must pass (same rng, same program, so the same trajectory); `identical` in the JSON says so.
Each seed's line is printed as it finishes; the final JSON (stdout and --json) holds the per-seed figures, the
medians (unsolved seeds count as infinity, written null when the median itself is infinite), the machine and the
versions. The FIND run's own wall time (all 524,288 steps, evaluations included) is reported too, as full_run_s.
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from importlib import metadata  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import struct  # noqa: E402

import rejax  # noqa: E402
from rejax.algos.mixins import EpsilonGreedyMixin  # noqa: E402
from rejax.evaluate import evaluate  # noqa: E402

# rejax configs/gymnax/cartpole.yaml, entry "pqn" (tag v0.1.3), as written there.
PQN_CARTPOLE = {
    "env": "CartPole-v1",
    "num_envs": 16,
    "num_steps": 128,
    "num_minibatches": 16,
    "max_grad_norm": 10,
    "learning_rate": 0.0003,
    "num_epochs": 5,
    "total_timesteps": 524288,
    "eval_freq": 16384,
    "eps_start": 1,
    "eps_end": 0.05,
    "exploration_fraction": 0.5,
    "gamma": 0.99,
    "td_lambda": 0.9,
    "normalize_observations": False,
}
TARGET = 475.0
EVAL_EPISODES = 10

PQN = rejax.get_algo("pqn")


class PinnedPQN(PQN):
    """rejax's PQN whose epsilon schedule spans `schedule_timesteps`, whatever total_timesteps a run is cut to."""

    schedule_timesteps: int = struct.field(pytree_node=False, default=524288)

    @property
    def epsilon_schedule(self):
        return EpsilonGreedyMixin.epsilon_schedule.fget(self.replace(total_timesteps=self.schedule_timesteps))


def greedy_eval_callback(algo, ts, rng):
    """EVAL_EPISODES greedy episodes through rejax's evaluator; returns (lengths, returns) like rejax's own."""

    def act(obs, _rng):
        q = algo.agent.apply(ts.q_ts.params, jnp.expand_dims(obs, 0))
        return jnp.argmax(q, axis=-1).squeeze()

    max_steps = algo.env_params.max_steps_in_episode
    return evaluate(act, rng, algo.env, algo.env_params, EVAL_EPISODES, max_steps)


def make_algo(total_timesteps: int, eval_freq: int):
    cfg = dict(PQN_CARTPOLE, total_timesteps=total_timesteps, eval_freq=eval_freq,
               schedule_timesteps=PQN_CARTPOLE["total_timesteps"])
    algo = PinnedPQN.create(**cfg)
    return algo.replace(eval_callback=greedy_eval_callback)


def compile_train(algo, rng):
    """A fresh jit of rejax's train (new function object: no cache hit), compiled ahead of time; returns (exe, s)."""
    fn = jax.jit(lambda key: algo.train(key))
    t0 = time.perf_counter()
    exe = fn.lower(rng).compile()
    return exe, time.perf_counter() - t0


def mean_returns(evaluation) -> np.ndarray:
    _lengths, returns = evaluation
    return np.asarray(returns).mean(axis=-1)  # one mean per evaluation (step 0 first)


def machine() -> dict:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu_model": model, "cores_online": os.cpu_count(),
            "cores_used": sorted(os.sched_getaffinity(0)), "xla_flags": os.environ.get("XLA_FLAGS"),
            "platform": platform.platform(), "python": platform.python_version()}


def versions() -> dict:
    out = {}
    for pkg in ("rejax", "jax", "jaxlib", "flax", "optax", "gymnax", "distrax", "chex", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def median_inf(values):
    vals = sorted(math.inf if v is None else v for v in values)
    if not vals:
        return None
    n = len(vals)
    m = vals[n // 2] if n % 2 else (vals[n // 2 - 1] + vals[n // 2]) / 2
    return None if math.isinf(m) else m


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=20, help="how many seeds (default 20)")
    p.add_argument("--seed-start", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--eval-freq", type=int, default=4096,
                   help="env steps between greedy evaluations (default 4096; a multiple of 2048, one iteration)")
    p.add_argument("--cpu", type=int, default=None, help="pin to this core (default: the lowest one allowed)")
    p.add_argument("--repeats", type=int, default=3, help="timed calls of each truncated run (median reported)")
    p.add_argument("--json", default=None, help="also write the final JSON here")
    args = p.parse_args()

    iteration = PQN_CARTPOLE["num_envs"] * PQN_CARTPOLE["num_steps"]
    if args.eval_freq % iteration:
        p.error(f"--eval-freq must be a multiple of {iteration} (one training iteration)")
    cpu = args.cpu if args.cpu is not None else min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})

    started = datetime.now(timezone.utc)
    load_start = os.getloadavg()
    total = PQN_CARTPOLE["total_timesteps"]
    seeds = list(range(args.seed_start, args.seed_start + args.seeds))
    print(f"# rejax PQN CartPole-v1 peer: seeds {seeds[0]}-{seeds[-1]}, greedy {EVAL_EPISODES}-episode eval every "
          f"{args.eval_freq} steps, target {TARGET:g}, up to {total} steps; core {cpu}; "
          f"{started:%Y-%m-%d %H:%M} UTC; load {os.getloadavg()[0]:.2f}", flush=True)

    full_algo = make_algo(total, args.eval_freq)
    full_exe, full_compile_s = compile_train(full_algo, jax.random.PRNGKey(0))
    print(f"# full-length train ({total} steps) compiled in {full_compile_s:.2f} s", flush=True)

    rows = []
    for seed in seeds:
        rng = jax.random.PRNGKey(seed)
        t0 = time.perf_counter()
        full_ts, full_eval = jax.block_until_ready(full_exe(rng))
        full_run_s = time.perf_counter() - t0
        full_means = mean_returns(full_eval)
        passing = np.nonzero(full_means >= TARGET)[0]
        row = {"seed": seed, "solved": bool(passing.size), "full_run_s": round(full_run_s, 3),
               "full_final_greedy": float(full_means[-1]), "full_max_greedy": float(full_means.max())}
        if passing.size:
            k = int(passing[0])  # evaluation index; index 0 is the step-0 evaluation
            steps = k * args.eval_freq
            algo = make_algo(steps, args.eval_freq)
            exe, compile_s = compile_train(algo, rng)
            run_all = []
            for _ in range(max(1, args.repeats)):
                t0 = time.perf_counter()
                ts, evaluation = jax.block_until_ready(exe(rng))
                run_all.append(time.perf_counter() - t0)
            run_s = float(np.median(run_all))
            means = mean_returns(evaluation)
            identical = bool(means.shape[0] == k + 1 and np.array_equal(means, full_means[: k + 1]))
            row.update(env_steps=int(ts.global_step), eval_index=k, compile_s=round(compile_s, 3),
                       seconds_to_475=round(run_s, 3),
                       run_s_all=[round(x, 3) for x in run_all], passing_mean=float(means[-1]),
                       passed_in_timed_run=bool(means[-1] >= TARGET), identical=identical)
            print(f"seed {seed:3d}: 475 at {int(ts.global_step):7d} env steps (eval {k}), "
                  f"{run_s:7.2f} s run, compile {compile_s:6.2f} s, mean {means[-1]:.1f}, "
                  f"same as full run: {identical}; full {total}-step run {full_run_s:.2f} s", flush=True)
        else:
            row.update(env_steps=None, eval_index=None, compile_s=None, seconds_to_475=None,
                       passing_mean=None, passed_in_timed_run=False, identical=None)
            print(f"seed {seed:3d}: never reached 475 in {total} steps (best {full_means.max():.1f}, "
                  f"final {full_means[-1]:.1f}); full run {full_run_s:.2f} s", flush=True)
        rows.append(row)

    solved_compiles = [r["compile_s"] for r in rows if r["compile_s"] is not None]
    result = {
        "what": "rejax PQN (rejax's CartPole-v1 config), wall seconds and env steps to the first greedy "
                f"{EVAL_EPISODES}-episode evaluation with mean return >= {TARGET:g}",
        "method": "full run to find the first passing evaluation; then a fresh AOT compile (lower().compile()) of "
                  "rejax's train truncated at that evaluation, epsilon schedule pinned to 524288 steps, timed "
                  f"{max(1, args.repeats)} times (median), compile excluded; unsolved = infinity in the medians",
        "config": dict(PQN_CARTPOLE, eval_freq=args.eval_freq, eval_episodes=EVAL_EPISODES, eval_policy="greedy",
                       target=TARGET, network="rejax PQN: 64x64 MLP, Dense-LayerNorm-ReLU"),
        "seeds": seeds,
        "per_seed": rows,
        "solved": sum(r["solved"] for r in rows),
        "median": {
            "seconds_to_475": median_inf([r["seconds_to_475"] for r in rows]),
            "env_steps": median_inf([r["env_steps"] for r in rows]),
            "compile_s": median_inf(solved_compiles) if solved_compiles else None,
            "full_run_s": median_inf([r["full_run_s"] for r in rows]),
        },
        "full_compile_s": round(full_compile_s, 3),
        "all_identical": all(r["identical"] for r in rows if r["solved"]),
        "machine": machine(),
        "versions": versions(),
        "started_utc": started.isoformat(timespec="seconds"),
        "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg(),
        "argv": sys.argv,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
