"""Seed scaling for accelerators: K seeds of a preset in one compiled program, for K = 1, 16, 256 and 1,024.

    python benchmarks/scaling.py                                     # default and pqn, K = 1, 16, 256, 1024
    python benchmarks/scaling.py --device cuda --out runs/scaling    # on a GPU (pip install -e '.[cuda]')
    python benchmarks/scaling.py --presets default --seeds-list 1,2 --max-steps 3000   # a small CPU run

For each K (smallest first) and each preset, one run trains seeds 0..K-1 together on the seed axis, through
`train()`, in a fresh process: its compile time and peak memory are its own, and its compiling is cold (no on-disk
compile cache, unless --compile-cache). Greedy evaluation is off (eval_every=0, final_eval_episodes=0): only
training is timed. Per run it reports (METRICS.md):

- seconds until every seed has solved the rule (the largest seconds to solve, compiling counted; '-' if a seed
  did not solve within its budget), the env steps that took, and how many of the K seeds solved;
- training wall seconds (all seeds, compiling counted) and the compile seconds of them;
- env steps/s: the env steps every seed took until it stopped, together, over training wall seconds minus compile
  seconds (a seed that has solved is frozen, and counts no more steps, while the others train on);
- peak memory: the process's resident set on the host, and the device allocator's peak where the device reports one
  (`memory_stats()['peak_bytes_in_use']`, a GPU);
- the seconds `train()` spent writing checkpoints (the whole K-seed state, each time a seed solves and at the end)
  and drawing each seed's scores.png at the end, which grow with K. With --training-only both are skipped (and
  still counted), so that the figures are those of the compiled program and the score logs alone.

Once a run of a preset takes longer than --time-limit seconds (its whole process), larger K of that preset are
skipped, and said so. --out DIR writes DIR/scaling.json after every run: every figure, the machine, the versions,
the settings and the date. It measures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

RESULT = "scaling-result: "     # the line a measuring process prints its figures on
COLUMNS = (("preset", "preset", 8), ("K", "seeds", 5), ("solved", "solved", 7),
           ("s to all solved", "seconds_to_all_solved", 15), ("steps to all", "steps_to_all_solved", 12),
           ("wall s", "wall_seconds", 8), ("compile s", "compile_seconds", 9),
           ("env steps/s", "env_steps_per_second", 12), ("host MiB", "peak_host_bytes", 9),
           ("device MiB", "peak_device_bytes", 10), ("ckpt s", "checkpoint_seconds", 7),
           ("plot s", "plot_seconds", 7), ("process s", "process_seconds", 9))


# ------------------------------------------------------------------------------------- one run, in its process ---
def _keep_score_files_open(seeds: int) -> None:
    """train() keeps two score files open per seed: raise the soft limit on open files to fit K seeds."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * seeds + 256
    if soft != resource.RLIM_INFINITY and soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need if hard == resource.RLIM_INFINITY else min(need, hard),
                                                    hard))


def _timed(cls: object, name: str, spent: dict, key: str, skip: bool) -> None:
    """Wrap `cls.name` to add its seconds (and calls) to `spent[key]`; with `skip`, count it but do nothing."""
    original = getattr(cls, name)

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return None if skip else original(*args, **kwargs)
        finally:
            spent[key] += time.perf_counter() - start
            spent[key.replace("_seconds", "_calls")] += 1

    setattr(cls, name, wrapper)


