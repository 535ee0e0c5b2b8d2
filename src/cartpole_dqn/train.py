"""The training loop: act, step, store, learn, log; solve detection, evaluation and a clean stop on Ctrl-C.

K seeds run in lockstep: one `envs.step` moves every seed's environment, one `agent.learn` updates every seed's
network. A seed stops when it solves or its episode budget runs out; from then on it is masked out of learning and
logging, so its files describe exactly the agent at that moment. The only Python loop on the per-step path is over
the episodes that just ended.
"""

from __future__ import annotations

import dataclasses
import math
import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from .agent import Agent, learning_signal
from .checkpoint import save_model, write_json
from .config import Config, ConfigError, to_dict, validate
from .envs import EVAL_SEED_BASE, FINAL_EVAL_SEED_BASE, Rule, make_envs, observation_size, resolve_rule, step_envs
from .evaluate import Evaluator
from .replay import ReplayMemory
from .scores import ScoreLog


@dataclass
class RunResult:
    """What `train` returns: where the files went and every seed's summary (as written to summary.json)."""

    out: Path
    summaries: list[dict]
    aggregate: dict | None
    interrupted: bool

    @property
    def solved(self) -> bool:
        return all(s["solved"] for s in self.summaries)


def default_out(cfg: Config) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{cfg.env}-{cfg.preset}-s{cfg.seed}-{stamp}"


def prepare_out(out: Path) -> None:
    """Create the output folder, refusing a file, an unwritable place, or a folder that already holds a run."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} is a file: give a folder (new or empty)")
    if (out / "scores.csv").exists() or (out / "summary.json").exists():
        raise ConfigError(f"--out {str(out)!r} already holds a run: choose another folder so nothing is overwritten")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"--out {str(out)!r} is not writable: {e.strerror or e}") from None


class _Stop:
    """Turns the first Ctrl-C or SIGTERM into a request to stop after the current step; a second Ctrl-C aborts."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True


@contextmanager
def _stop_on_signals() -> Iterator[_Stop]:
    stop = _Stop()
    if not _in_main_thread():
        yield stop
        return
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


class Progress:
    """A live bar on a terminal; a plain line every 10 seconds when output is a file or a pipe."""

    def __init__(self, total_steps: int, enabled: bool):
        self.enabled = enabled
        self.tty = enabled and sys.stderr.isatty()
        self.bar = None
        self.last_line = 0.0
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=total_steps, unit="step", dynamic_ncols=True, leave=True, smoothing=0.1)
        self.shown = 0

    def update(self, steps: int, episodes: int, mean100: float, epsilon: float, sps: float, now: float) -> None:
        if not self.enabled:
            return
        text = f"ep {episodes} | mean100 {mean100:.1f} | eps {epsilon:.3f} | {sps:,.0f} steps/s"
        if self.bar is not None:
            if steps - self.shown >= 200 or now - self.last_line > 0.5:
                self.bar.update(steps - self.shown)
                self.shown = steps
                self.bar.set_postfix_str(text, refresh=False)
                self.last_line = now
        elif now - self.last_line >= 10.0:
            print(f"step {steps:,} | {text}", file=sys.stderr, flush=True)
            self.last_line = now

    def write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _title(cfg: Config, seed: int) -> str:
    return f"{cfg.env} - preset {cfg.preset} - seed {seed}"


