"""Side by side: Stable-Baselines3's DQN with rl-baselines3-zoo's tuned CartPole-v1 settings against our default
preset, on the same seeds, one after the other in one session, measured the same way.

    pip install -c constraints.txt -e '.[compare]'
    python benchmarks/compare.py --seeds 20                                   # the full comparison (slow on CPU)
    python benchmarks/compare.py --seeds 2 --sb3-steps 20000 --ours-steps 20000   # a quick check that it works

SB3: DQN("MlpPolicy", net_arch [256, 256], learning_rate 2.3e-3, batch_size 64, buffer_size 100000,
learning_starts 1000, gamma 0.99, target_update_interval 10, train_freq 256, gradient_steps 128,
exploration_fraction 0.16, exploration_final_eps 0.04); the zoo trains 5e4 steps, we give it 1e5 so that it may
solve. Ours: the default preset with the `v1` rule (a seed stops when it solves v1, or at --ours-steps).

Both are recorded the same way: every training episode (return, env steps and wall seconds at its end; SB3's via a
callback reading the Monitor's `infos["episode"]`), and a greedy evaluation of 10 fresh episodes every 2,000 env
steps on the same evaluation episodes (cartpole_dqn.evaluation.greedy_returns, same seeds), wall time including the
evaluations. The figures are computed from those records by the same functions (cartpole_dqn.scores): EBS under
`article`, steps and seconds to solve under `v1`, eval steps and seconds to solve `v1`, and the final greedy score
over 100 fresh episodes. Each seed of each library trains alone (K = 1), one torch thread, so the seconds compare
like for like. It prints per seed, the medians (unsolved = infinity), success rates and our-over-theirs ratios,
with the seeds, machine and date. It measures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import torch

from cartpole_dqn import build, train
from cartpole_dqn.bench import fmt, machine
from cartpole_dqn.core.networks import Network, Params
from cartpole_dqn.envs import EVAL_SEED_BASE, FINAL_EVAL_SEED_BASE
from cartpole_dqn.evaluation import greedy_returns
from cartpole_dqn.rules import RULES
from cartpole_dqn.rundir import SCORES
from cartpole_dqn.scores import episodes_before_solve
from cartpole_dqn.stats import median, success_rate

ENV = "CartPole-v1"
ZOO = dict(policy_kwargs=dict(net_arch=[256, 256]), learning_rate=2.3e-3, batch_size=64, buffer_size=100_000,
           learning_starts=1000, gamma=0.99, target_update_interval=10, train_freq=256, gradient_steps=128,
           exploration_fraction=0.16, exploration_final_eps=0.04)


class Record:
    """One run's training episodes and evaluations, the raw material of every figure."""

    def __init__(self) -> None:
        self.returns: list[float] = []
        self.env_steps: list[int] = []
        self.wall: list[float] = []
        self.evals: list[tuple[int, float, float]] = []     # (env steps, wall seconds, mean greedy return)
        self.final: float | None = None

    def figures(self) -> dict:
        """METRICS.md figures under the rules this comparison reports."""
        article, v1 = RULES["article"], RULES["v1"]
        out = {"ebs_article": episodes_before_solve(self.returns, article.threshold, article.window)}
        k = episodes_before_solve(self.returns, v1.threshold, v1.window)
        end = None if k is None else k + v1.window - 1
        out["solved_v1"] = k is not None
        out["steps_v1"] = None if end is None else self.env_steps[end]
        out["seconds_v1"] = None if end is None else round(self.wall[end], 1)
        first = next((e for e in self.evals if e[2] >= v1.threshold), None)
        out["eval_steps_v1"] = None if first is None else first[0]
        out["eval_seconds_v1"] = None if first is None else round(first[1], 1)
        out["final_greedy"] = self.final
        out["episodes"] = len(self.returns)
        return out


def _as_network(q_net: torch.nn.Module) -> tuple[Network, Params]:
    """SB3's Q-network (Linear and ReLU layers after an identity feature extractor) as our Network and one seed's
    params on a seed axis, so that both libraries are judged by the same `greedy_returns`."""
    linears = [m for m in q_net.q_net if isinstance(m, torch.nn.Linear)]
    net = Network(linears[0].in_features, linears[-1].out_features, tuple(m.out_features for m in linears[:-1]))
    names = [f"layer{j}" for j in range(len(linears) - 1)] + ["head"]
    # torch keeps a Linear's weight [out, in]; ours is [in, out].
    params = {name: {"weight": jnp.asarray(m.weight.detach().cpu().numpy().T)[None],
                     "bias": jnp.asarray(m.bias.detach().cpu().numpy())[None]} for name, m in zip(names, linears)}
    return net, params


def _mean_greedy(q_net: torch.nn.Module, seed: int, episodes: int, base: int, number: int) -> float:
    net, params = _as_network(q_net)
    return float(greedy_returns(net, params, ENV, [seed], episodes, base=base, number=number).mean())