def measure(preset: str, seeds: int, device: str, rule: str, max_steps: int | None, max_episodes: int | None,
            threads: int, compile_cache: bool, training_only: bool, out: str) -> dict:
    """Train seeds 0..`seeds`-1 of `preset` as one run in this process; its figures (see the module docstring)."""
    import resource

    import jax

    from cartpole_dqn import preset as make_config
    from cartpole_dqn import scores
    from cartpole_dqn.bench import machine, versions
    from cartpole_dqn.stats import median
    from cartpole_dqn.config import resolve_device

    from cartpole_dqn import checkpoint
    from cartpole_dqn.training import train
    if not compile_cache:
        jax.config.update("jax_enable_compilation_cache", False)
    _keep_score_files_open(seeds)
    spent = {"checkpoint_seconds": 0.0, "checkpoint_calls": 0, "plot_seconds": 0.0, "plot_calls": 0}
    _timed(checkpoint, "save_run", spent, "checkpoint_seconds", training_only)
    _timed(scores.ScoreLog, "plot", spent, "plot_seconds", training_only)

    overrides = dict(seeds=seeds, seed=0, rule=rule, device=device, threads=threads, eval_every=0,
                     final_eval_episodes=0, plot_every=0.0)
    overrides.update({k: v for k, v in (("max_steps", max_steps), ("max_episodes", max_episodes)) if v})
    cfg = make_config(preset, **overrides)
    dev = resolve_device(cfg.device)
    start = time.perf_counter()
    result = train(cfg, Path(out), verbose=False)
    call_seconds = time.perf_counter() - start

    s = result.summaries
    wall = max(x["wall_seconds"] for x in s)
    compile_s = max(x["compile_seconds"] for x in s)
    env_steps = sum(x["env_steps"] for x in s)
    solved = sum(bool(x["solved"]) for x in s)
    stats = dev.memory_stats() or {}
    rusage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    med = median([x["seconds_to_solve"] for x in s])
    return {
        "preset": preset, "seeds": seeds, "device": f"{dev.platform}:{dev.id} {dev.device_kind}",
        "env": cfg.env, "rule": s[0]["rule"], "algo": cfg.algo, "num_envs": cfg.num_envs,
        "max_steps": cfg.max_steps, "max_episodes": cfg.max_episodes,
        "solved": solved,
        "seconds_to_all_solved": max(x["seconds_to_solve"] for x in s) if solved == seeds else None,
        "steps_to_all_solved": max(x["steps_to_solve"] for x in s) if solved == seeds else None,
        "median_seconds_to_solve": None if math.isinf(med) else med,
        "wall_seconds": wall, "compile_seconds": compile_s, "env_steps": env_steps,
        "env_steps_per_second": round(env_steps / (wall - compile_s), 1) if wall > compile_s else None,
        # ru_maxrss is in KiB on Linux, in bytes on macOS
        "peak_host_bytes": rusage * (1 if sys.platform == "darwin" else 1024),
        "peak_device_bytes": stats.get("peak_bytes_in_use"),
        "checkpoint_seconds": round(spent["checkpoint_seconds"], 3), "checkpoints": spent["checkpoint_calls"],
        "plot_seconds": round(spent["plot_seconds"], 3), "training_only": training_only,
        "train_call_seconds": round(call_seconds, 3),
        "machine": machine(threads), "versions": versions(),
    }


