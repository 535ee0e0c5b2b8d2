"""What does each improvement buy on CartPole? Runs `bench` for every variant on the same seeds and tabulates.

    python benchmarks/ablation.py                       # seeds 0-9, 150,000 env steps per seed
    python benchmarks/ablation.py --seeds 3 --max-steps 30000 --variants vanilla,+n-step
    python benchmarks/ablation.py --variants vanilla,+double --reuse classic=runs/classic-bench --reuse all=runs/x/all

Variants: the classic preset; vanilla DQN with a target network (the default preset without Double DQN and with
one-step returns); vanilla plus each improvement alone (+double, +dueling, +n-step, +prioritized, +noisy); all of
them together; and the `default` preset for reference. Each trains under the `v1` rule; EBS under `article` is read
from the same training scores (the rolling mean passes 195 before it can reach 475). Prints one row per variant
(median EBS under `article`, success rates, median and IQM [95% CI] steps to solve `v1`, median eval steps to solve,
median final greedy score) with seeds, machine and date, and draws the variants' median curves on one figure. It
measures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from cartpole_dqn import build
from cartpole_dqn.bench import bench_seed_dirs, curves_on_grid, fmt, load_bench, machine, read_curve, run_bench
from cartpole_dqn.files import write_json
from cartpole_dqn.plotting import pyplot, save_png
from cartpole_dqn.rundir import SCORES
from cartpole_dqn.scores import episodes_before_solve, read_scores
from cartpole_dqn.stats import describe

VANILLA = dict(double=False, n_step=1, dueling=False, prioritized=False, noisy=False)
N_STEP = build("default").n_step        # +n-step adds the default's horizon, so default = vanilla + double + n-step
NOISY = dict(noisy=True, epsilon_start=0.0, epsilon_end=0.0)
VARIANTS: dict[str, tuple[str, dict]] = {
    "classic": ("classic", {}),
    "vanilla": ("default", VANILLA),
    "+double": ("default", {**VANILLA, "double": True}),
    "+dueling": ("default", {**VANILLA, "dueling": True}),
    "+n-step": ("default", {**VANILLA, "n_step": N_STEP}),
    "+prioritized": ("default", {**VANILLA, "prioritized": True}),
    "+noisy": ("default", {**VANILLA, **NOISY}),
    "all": ("default", {**VANILLA, "double": True, "dueling": True, "n_step": N_STEP, "prioritized": True, **NOISY}),
    "default": ("default", {}),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--seed-start", type=int, default=0)
    p.add_argument("--max-steps", type=int, default=150_000)
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of: " + ", ".join(VARIANTS))
    p.add_argument("--out", default=None, help="folder for every variant's bench (default runs/ablation-<time>)")
    p.add_argument("--reuse", action="append", default=[], metavar="VARIANT=DIR",
                   help="take a variant from a finished `bench` folder instead of training it (e.g. the classic "
                        "preset's own bench, or a share of the variants run in another process); its rule, "
                        "seeds and budget are reported as they ran")
    args = p.parse_args()
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    reuse = dict(item.split("=", 1) for item in args.reuse)
    unknown = [n for n in [*names, *reuse] if n not in VARIANTS]
    if unknown:
        p.error(f"unknown variants {unknown}: allowed are {', '.join(VARIANTS)}")
    started = datetime.now(timezone.utc)
    out = Path(args.out or f"runs/ablation-{started:%Y%m%d-%H%M%S}")
    rows, curves = [], {}
    for name in [n for n in VARIANTS if n in names or n in reuse]:
        if name in reuse:
            result = load_bench(reuse[name])
        else:
            preset_name, overrides = VARIANTS[name]
            cfg = build(preset_name, overrides={**overrides, "rule": "v1", "seeds": args.seeds,
                                                "seed": args.seed_start, "max_steps": args.max_steps,
                                                "max_episodes": 100_000})
            result = run_bench(cfg, out / name.lstrip("+"), verbose=False)
        dirs = bench_seed_dirs(result)
        ebs = [episodes_before_solve(read_scores(d)[0], 195.0, 100) for d in dirs]
        stats, rep = result.stats, result.report
        v1 = rep["rule"]["name"] == "v1"      # a reused bench may have run under another rule (classic: article)
        rows.append({"variant": name, "bench": str(result.out), "rule": rep["rule"]["name"], "seeds": rep["seeds"],
                     "budget_steps": rep["config"]["max_steps"], "budget_episodes": rep["config"]["max_episodes"],
                     "article_ebs": describe(ebs), "article_solved": sum(e is not None for e in ebs) / len(ebs),
                     "v1_solved": stats["success_rate"] if v1 else None, "eval_solved": stats["eval_success_rate"],
                     "v1_steps": stats["steps_to_solve"] if v1 else None, "eval_steps": stats["eval_steps_to_solve"],
                     "final_greedy": stats["final_greedy_score"], "wall_seconds": rep["wall_seconds"],
                     "date": rep["date"]})
        curves[name] = curves_on_grid([read_curve(d / SCORES, 100) for d in dirs])
        print(f"# {name}: {'read from ' + reuse[name] if name in reuse else 'trained'}, "
              f"{rep['wall_seconds']:,.0f} s", flush=True)

    print(f"# ablation on CartPole-v1, {started:%Y-%m-%d %H:%M} UTC; {machine(1)}")
    print("# seeds, budget and rule per variant below; 'n/a' = the variant stopped at the `article` rule, so `v1` "
          "was not measured")
    heads = ("variant", "seeds", "budget", "rule", "EBS article", "solved art.", "solved v1", "solved eval",
             "steps v1 (median)", "steps v1 IQM [95% CI]", "eval steps", "final greedy")
    print(" | ".join(heads))
    for r in rows:
        steps = r["v1_steps"]
        ci = f"{fmt(steps['iqm'])} [{fmt(steps['ci_low'])}, {fmt(steps['ci_high'])}]" if steps else "n/a"
        budget = (f"{r['budget_steps']:,} steps" if r["budget_episodes"] >= 100_000
                  else f"{r['budget_episodes']:,} episodes")
        print(" | ".join([r["variant"], f"{r['seeds'][0]}-{r['seeds'][-1]}", budget, r["rule"],
                          fmt(r["article_ebs"]["median"]), f"{r['article_solved']:.0%}",
                          f"{r['v1_solved']:.0%}" if steps else "n/a", f"{r['eval_solved']:.0%}",
                          fmt(steps["median"]) if steps else "n/a", ci, fmt(r["eval_steps"]["median"]),
                          fmt(r["final_greedy"]["median"])]))
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "ablation.json", {"date": started.isoformat(), "machine": machine(1), "rows": rows})
    _plot(out / "ablation.png", curves)
    print(f"# figure: {out / 'ablation.png'}")


def _plot(path: Path, curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    fig, ax = pyplot().subplots(figsize=(10, 5.5), dpi=100)
    for name, (grid, values) in curves.items():
        with warnings.catch_warnings():       # grid points before any seed's first episode are all NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            ax.plot(grid, np.nanmedian(values, axis=0), label=name, lw=1.8)
    ax.axhline(475, color="#c0392b", ls=":", label="v1 goal 475")
    ax.axhline(195, color="#7f8c8d", ls=":", label="article goal 195")
    ax.set_xlabel("env steps")
    ax.set_ylabel("rolling-100 training score (median over seeds)")
    ax.set_title("CartPole-v1: what each improvement buys")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    save_png(fig, path)


if __name__ == "__main__":
    main()