def run_sb3(seed: int, steps: int, eval_every: int, eval_episodes: int) -> Record:
    """Train SB3's DQN on one seed, recording every training episode and evaluating every `eval_every` steps."""
    import gymnasium as gym
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.monitor import Monitor

    rec = Record()

    class Recorder(BaseCallback):
        def _on_training_start(self) -> None:
            self.start = time.perf_counter()

        def _on_step(self) -> bool:
            now = time.perf_counter() - self.start
            for info in self.locals["infos"]:
                if "episode" in info:
                    rec.returns.append(float(info["episode"]["r"]))
                    rec.env_steps.append(self.num_timesteps)
                    rec.wall.append(now)
            if self.num_timesteps % eval_every == 0:
                # Evaluation n of seed s plays the episodes our trainer's evaluation n plays.
                mean = _mean_greedy(self.model.q_net, seed, eval_episodes, EVAL_SEED_BASE, len(rec.evals) + 1)
                rec.evals.append((self.num_timesteps, time.perf_counter() - self.start, mean))
            return True

    model = DQN("MlpPolicy", Monitor(gym.make(ENV)), seed=seed, verbose=0, device="cpu", **ZOO)
    model.learn(total_timesteps=steps, callback=Recorder())
    rec.final = _mean_greedy(model.q_net, seed, 100, FINAL_EVAL_SEED_BASE, 0)
    return rec


def run_ours(seed: int, steps: int, eval_every: int, eval_episodes: int, threads: int, out: Path) -> Record:
    """Train our default preset on one seed under the v1 rule and read its records back from its files."""
    cfg = build("default", overrides=dict(rule="v1", seed=seed, seeds=1, max_steps=steps, eval_every=eval_every,
                                          eval_episodes=eval_episodes, final_eval_episodes=100, plot_every=0.0,
                                          threads=threads))
    result = train(cfg, out, verbose=False)
    rec = Record()
    with open(out / SCORES, newline="") as f:
        for row in csv.DictReader(f):
            rec.returns.append(float(row["return"]))
            rec.env_steps.append(int(row["env_steps"]))
            rec.wall.append(float(row["wall_seconds"]))
    with open(out / "eval.csv", newline="") as f:
        rec.evals = [(int(r["env_steps"]), float(r["wall_seconds"]), float(r["mean"])) for r in csv.DictReader(f)]
    rec.final = result.summaries[0]["final_greedy_score"]
    return rec


KEYS = ("ebs_article", "steps_v1", "seconds_v1", "eval_steps_v1", "eval_seconds_v1", "final_greedy")
HEADS = ("EBS article", "steps v1", "seconds v1", "eval steps v1", "eval s v1", "final greedy")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--seed-start", type=int, default=0)
    p.add_argument("--sb3-steps", type=int, default=100_000, help="SB3 budget (the zoo's 5e4, doubled)")
    p.add_argument("--ours-steps", type=int, default=300_000, help="our per-seed budget (the preset's)")
    p.add_argument("--eval-every", type=int, default=2000)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--threads", type=int, default=1, help="torch threads for both libraries")
    p.add_argument("--only", choices=("ours", "sb3"), help="run one side only")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    seeds = list(range(args.seed_start, args.seed_start + args.seeds))
    started = datetime.now(timezone.utc)
    figures: dict[str, list[dict]] = {"ours": [], "sb3": []}
    try:
        from importlib.metadata import version

        sb3_version = version("stable-baselines3")
    except Exception:   # not installed: fine with --only ours
        sb3_version = "(not installed)"
    print(f"# compare: ours (preset default, rule v1, <= {args.ours_steps:,} steps) vs SB3 {sb3_version}"
          f" DQN (rl-baselines3-zoo CartPole-v1 settings, {args.sb3_steps:,} steps)")
    print(f"# seeds {seeds}; {started:%Y-%m-%d %H:%M} UTC; {machine()}; each run alone (K = 1), in turn")
    print(f"# eval: {args.eval_episodes} greedy episodes every {args.eval_every:,} env steps; final greedy: 100 "
          "episodes; '-' = never reached (infinity in medians)")
    print(" | ".join(f"{h:>13}" for h in ("seed", "library", *HEADS)), flush=True)
    with tempfile.TemporaryDirectory(prefix="compare-") as tmp:
        for seed in seeds:   # each row as it comes, so an interrupted comparison keeps what it measured
            if args.only != "sb3":
                figures["ours"].append(run_ours(seed, args.ours_steps, args.eval_every, args.eval_episodes,
                                                args.threads, Path(tmp) / f"ours-{seed}").figures())
            if args.only != "ours":
                figures["sb3"].append(run_sb3(seed, args.sb3_steps, args.eval_every, args.eval_episodes).figures())
            for lib in ("ours", "sb3"):
                if figures[lib]:
                    print(" | ".join(f"{v:>13}" for v in (seed, lib, *(fmt(figures[lib][-1][k]) for k in KEYS))),
                          flush=True)
    medians = {lib: {k: median([f[k] for f in figs]) for k in KEYS} for lib, figs in figures.items() if figs}
    for lib, m in medians.items():
        print(" | ".join(f"{v:>13}" for v in ("median", lib, *(fmt(m[k]) for k in KEYS))))
    if len(medians) == 2:
        ratios = [m_o / m_t if math.isfinite(m_o) and math.isfinite(m_t) and m_t else None
                  for m_o, m_t in ((medians["ours"][k], medians["sb3"][k]) for k in KEYS)]
        print(" | ".join(f"{v:>13}" for v in ("ratio", "ours/sb3", *("-" if r is None else f"{r:.2f}"
                                                                     for r in ratios))))
    for lib, figs in figures.items():
        if figs:
            print(f"# {lib}: success rate article {success_rate([f['ebs_article'] is not None for f in figs]):.0%}, "
                  f"v1 {success_rate([f['solved_v1'] for f in figs]):.0%}, "
                  f"eval v1 {success_rate([f['eval_steps_v1'] is not None for f in figs]):.0%}; "
                  f"median episodes {np.median([f['episodes'] for f in figs]):.0f}")


if __name__ == "__main__":
    sys.exit(main())