def train(cfg: Config, out: str | Path | None = None, *, verbose: bool = True) -> RunResult:
    """Train `cfg.seeds` agents until each solves or its budget runs out; write scores, plots, models, summaries.

    Args:
        cfg: the complete configuration (see `config.Config`); validated again here.
        out: output folder; default `runs/<env>-<preset>-s<seed>-<time>`. A K-seed run writes `seed-<n>/` in it.
        verbose: show the progress bar and the solve lines.

    Returns:
        A RunResult with every seed's summary. Ctrl-C (SIGINT) or SIGTERM stops after the current step and
        returns with `interrupted=True`, every file complete.
    """
    cfg = validate(cfg)
    cfg, rule = resolve_rule(cfg)
    obs_size, n_actions = observation_size(cfg.env)
    out = Path(out) if out is not None else default_out(cfg)
    prepare_out(out)
    k = cfg.seeds
    dirs = [out] if k == 1 else [out / f"seed-{s}" for s in cfg.seed_list]
    for d in dirs:
        prepare_out(d)
    write_json(out / "config.json", to_dict(cfg))

    torch.manual_seed(cfg.seed)
    envs = make_envs(cfg.env, cfg.seed_list)
    agent = Agent(cfg, obs_size, n_actions)
    memory = ReplayMemory(k, cfg.buffer_size, obs_size, gamma=cfg.gamma, n_step=cfg.n_step,
                          prioritized=cfg.prioritized, alpha=cfg.priority_alpha)
    logs = [ScoreLog(d, rule) for d in dirs]
    evaluator = Evaluator(cfg.env, cfg.seed_list, cfg.eval_episodes, EVAL_SEED_BASE) if cfg.eval_every else None
    progress = Progress(cfg.max_steps, verbose)

    ep_return = np.zeros(k)
    ep_length = np.zeros(k, dtype=np.int64)
    loss_sum = torch.zeros(k)
    loss_count = torch.zeros(k)
    active = np.ones(k, dtype=bool)
    stopped_at = np.zeros(k, dtype=np.int64)         # env steps when each seed stopped
    stopped_wall = np.zeros(k)
    steps = 0
    learn_steps = 0                                  # env steps since learning started (for the replay ratio)
    next_plot = cfg.plot_every
    plot_turn = 0
    interrupted = False

    obs, _ = envs.reset(seed=cfg.seed_list)
    start = time.perf_counter()
    with _stop_on_signals() as stop:
        while active.any():
            if stop.requested:
                interrupted = True
                break
            # --- act and step --------------------------------------------------------------------------------
            obs_t = torch.from_numpy(obs).float()
            actions = agent.act(obs_t)
            next_obs, final_obs, reward, terminated, truncated = step_envs(envs, actions.numpy())
            steps += 1
            done = terminated | truncated
            # --- store -----------------------------------------------------------------------------------------
            stored_reward, no_bootstrap = learning_signal(cfg, reward, terminated, truncated)
            memory.add(obs_t, actions, torch.from_numpy(stored_reward).float(), torch.from_numpy(final_obs).float(),
                       torch.from_numpy(no_bootstrap).float(), torch.from_numpy(done).float())
            ep_return += reward
            ep_length += 1
            # --- learn -----------------------------------------------------------------------------------------
            learners = active if cfg.update_on_episode_end else active & ~done
            updated = torch.zeros(k, dtype=torch.bool)
            if len(memory) >= cfg.learning_starts:
                learn_steps += 1
                due = math.floor(learn_steps * cfg.replay_ratio) - math.floor((learn_steps - 1) * cfg.replay_ratio)
                if due and learners.any():
                    updated = torch.from_numpy(learners)
                    # PER's beta anneals to 1 over the step budget, so the bias correction is complete at the end.
                    beta = cfg.priority_beta + (1.0 - cfg.priority_beta) * min(1.0, steps / cfg.max_steps)
                    for _ in range(due):
                        batch = memory.sample(cfg.batch_size, agent.generator, cfg.replacement, beta)
                        stats = agent.learn(batch, updated)
                        if cfg.prioritized:
                            memory.update_priorities(batch.index, stats["td_error"], cfg.priority_eps)
                        loss_sum += stats["loss"] * updated
                        loss_count += updated
            agent.update_epsilon(steps, updated)
            # --- episodes that just ended ----------------------------------------------------------------------
            now = time.perf_counter() - start
            for i in np.flatnonzero(done & active):
                mean_loss = (loss_sum[i] / loss_count[i]).item() if loss_count[i] > 0 else float("nan")
                solved = logs[i].add_episode(ep_return[i], ep_length[i], agent.epsilon[i].item(), mean_loss,
                                             steps, now)
                if solved and verbose:
                    f = logs[i].figures()
                    who = f"seed {cfg.seed_list[i]}: " if k > 1 else ""
                    progress.write(f"{who}Solved: {f['episodes_before_solve']} episodes before solve "
                                   f"({f['episodes']} episodes, {f['steps_to_solve']} env steps, "
                                   f"{f['seconds_to_solve']:.1f} s)")
                if solved or len(logs[i].returns) >= cfg.max_episodes:
                    active[i] = False
                    stopped_at[i], stopped_wall[i] = steps, now
            ep_return[done] = 0.0
            ep_length[done] = 0
            loss_sum[torch.from_numpy(done)] = 0.0
            loss_count[torch.from_numpy(done)] = 0.0
            if steps >= cfg.max_steps:
                stopped_at[active], stopped_wall[active] = steps, now
                active[:] = False
            # --- evaluate ----------------------------------------------------------------------------------------
            if evaluator is not None and steps % cfg.eval_every == 0:
                returns = evaluator.run(agent.online)
                now = time.perf_counter() - start
                for i in np.flatnonzero(active | (stopped_at == steps)):
                    logs[i].add_eval(steps, now, returns[i])
            obs = next_obs
            # --- report ----------------------------------------------------------------------------------------
            if progress.enabled:
                lead = int(np.argmax([len(log.returns) for log in logs]))
                recent = logs[lead].returns[-rule.window:]
                progress.update(steps, len(logs[lead].returns), float(np.mean(recent)) if recent else 0.0,
                                float(agent.epsilon[lead]), steps * k / max(now, 1e-9), now)
            if cfg.plot_every and now >= next_plot:
                logs[plot_turn % k].plot(_title(cfg, cfg.seed_list[plot_turn % k]))
                plot_turn += 1
                next_plot = now + cfg.plot_every
    progress.close()
    envs.close()
    wall = time.perf_counter() - start
    stopped_at[active], stopped_wall[active] = steps, wall
    if evaluator is not None:
        evaluator.close()

    final = None
    if cfg.final_eval_episodes and not interrupted:
        final_eval = Evaluator(cfg.env, cfg.seed_list, cfg.final_eval_episodes, FINAL_EVAL_SEED_BASE)
        final = final_eval.run(agent.online)
        final_eval.close()

    summaries = []
    for i, (seed, log) in enumerate(zip(cfg.seed_list, logs)):
        log.close()
        log.plot(_title(cfg, seed))
        save_model(dirs[i] / "model.safetensors", agent.online, i, {"env": cfg.env, "seed": seed})
        seed_cfg = dataclasses.replace(cfg, seed=seed, seeds=1)
        if k > 1:
            write_json(dirs[i] / "config.json", to_dict(seed_cfg))
        summary = {"env": cfg.env, "preset": cfg.preset, "seed": seed, "rule": _rule_dict(rule), **log.figures(),
                   "env_steps": int(stopped_at[i]), "wall_seconds": round(float(stopped_wall[i]), 3),
                   "final_greedy_score": None if final is None else round(float(final[i].mean()), 3),
                   "interrupted": interrupted, "config": to_dict(seed_cfg)}
        write_json(dirs[i] / "summary.json", summary)
        summaries.append(summary)
    aggregate = None
    if k > 1:
        aggregate = aggregate_summary(summaries, cfg, rule, interrupted)
        write_json(out / "summary.json", aggregate)
    return RunResult(out, summaries, aggregate, interrupted)


