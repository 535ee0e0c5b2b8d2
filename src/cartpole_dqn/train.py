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
from typing import Callable, Iterator

import numpy as np
import torch

from . import __version__
from .agent import Agent, learning_signal
from .checkpoint import (CHECKPOINT_DIR, CheckpointError, env_state, env_state_exact, load_checkpoint, load_memory,
                         memory_tensors, need, save_checkpoint, save_model, set_env_state, write_json)
from .config import Config, ConfigError, from_dict, resolve_device, to_dict, validate
from .envs import EVAL_SEED_BASE, FINAL_EVAL_SEED_BASE, Rule, make_envs, observation_size, resolve_rule, step_envs
from .errors import missing, require
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


class Board:
    """Live metrics for TensorBoard: one run per seed under `OUT/tb`, scalars written when an episode ends."""

    def __init__(self, out: Path, seeds: list[int]):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # `train` checked the package; this is torch's side of it failing to import
            raise missing("tensorboard", "tensorboard", "--tensorboard") from None
        dirs = [out / "tb"] if len(seeds) == 1 else [out / "tb" / f"seed-{s}" for s in seeds]
        self.writers = [SummaryWriter(str(d)) for d in dirs]

    def episode(self, i: int, steps: int, scalars: dict[str, float]) -> None:
        for name, value in scalars.items():
            if not math.isnan(value):
                self.writers[i].add_scalar(name, value, steps)

    def close(self) -> None:
        for w in self.writers:
            w.close()


@dataclass
class LoopState:
    """What the loop changes besides the agent, the memory, the environments and the score logs: all of it goes
    into a checkpoint, so a resumed loop carries on exactly."""

    obs: np.ndarray                 # [K, obs] observations to act from next
    ep_return: np.ndarray           # [K] return of each seed's current episode so far
    ep_length: np.ndarray           # [K]
    stat_sum: torch.Tensor          # [3, K] sums of loss, mean Q and |TD error| over this episode's updates
    stat_count: torch.Tensor        # [K] updates in this episode
    active: np.ndarray              # [K] seeds still training
    stopped_at: np.ndarray          # [K] env steps when each seed stopped
    stopped_wall: np.ndarray        # [K] wall seconds when each seed stopped
    steps: int = 0
    learn_steps: int = 0            # env steps since learning started (for the replay ratio)
    wall: float = 0.0               # wall seconds of training before this process (resume)

    @classmethod
    def fresh(cls, obs: np.ndarray, device: torch.device) -> "LoopState":
        k = len(obs)
        return cls(obs, np.zeros(k), np.zeros(k, dtype=np.int64), torch.zeros(3, k, device=device),
                   torch.zeros(k, device=device),
                   np.ones(k, dtype=bool), np.zeros(k, dtype=np.int64), np.zeros(k))

    def new_episodes(self, done: np.ndarray) -> None:
        self.ep_return[done] = 0.0
        self.ep_length[done] = 0
        self.stat_sum[:, torch.from_numpy(done)] = 0.0
        self.stat_count[torch.from_numpy(done)] = 0.0


# Called every `report_every` env steps with (env steps, each seed's rolling mean); True asks the loop to stop.
Report = Callable[[int, np.ndarray], bool]