def _measure_in_process(job: dict, timeout: float | None) -> dict:
    """`measure(**job)` in a fresh Python process: its figures, or the error that stopped it."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if job["device"] == "cpu":
        env["JAX_PLATFORMS"] = "cpu"    # a CPU run leaves a GPU alone (no CUDA client, no memory taken)
    start = time.perf_counter()
    try:
        r = subprocess.run([sys.executable, __file__, "--one", json.dumps(job)], capture_output=True, text=True,
                           env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"stopped after {timeout:g} s (--run-timeout)", "process_seconds": round(timeout, 3)}
    seconds = round(time.perf_counter() - start, 3)
    lines = [line for line in r.stdout.splitlines() if line.startswith(RESULT)]
    if r.returncode or not lines:
        tail = (r.stderr.strip().splitlines() or [f"exit code {r.returncode}"])[-1]
        return {"error": tail, "process_seconds": seconds}
    return {**json.loads(lines[-1][len(RESULT):]), "process_seconds": seconds}


# ----------------------------------------------------------------------------------------------------- report ---
def cell(key: str, value) -> str:
    from cartpole_dqn.bench import fmt

    if value is not None and key.startswith("peak_"):
        return f"{value / 2**20:,.0f}"
    return fmt(round(value) if value is not None and key == "env_steps_per_second" else value)


def _write(out: Path | None, report: dict) -> None:
    if out is not None:
        from cartpole_dqn.files import write_json

        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "scaling.json", report)


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give one or more seed counts, each 1 or more")
    return sorted(set(values))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default="default,pqn", help="comma-separated presets (default: default,pqn)")
    p.add_argument("--seeds-list", type=_ints, default=[1, 16, 256, 1024], metavar="K,K,...",
                   help="seed counts K to run (default 1,16,256,1024)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available, else CPU), cpu, cuda or cuda:N")
    p.add_argument("--rule", default="v1", help="solve rule (default v1: CartPole-v1, 475 over 100 episodes)")
    p.add_argument("--max-steps", type=int, metavar="N", help="env-step budget per seed (default: the preset's)")
    p.add_argument("--max-episodes", type=int, metavar="N", help="episode budget per seed (default: the preset's)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads of the compiled program (default 1)")
    p.add_argument("--time-limit", type=float, default=300.0, metavar="S",
                   help="once a run of a preset takes longer than S seconds (its whole process), skip its larger K "
                        "(default 300)")
    p.add_argument("--run-timeout", type=float, metavar="S", help="stop a run after S seconds (default: none)")
    p.add_argument("--compile-cache", action="store_true",
                   help="use the on-disk compile cache (compile seconds are then those of a second run)")
    p.add_argument("--training-only", action="store_true",
                   help="skip train()'s checkpoints and per-seed scores.png (still timed as counted calls)")
    p.add_argument("--out", type=Path, metavar="DIR", help="write DIR/scaling.json (after every run)")
    p.add_argument("--one", help=argparse.SUPPRESS)      # the measuring process: a job as JSON
    args = p.parse_args()
    if args.one:
        print(RESULT + json.dumps(measure(**json.loads(args.one))))
        return

    presets = [name.strip() for name in args.presets.split(",") if name.strip()]
    started = datetime.now(timezone.utc)
    report = {"benchmark": "scaling", "date": started.isoformat(timespec="seconds"),
              "command": " ".join(["python", "benchmarks/scaling.py", *sys.argv[1:]]), "machine": None,
              "versions": None,
              "settings": {"presets": presets, "seeds_list": args.seeds_list, "device": args.device,
                           "rule": args.rule, "max_steps": args.max_steps, "max_episodes": args.max_episodes,
                           "threads": args.threads, "time_limit": args.time_limit, "run_timeout": args.run_timeout,
                           "compile_cache": args.compile_cache, "training_only": args.training_only,
                           "eval_every": 0, "final_eval_episodes": 0},
              "runs": [], "skipped": []}
    budget = "the preset's budget" if args.max_steps is None else f"at most {args.max_steps:,} env steps per seed"
    print(f"# scaling: presets {', '.join(presets)}, K = {', '.join(map(str, args.seeds_list))} (seeds 0..K-1, one "
          f"run each, in its own process), rule {args.rule}, device {args.device}, {budget}; evaluation off; "
          f"{'warm' if args.compile_cache else 'cold'} compiling"
          f"{'; training only (no checkpoints, no per-seed plots)' if args.training_only else ''}")
    print(f"# {started:%Y-%m-%d %H:%M} UTC")
    print(" | ".join(f"{head:>{width}}" for head, _, width in COLUMNS))
    stopped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="scaling-") as tmp:
        for k in args.seeds_list:
            for name in presets:
                if name in stopped:
                    report["skipped"].append({"preset": name, "seeds": k, "reason": stopped[name]})
                    print(f"# {name}, K={k}: skipped ({stopped[name]})")
                    continue
                job = dict(preset=name, seeds=k, device=args.device, rule=args.rule, max_steps=args.max_steps,
                           max_episodes=args.max_episodes, threads=args.threads, compile_cache=args.compile_cache,
                           training_only=args.training_only, out=str(Path(tmp) / f"{name}-k{k}"))
                run = _measure_in_process(job, args.run_timeout)
                if "error" in run:
                    report["runs"].append({"preset": name, "seeds": k, **run})
                    stopped[name] = f"K={k} failed"
                    print(f"# {name}, K={k}: failed after {run['process_seconds']:.0f} s: {run['error']}")
                else:
                    machine, versions = run.pop("machine"), run.pop("versions")
                    report["machine"], report["versions"] = report["machine"] or machine, report["versions"] or versions
                    report["runs"].append(run)
                    print(" | ".join(f"{cell(key, run[key]):>{width}}" for _, key, width in COLUMNS), flush=True)
                    if run["process_seconds"] > args.time_limit:
                        stopped[name] = f"K={k} took {run['process_seconds']:.0f} s > --time-limit {args.time_limit:g}"
                _write(args.out, report)
    print(f"# {report['machine']}")
    print("# s to all solved: until the last of the K seeds solved (compiling counted; '-': not every seed solved); "
          "env steps/s: every seed's steps over training seconds less compiling; ckpt s, plot s: train()'s "
          "checkpoints and per-seed scores.png" + (" (skipped)" if args.training_only else ""))
    _write(args.out, report)
    if args.out is not None:
        print(f"# every figure in {args.out / 'scaling.json'}")


if __name__ == "__main__":
    sys.exit(main())