def _rule_dict(rule: Rule) -> dict:
    return {"name": rule.name, "threshold": rule.threshold, "window": rule.window}


def median_or_none(values: list[float | None]) -> float | None:
    """Median with unsolved runs (None) counted as +infinity, as METRICS.md asks; None if that median is infinite."""
    if not values:
        return None
    m = float(np.median([math.inf if v is None else v for v in values]))
    return None if math.isinf(m) else m


def aggregate_summary(summaries: list[dict], cfg: Config, rule: Rule, interrupted: bool) -> dict:
    """Every seed's figures, their medians (unsolved = infinity) and the success rate."""
    keys = ("episodes_before_solve", "steps_to_solve", "seconds_to_solve", "eval_steps_to_solve",
            "eval_seconds_to_solve")
    per_seed = [{k: v for k, v in s.items() if k != "config"} for s in summaries]
    finals = [s["final_greedy_score"] for s in summaries if s["final_greedy_score"] is not None]
    return {
        "env": cfg.env, "preset": cfg.preset, "seeds": cfg.seed_list, "rule": _rule_dict(rule),
        "success_rate": sum(s["solved"] for s in summaries) / len(summaries),
        "eval_success_rate": sum(s["eval_steps_to_solve"] is not None for s in summaries) / len(summaries),
        **{f"median_{key}": median_or_none([s[key] for s in summaries]) for key in keys},
        "median_final_greedy_score": float(np.median(finals)) if finals else None,
        "interrupted": interrupted, "per_seed": per_seed, "config": to_dict(cfg),
    }