class Run:
    """One training run's working parts: config, environments, agent, replay memory, evaluator, score logs and
    loop state. `checkpoint` writes all of them; `Run.resume` builds them back from a checkpoint."""

    report: Report | None = None         # see `train`
    report_every: int = 1000

    def __init__(self, cfg: Config, rule: Rule, out: Path, *, tensorboard: bool = False):
        self.cfg, self.rule, self.out = cfg, rule, out
        k = cfg.seeds
        self.dirs = [out] if k == 1 else [out / f"seed-{s}" for s in cfg.seed_list]
        self.obs_size, self.n_actions = observation_size(cfg.env)
        self.device = resolve_device(cfg.device)
        torch.set_num_threads(cfg.threads)
        self.board = Board(out, cfg.seed_list) if tensorboard else None
        torch.manual_seed(cfg.seed)
        self.envs = make_envs(cfg.env, cfg.seed_list)
        space = self.envs.single_observation_space
        bounds = (space.low, space.high) if cfg.obs_scale == "bounds" else None
        self.agent = Agent(cfg, self.obs_size, self.n_actions, self.device, bounds)
        self.memory = ReplayMemory(k, cfg.buffer_size, self.obs_size, gamma=cfg.gamma, n_step=cfg.n_step,
                                   prioritized=cfg.prioritized, alpha=cfg.priority_alpha, device=self.device)
        self.evaluator = (Evaluator(cfg.env, cfg.seed_list, cfg.eval_episodes, EVAL_SEED_BASE) if cfg.eval_every
                          else None)
        obs, _ = self.envs.reset(seed=cfg.seed_list)
        self.state = LoopState.fresh(obs, self.device)
        self.logs: list[ScoreLog] = []
        self._start: float | None = None     # perf_counter at wall second 0 of this run, once the loop runs

    # ---------------------------------------------------------------------------------------- checkpoints ---
    def checkpoint(self) -> None:
        """Write everything the loop needs to continue into OUT/checkpoint (atomically; see checkpoint.py)."""
        agent, memory, st = self.agent, self.memory, self.state
        tensors = {"online": agent.online.flat, "epsilon": agent.epsilon, "generator": agent.generator.get_state(),
                   "torch_rng": torch.get_rng_state(), "obs": torch.from_numpy(st.obs),
                   "ep_return": torch.from_numpy(st.ep_return), "stat_sum": st.stat_sum, "stat_count": st.stat_count}
        if agent.target is not agent.online:
            tensors["target"] = agent.target.flat
        for key, value in agent.optimizer.state_dict()["state"].get(0, {}).items():
            tensors[f"optimizer.{key}"] = value
        for key, value in memory_tensors(memory).items():
            tensors[f"memory.{key}"] = value
        for i, log in enumerate(self.logs):
            for key, value in log.arrays().items():
                tensors[f"scores.{i}.{key}"] = torch.from_numpy(value)
        wall = st.wall if self._start is None else time.perf_counter() - self._start
        meta = {"cartpole_dqn_version": __version__, "config": to_dict(self.cfg), "env": self.cfg.env,
                "obs_size": self.obs_size, "n_actions": self.n_actions, "seeds": self.cfg.seed_list,
                "steps": st.steps, "learn_steps": st.learn_steps, "updates": agent.updates, "wall": wall,
                "ep_length": st.ep_length.tolist(), "active": st.active.tolist(),
                "stopped_at": st.stopped_at.tolist(), "stopped_wall": st.stopped_wall.tolist(),
                "memory": {"pos": memory.pos, "size": memory.size},
                "solved_at": [log.solved_at for log in self.logs],
                "eval_solved_at": [log.eval_solved_at for log in self.logs],
                "envs": [env_state(e) for e in self.envs.envs],
                "evaluator": self.evaluator.state() if self.evaluator is not None else None}
        save_checkpoint(self.out / CHECKPOINT_DIR, tensors, meta)

    @classmethod
    def resume(cls, out: Path, *, max_episodes: int | None = None, max_steps: int | None = None,
               tensorboard: bool = False, verbose: bool = True) -> "Run":
        """The run saved in OUT/checkpoint, ready to continue; a larger budget re-activates unsolved seeds.

        CartPole and the other classic-control tasks continue exactly: the result equals the run left
        uninterrupted. For environments whose state gymnasium cannot hand over, resuming is an approximation:
        the networks, memory, optimizer, generators and scores are restored, but every unfinished episode is
        abandoned and the environments restart on new seeds (a message says so).
        """
        tensors, meta = load_checkpoint(out / CHECKPOINT_DIR)
        try:
            cfg = from_dict(meta["config"])
        except (ConfigError, KeyError, TypeError) as e:
            raise CheckpointError(f"the checkpoint in {str(out)!r} holds no usable configuration: {e}") from None
        overrides = {key: value for key, value in (("max_episodes", max_episodes), ("max_steps", max_steps))
                     if value is not None}
        cfg = validate(dataclasses.replace(cfg, **overrides))
        cfg, rule = resolve_rule(cfg)
        sizes = observation_size(cfg.env)
        if (meta.get("obs_size"), meta.get("n_actions")) != sizes:
            raise CheckpointError(f"the checkpoint in {str(out)!r} was made for {meta.get('obs_size')} "
                                  f"observations and {meta.get('n_actions')} actions; {cfg.env} has {sizes[0]} "
                                  f"and {sizes[1]}")
        run = cls(cfg, rule, out, tensorboard=tensorboard)
        try:
            exact = run._restore(tensors, meta)
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as e:
            raise CheckpointError(f"the checkpoint in {str(out)!r} is not usable: {e}") from None
        if not exact and verbose:
            print(f"cartpole-dqn: {cfg.env}'s state cannot be saved: unfinished episodes restart on new seeds, so "
                  "this resumed run only approximates an uninterrupted one", file=sys.stderr)
        st = run.state
        st.active = np.array([log.solved_at is None and len(log.returns) < cfg.max_episodes for log in run.logs])
        st.active &= st.steps < cfg.max_steps
        if not st.active.any():
            raise ConfigError(f"nothing to resume in {str(out)!r}: every seed has solved or spent its budget "
                              f"(max_episodes={cfg.max_episodes}, max_steps={cfg.max_steps}); raise "
                              "--max-episodes or --max-steps to train the unsolved ones further")
        return run

    def _restore(self, tensors: dict[str, torch.Tensor], meta: dict) -> bool:
        """Put every part back as the checkpoint recorded it; False if the environments could only be restarted."""
        agent, cfg, k = self.agent, self.cfg, self.cfg.seeds
        with torch.no_grad():
            agent.online.flat.copy_(need(tensors, "online", agent.online.flat.data))
            if agent.target is not agent.online:
                agent.target.flat.copy_(need(tensors, "target", agent.target.flat.data))
        opt = {key[10:]: t for key, t in tensors.items() if key.startswith("optimizer.")}
        if opt:
            agent.optimizer.load_state_dict({"state": {0: opt},
                                             "param_groups": agent.optimizer.state_dict()["param_groups"]})
        agent.epsilon = need(tensors, "epsilon", agent.epsilon).to(agent.device, copy=True)
        agent.generator.set_state(need(tensors, "generator"))
        torch.set_rng_state(need(tensors, "torch_rng"))
        agent.updates = int(meta["updates"])
        load_memory(self.memory, {key[7:]: t for key, t in tensors.items() if key.startswith("memory.")},
                    meta["memory"])
        if self.evaluator is not None:
            self.evaluator.load_state(meta["evaluator"])
        self.logs = [ScoreLog.from_arrays(d, self.rule, {key: tensors[f"scores.{i}.{key}"].numpy()
                                                         for key in ScoreLog.ARRAYS},
                                          meta["solved_at"][i], meta["eval_solved_at"][i])
                     for i, d in enumerate(self.dirs)]
        st = LoopState(need(tensors, "obs").numpy().copy(), need(tensors, "ep_return").numpy().copy(),
                       np.array(meta["ep_length"], dtype=np.int64), need(tensors, "stat_sum").to(self.device, copy=True),
                       need(tensors, "stat_count").to(self.device, copy=True), np.array(meta["active"], dtype=bool),
                       np.array(meta["stopped_at"], dtype=np.int64), np.array(meta["stopped_wall"], dtype=float),
                       int(meta["steps"]), int(meta["learn_steps"]), float(meta["wall"]))
        if len(st.obs) != k or len(meta["envs"]) != k:
            raise ValueError(f"it holds {len(st.obs)} seeds, the configuration {k}")
        self.state = st
        exact = all(env_state_exact(e) and "state" in snap for e, snap in zip(self.envs.envs, meta["envs"]))
        if exact:
            for env, snap in zip(self.envs.envs, meta["envs"]):
                set_env_state(env, snap)
        else:
            seeds = np.random.SeedSequence([cfg.seed, st.steps]).generate_state(k).tolist()
            st.obs, _ = self.envs.reset(seed=[int(s) for s in seeds])
            st.new_episodes(np.ones(k, dtype=bool))
            self.memory.episode_steps.zero_()    # the abandoned episodes' n-step returns stop where they were cut
        return exact

    # ------------------------------------------------------------------------------------------ the loop ---
    def loop(self, verbose: bool) -> bool:
        """Train until every seed has stopped or a stop is requested; True if interrupted (Ctrl-C, SIGTERM)."""
        cfg, rule, agent, memory, envs, logs, st = (self.cfg, self.rule, self.agent, self.memory, self.envs,
                                                   self.logs, self.state)
        k, dev = cfg.seeds, self.device
        progress = Progress(cfg.max_steps, verbose)
        progress.shown = st.steps
        next_plot = cfg.plot_every
        plot_turn = 0
        interrupted = False
        self._start = start = time.perf_counter() - st.wall
        with _stop_on_signals() as stop:
            while st.active.any():
                if stop.requested:
                    interrupted = True
                    break
                save_due = False
                # --- act and step --------------------------------------------------------------------------
                obs_t = torch.from_numpy(st.obs).float().to(dev)
                actions = agent.act(obs_t)
                next_obs, final_obs, reward, terminated, truncated = step_envs(envs, actions.cpu().numpy())
                st.steps += 1
                done = terminated | truncated
                # --- store -----------------------------------------------------------------------------------
                stored_reward, no_bootstrap = learning_signal(cfg, reward, terminated, truncated)
                memory.add(obs_t, actions, *(torch.from_numpy(a).float().to(dev)
                                             for a in (stored_reward, final_obs, no_bootstrap, done)))
                st.ep_return += reward
                st.ep_length += 1
                # --- learn -----------------------------------------------------------------------------------
                learners = st.active if cfg.update_on_episode_end else st.active & ~done
                updated = torch.zeros(k, dtype=torch.bool, device=dev)
                if len(memory) >= cfg.learning_starts:
                    st.learn_steps += 1
                    due = 0
                    if st.learn_steps % cfg.train_every == 0:
                        due = (math.floor(st.learn_steps * cfg.replay_ratio)
                               - math.floor((st.learn_steps - cfg.train_every) * cfg.replay_ratio))
                    if due and learners.any():
                        updated = torch.from_numpy(learners).to(dev)
                        agent.set_learning_rate(st.steps)
                        # PER's beta anneals to 1 over the step budget, so the bias correction is complete at
                        # the end.
                        beta = cfg.priority_beta + (1.0 - cfg.priority_beta) * min(1.0, st.steps / cfg.max_steps)
                        for _ in range(due):
                            batch = memory.sample(cfg.batch_size, agent.generator, cfg.replacement, beta)
                            stats = agent.learn(batch, updated)
                            if cfg.prioritized:
                                memory.update_priorities(batch.index, stats["td_error"], cfg.priority_eps)
                            st.stat_sum += torch.stack([stats["loss"], stats["q"], stats["td"]]) * updated
                            st.stat_count += updated
                agent.update_epsilon(st.steps, updated)
                # --- episodes that just ended ------------------------------------------------------------------
                now = time.perf_counter() - start
                for i in np.flatnonzero(done & st.active):
                    n = st.stat_count[i].item()
                    loss, q, td = (st.stat_sum[:, i] / n).tolist() if n > 0 else [float("nan")] * 3
                    solved = logs[i].add_episode(st.ep_return[i], st.ep_length[i], agent.epsilon[i].item(), loss,
                                                 st.steps, now)
                    episodes = len(logs[i].returns)
                    if self.board is not None:
                        self.board.episode(i, st.steps, {
                            "episode/return": st.ep_return[i], "episode/length": st.ep_length[i],
                            f"episode/rolling_mean_{rule.window}": float(np.mean(logs[i].returns[-rule.window:])),
                            "train/epsilon": agent.epsilon[i].item(), "train/loss": loss, "train/mean_q": q,
                            "train/td_error": td, "speed/env_steps_per_s": st.steps * k / max(now, 1e-9)})
                    if solved and verbose:
                        f = logs[i].figures()
                        who = f"seed {cfg.seed_list[i]}: " if k > 1 else ""
                        progress.write(f"{who}Solved: {f['episodes_before_solve']} episodes before solve "
                                       f"({f['episodes']} episodes, {f['steps_to_solve']} env steps, "
                                       f"{f['seconds_to_solve']:.1f} s)")
                    if solved or episodes >= cfg.max_episodes:
                        st.active[i] = False
                        st.stopped_at[i], st.stopped_wall[i] = st.steps, now
                    save_due |= solved or (cfg.save_every > 0 and episodes % cfg.save_every == 0)
                st.new_episodes(done)
                if st.steps >= cfg.max_steps:
                    st.stopped_at[st.active], st.stopped_wall[st.active] = st.steps, now
                    st.active[:] = False
                # --- evaluate --------------------------------------------------------------------------------------
                if self.evaluator is not None and st.steps % cfg.eval_every == 0:
                    returns = self.evaluator.run(agent.online)
                    now = time.perf_counter() - start
                    for i in np.flatnonzero(st.active | (st.stopped_at == st.steps)):
                        logs[i].add_eval(st.steps, now, returns[i])
                st.obs = next_obs
                # --- checkpoint and report ---------------------------------------------------------------------
                if save_due and st.active.any():   # the last one is written below
                    self.checkpoint()
                if progress.enabled:
                    lead = int(np.argmax([len(log.returns) for log in logs]))
                    recent = logs[lead].returns[-rule.window:]
                    progress.update(st.steps, len(logs[lead].returns), float(np.mean(recent)) if recent else 0.0,
                                    float(agent.epsilon[lead]), st.steps * k / max(now, 1e-9), now)
                if cfg.plot_every and now >= next_plot:
                    logs[plot_turn % k].plot(_title(cfg, cfg.seed_list[plot_turn % k]))
                    plot_turn += 1
                    next_plot = now + cfg.plot_every
                if self.report is not None and st.steps % self.report_every == 0 and \
                        self.report(st.steps, self.rolling_means()):
                    stop.requested = True
            progress.close()
            wall = time.perf_counter() - start
            st.stopped_at[st.active], st.stopped_wall[st.active] = st.steps, wall
            self.checkpoint()
        return interrupted

    def rolling_means(self) -> np.ndarray:
        """[K] each seed's mean training return over its last `window` episodes (NaN before its first)."""
        w = self.rule.window
        return np.array([np.mean(log.returns[-w:]) if log.returns else np.nan for log in self.logs])

    def finish(self, interrupted: bool) -> "RunResult":
        """Close everything, play the final greedy episodes, write plots, models and summaries."""
        cfg, rule, st = self.cfg, self.rule, self.state
        k = cfg.seeds
        self.envs.close()
        if self.evaluator is not None:
            self.evaluator.close()
        if self.board is not None:
            self.board.close()
        final = None
        if cfg.final_eval_episodes and not interrupted:
            final_eval = Evaluator(cfg.env, cfg.seed_list, cfg.final_eval_episodes, FINAL_EVAL_SEED_BASE)
            final = final_eval.run(self.agent.online)
            final_eval.close()
        write_json(self.out / "config.json", to_dict(cfg))
        summaries = []
        for i, (seed, log) in enumerate(zip(cfg.seed_list, self.logs)):
            log.close()
            log.plot(_title(cfg, seed))
            save_model(self.dirs[i] / "model.safetensors", self.agent.online, i, {"env": cfg.env, "seed": seed})
            seed_cfg = dataclasses.replace(cfg, seed=seed, seeds=1)
            if k > 1:
                write_json(self.dirs[i] / "config.json", to_dict(seed_cfg))
            summary = {"env": cfg.env, "preset": cfg.preset, "seed": seed, "rule": _rule_dict(rule), **log.figures(),
                       "env_steps": int(st.stopped_at[i]), "wall_seconds": round(float(st.stopped_wall[i]), 3),
                       "final_greedy_score": None if final is None else round(float(final[i].mean()), 3),
                       "interrupted": interrupted, "config": to_dict(seed_cfg)}
            write_json(self.dirs[i] / "summary.json", summary)
            summaries.append(summary)
        aggregate = None
        if k > 1:
            aggregate = aggregate_summary(summaries, cfg, rule, interrupted)
            write_json(self.out / "summary.json", aggregate)
        return RunResult(self.out, summaries, aggregate, interrupted)


def train(cfg: Config, out: str | Path | None = None, *, verbose: bool = True,
          tensorboard: bool = False, report: Report | None = None, report_every: int = 1000) -> RunResult:
    """Train `cfg.seeds` agents until each solves or its budget runs out; write scores, plots, models, summaries.

    Args:
        cfg: the complete configuration (see `config.Config`); validated again here.
        out: output folder; default `runs/<env>-<preset>-s<seed>-<time>`. A K-seed run writes `seed-<n>/` in it.
        verbose: show the progress bar and the solve lines.
        tensorboard: also write live scalars under `OUT/tb` (needs the `tensorboard` extra).
        report: called every `report_every` env steps with (env steps, [K] rolling mean of each seed's training
            returns over the solve window, NaN before its first episode); returning True stops the run as an
            interrupt does. The tuner's pruner listens here; it is off the per-step path.

    Returns:
        A RunResult with every seed's summary. Ctrl-C (SIGINT) or SIGTERM stops after the current step and
        returns with `interrupted=True`, every file complete and a checkpoint in `OUT/checkpoint` that `resume`
        continues from.
    """
    cfg = validate(cfg)
    cfg, rule = resolve_rule(cfg)
    observation_size(cfg.env)             # refuse a bad environment, device or extra before creating any folder
    resolve_device(cfg.device)
    if tensorboard:
        require("tensorboard", "tensorboard", "--tensorboard")
    out = Path(out) if out is not None else default_out(cfg)
    prepare_out(out)
    run = Run(cfg, rule, out, tensorboard=tensorboard)
    for d in run.dirs:
        prepare_out(d)
    write_json(out / "config.json", to_dict(cfg))
    run.logs = [ScoreLog(d, rule) for d in run.dirs]
    run.report, run.report_every = report, max(1, report_every)
    return run.finish(run.loop(verbose))


def resume(out: str | Path, *, max_episodes: int | None = None, max_steps: int | None = None,
           verbose: bool = True, tensorboard: bool = False) -> RunResult:
    """Continue the run in `out` from its checkpoint (see `Run.resume`); a larger `max_episodes` or `max_steps`
    extends the budget. On CartPole the scores equal those of the run left uninterrupted, wall-clock aside."""
    out = Path(out)
    if tensorboard:
        require("tensorboard", "tensorboard", "--tensorboard")
    if not out.is_dir():
        raise CheckpointError(f"{str(out)!r} is not a run folder" + ("" if out.exists() else " (it does not exist)"))
    run = Run.resume(out, max_episodes=max_episodes, max_steps=max_steps, tensorboard=tensorboard,
                     verbose=verbose)
    return run.finish(run.loop(verbose))


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
