"""The training driver: compiled chunks of env steps, and between them everything a user sees.

The program (core/loop.py) runs a chunk of env steps of every seed at once and hands back one record per seed and
step. Between chunks, and only there, Python appends the finished episodes to scores.csv, moves the progress bar,
runs the greedy evaluation, redraws scores.png, writes checkpoints and honours Ctrl-C and SIGTERM. A task with a
JAX twin (CartPole, Acrobot, MountainCar) is stepped inside the program; any other gymnasium task (LunarLander, any
Discrete-action, flat-Box id) is stepped by gymnasium, which the program calls back once per env step, and yields
the same records. A seed that solves or spends its budget freezes inside the program at that step, so its files
describe the agent at that moment.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from . import __version__
from .checkpoint import (CHECKPOINT_DIR, CheckpointError, env_state, env_state_exact, load_checkpoint, save_checkpoint,
                         save_model, set_env_state, write_json)
from .config import Config, ConfigError, from_dict, resolve_device, to_dict, validate
from .core import enable_compile_cache, loop, snapshot, use_threads
from .core.envs import has_twin, make_twin
from .core.networks import Network, input_bounds
from .envs import (EVAL_SEED_BASE, FINAL_EVAL_SEED_BASE, Rule, _make_one, check_spaces, make_envs, observation_size,
                   resolve_rule, step_envs)
from .errors import missing, require
from .evaluate import greedy_returns
from .scores import ScoreLog

# Env steps per compiled chunk: long enough that the driver's chores cost nothing, short enough (a fraction of a
# second on a laptop core) for a live progress bar and a prompt stop. Evaluation and report intervals divide it.
CHUNK_STEPS = 1000


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
    """Live metrics for TensorBoard (tensorboardX writes the event files, no torch needed): one run per seed under
    `OUT/tb`, scalars written when an episode ends."""

    def __init__(self, out: Path, seeds: list[int]):
        try:
            from tensorboardX import SummaryWriter
        except ImportError:  # `train` checked the package; this is its import failing
            raise missing("tensorboardX", "tensorboard", "--tensorboard") from None
        dirs = [out / "tb"] if len(seeds) == 1 else [out / "tb" / f"seed-{s}" for s in seeds]
        self.writers = [SummaryWriter(str(d)) for d in dirs]

    def episode(self, i: int, steps: int, scalars: dict[str, float]) -> None:
        for name, value in scalars.items():
            if not math.isnan(value):
                self.writers[i].add_scalar(name, value, steps)

    def close(self) -> None:
        for w in self.writers:
            w.close()


# Called every `report_every` env steps with (env steps, each seed's rolling mean); True asks the loop to stop.
Report = Callable[[int, np.ndarray], bool]


def chunk_steps(cfg: Config) -> int:
    """Vector steps of the compiled chunk: CHUNK_STEPS env steps per seed (fewer if the budget is smaller), in
    whole vector steps of `num_envs` env steps. A call may run fewer (`steps_until`)."""
    return loop.vector_steps(cfg, min(CHUNK_STEPS, cfg.max_steps))


def steps_until(cfg: Config, t: int, length: int, *intervals: int) -> int:
    """Vector steps of the next chunk from env step t: the compiled length, or fewer so that the chunk ends at
    the first vector step at or past the next multiple of each interval (evaluations, the tuner's reports).
    Boundaries fall on the interval's grid whatever the chunk history, so a resumed run meets them too."""
    n = length
    for every in intervals:
        if every:
            n = min(n, loop.vector_steps(cfg, (t // every + 1) * every - t))
    return n


def _crossed(every: int, before: int, now: int) -> bool:
    """Whether the clock passed a multiple of `every` between two chunk ends."""
    return every > 0 and now // every > before // every


def network(cfg: Config, space: Any, n_actions: int) -> Network:
    """The Q-network `cfg` asks for on an observation space (its bounds scale the inputs under obs_scale=bounds)."""
    bounds = input_bounds(space.low, space.high) if cfg.obs_scale == "bounds" else (None, None)
    return Network(int(space.shape[0]), n_actions, tuple(cfg.hidden), cfg.dueling, cfg.noisy, cfg.layer_norm,
                   cfg.noisy_sigma0, *bounds)


class _InProgram:
    """Steps a task with a JAX twin: each chunk is one call of the compiled program.

    Seeds that have stopped cost (nearly) nothing: once half of the seeds in the program have stopped, the
    program is halved and runs only active ones (a gather before each chunk and a scatter after, padded with a
    stopped seed, so that only K, K/2, K/4, ... are ever compiled). A resize waits until the chunks run since the
    last one took longer than that compile did, so compiling never costs more than the time it saves. A stopped
    seed's state does not change, so this changes no result, only the time."""

    def __init__(self, cfg: Config, net: Network, task: loop.Task, length: int):
        self.program = jax.jit(loop.make_chunk(cfg, net, task, length), donate_argnums=1)
        self.compiled: dict[int, Any] = {}
        self.compile_seconds = 0.0
        self.size = cfg.seeds
        self.last_compile = 0.0          # seconds the last program took to compile
        self.since_resize = 0.0          # seconds of chunks run since then

    def _compiled(self, t: int, states: loop.SeedState) -> Any:
        k = int(states.active.shape[0])
        if k not in self.compiled:
            started = time.perf_counter()
            self.compiled[k] = self.program.lower(jnp.int32(t), states, jnp.int32(0)).compile()
            self.last_compile, self.since_resize = time.perf_counter() - started, 0.0
            self.compile_seconds += self.last_compile
        return self.compiled[k]

    def prepare(self, t: int, states: loop.SeedState) -> loop.SeedState:
        """Compile the chunk for these shapes (the seconds go to `compile_seconds`)."""
        self._compiled(t, states)
        return states

    def run(self, t: int, states: loop.SeedState, n: int) -> tuple[int, loop.SeedState, loop.Record]:
        started, compiled = time.perf_counter(), self.compile_seconds
        t_next, states, records = self._run(t, states, n)
        self.since_resize += time.perf_counter() - started - (self.compile_seconds - compiled)
        return t_next, states, records

    def _run(self, t: int, states: loop.SeedState, n: int) -> tuple[int, loop.SeedState, loop.Record]:
        running = np.asarray(states.active)
        active = np.flatnonzero(running)
        if self.since_resize > self.last_compile:
            while len(active) and len(active) <= self.size // 2:
                self.size //= 2
        if self.size == states.active.shape[0]:
            (t_next, states), records = self._compiled(t, states)(jnp.int32(t), states, jnp.int32(n))
            return int(t_next), states, _first(records, n)
        stopped = np.flatnonzero(~running)
        idx = np.concatenate([active, np.full(self.size - len(active), stopped[0])])
        part = _gather(states, jnp.asarray(idx))
        (t_next, part), part_records = self._compiled(t, part)(jnp.int32(t), part, jnp.int32(n))
        states = _scatter(states, jnp.asarray(idx), part)
        part_records = _first(part_records, n)
        records = jax.tree.map(lambda r: np.zeros((n, len(states.active), *r.shape[2:]), r.dtype),
                               part_records)
        for full, piece in zip(records, part_records):
            full[:, idx] = piece
        return int(t_next), states, records


def _first(records: loop.Record, n: int) -> loop.Record:
    """The records of a chunk's first n steps (those it ran), on the host."""
    return jax.tree.map(lambda r: r[:n], jax.device_get(records))


@jax.jit
def _gather(states: loop.SeedState, idx: jax.Array) -> loop.SeedState:
    return jax.tree.map(lambda a: a[idx], states)


@functools.partial(jax.jit, donate_argnums=0)
def _scatter(states: loop.SeedState, idx: jax.Array, part: loop.SeedState) -> loop.SeedState:
    return jax.tree.map(lambda a, p: a.at[idx].set(p), states, part)


class _OnHost:
    """Steps a task gymnasium plays on the host: each chunk is one call of the compiled program too, which calls
    back to step the gymnasium environments once per env step (`loop.make_host_chunk`)."""

    def __init__(self, cfg: Config, net: Network, task: loop.Task, length: int, envs: Any):
        first, chunk = loop.make_host_chunk(cfg, net, task, length, lambda actions: step_envs(envs, actions))
        self.first = jax.jit(first)
        self.program = jax.jit(chunk, donate_argnums=1)
        self.actions: jax.Array | None = None      # chosen for the next env step (part of a checkpoint)
        self.compiled: Any = None
        self.compile_seconds = 0.0

    def prepare(self, t: int, states: loop.SeedState) -> loop.SeedState:
        """The first actions (unless a checkpoint held them), and the chunk compiled (the seconds go to
        `compile_seconds`)."""
        started = time.perf_counter()
        if self.actions is None:
            states, self.actions = self.first(states)
        self.compiled = self.program.lower(jnp.int32(t), states, self.actions, jnp.int32(0)).compile()
        self.compile_seconds += time.perf_counter() - started
        return states

    def run(self, t: int, states: loop.SeedState, n: int) -> tuple[int, loop.SeedState, loop.Record]:
        (t_next, states, self.actions), records = self.compiled(jnp.int32(t), states, self.actions, jnp.int32(n))
        return int(t_next), states, _first(records, n)


class Run:
    """One training run's working parts: config, network, task, the seeds' state pytree, score logs and clocks.
    `checkpoint` writes all of it; `Run.resume` builds it back from a checkpoint."""

    report: Report | None = None         # see `train`
    report_every: int = 1000

    def __init__(self, cfg: Config, rule: Rule, out: Path, *, tensorboard: bool = False):
        self.cfg, self.rule, self.out = cfg, rule, out
        k = cfg.seeds
        self.dirs = [out] if k == 1 else [out / f"seed-{s}" for s in cfg.seed_list]
        probe = _make_one(cfg.env)
        self.obs_size, self.n_actions = check_spaces(probe, cfg.env)
        self.net = network(cfg, probe.observation_space, self.n_actions)
        probe.close()
        self.board = Board(out, cfg.seed_list) if tensorboard else None
        seeds = jnp.asarray(cfg.seed_list)
        if has_twin(cfg.env):
            self.envs = None
            self.task = loop.Task(*make_twin(cfg.env), rule.threshold, rule.window)
            self.states = jax.vmap(lambda s: loop.init_seed(cfg, self.net, self.task, s))(seeds)
        else:
            e = cfg.num_envs
            self.envs = make_envs(cfg.env, k * e)
            self.task = loop.Task(None, None, rule.threshold, rule.window)
            obs, _ = self.envs.reset(seed=[s * e + j for s in cfg.seed_list for j in range(e)])
            self.states = jax.vmap(lambda s, o: loop.init_seed(cfg, self.net, self.task, s, o))(
                seeds, jnp.asarray(obs, jnp.float32).reshape(k, e, -1))
        self.device = resolve_device(cfg.device)
        self.states = jax.device_put(self.states, self.device)
        self.t = 0                                   # env steps per seed (the seeds run in lockstep)
        self.wall = 0.0                              # wall seconds of training before this process (resume)
        self.compile_seconds = 0.0
        self.stopped_wall = np.zeros(k)
        self.host_actions: np.ndarray | None = None  # a host task's next actions, restored from a checkpoint
        self.logs: list[ScoreLog] = []
        self._start: float | None = None

    # ---------------------------------------------------------------------------------------- checkpoints ---
    def checkpoint(self, stepper: Any = None) -> None:
        """Write everything the loop needs to continue into OUT/checkpoint (atomically; see checkpoint.py)."""
        arrays = {f"state.{name}": a for name, a in snapshot.to_arrays(self.states).items()}
        for i, log in enumerate(self.logs):
            for name, a in log.arrays().items():
                arrays[f"scores.{i}.{name}"] = a
        actions = stepper.actions if isinstance(stepper, _OnHost) else self.host_actions
        if actions is not None:
            arrays["host_actions"] = np.asarray(actions)
        wall = self.wall if self._start is None else time.perf_counter() - self._start
        learn_steps = max(0, self.t - self.cfg.learning_starts + 1) if self.cfg.buffer_size >= \
            self.cfg.learning_starts else 0
        meta = {"cartpole_dqn_version": __version__, "config": to_dict(self.cfg), "env": self.cfg.env,
                "obs_size": self.obs_size, "n_actions": self.n_actions, "seeds": self.cfg.seed_list,
                "steps": self.t, "learn_steps": learn_steps,
                "updates": np.asarray(self.states.agent.updates).tolist(), "wall": wall,
                "compile_seconds": self.compile_seconds, "stopped_wall": self.stopped_wall.tolist(),
                "solved_at": [log.solved_at for log in self.logs],
                "eval_solved_at": [log.eval_solved_at for log in self.logs],
                "envs": None if self.envs is None else [env_state(e) for e in self.envs.envs]}
        save_checkpoint(self.out / CHECKPOINT_DIR, arrays, meta)

    @classmethod
    def resume(cls, out: Path, *, max_episodes: int | None = None, max_steps: int | None = None,
               tensorboard: bool = False, verbose: bool = True) -> "Run":
        """The run saved in OUT/checkpoint, ready to continue; a larger budget re-activates unsolved seeds.

        Tasks stepped inside the program continue exactly: the result equals the run left uninterrupted. So do the
        classic-control tasks played on the host. For other host environments, whose state gymnasium cannot hand
        over, resuming is an approximation: the networks, memory, optimizer, keys and scores are restored, but
        every unfinished episode is abandoned and the environments restart on new seeds (a message says so).
        """
        arrays, meta = load_checkpoint(out / CHECKPOINT_DIR)
        try:
            cfg = from_dict(meta["config"])
        except (ConfigError, KeyError, TypeError) as e:
            raise CheckpointError(f"the checkpoint in {str(out)!r} holds no usable configuration: {e}") from None
        overrides = {key: value for key, value in (("max_episodes", max_episodes), ("max_steps", max_steps))
                     if value is not None}
        cfg = validate(dataclasses.replace(cfg, **overrides))
        cfg, rule = resolve_rule(cfg)
        use_threads(cfg.threads)
        sizes = observation_size(cfg.env)
        if (meta.get("obs_size"), meta.get("n_actions")) != sizes:
            raise CheckpointError(f"the checkpoint in {str(out)!r} was made for {meta.get('obs_size')} "
                                  f"observations and {meta.get('n_actions')} actions; {cfg.env} has {sizes[0]} "
                                  f"and {sizes[1]}")
        run = cls(cfg, rule, out, tensorboard=tensorboard)
        try:
            exact = run._restore(arrays, meta)
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise CheckpointError(f"the checkpoint in {str(out)!r} is not usable: {e}") from None
        if not exact and verbose:
            print(f"cartpole-dqn: {cfg.env}'s state cannot be saved: unfinished episodes restart on new seeds, so "
                  "this resumed run only approximates an uninterrupted one", file=sys.stderr)
        s = run.states
        active = (~np.asarray(s.solved) & (np.asarray(s.episodes) < cfg.max_episodes)) & (run.t < cfg.max_steps)
        if not active.any():
            raise ConfigError(f"nothing to resume in {str(out)!r}: every seed has solved or spent its budget "
                              f"(max_episodes={cfg.max_episodes}, max_steps={cfg.max_steps}); raise "
                              "--max-episodes or --max-steps to train the unsolved ones further")
        run.states = s._replace(active=jnp.asarray(active))
        if run.envs is not None:
            # A host environment kept stepping while its seed was frozen: the seed's last observation is stale.
            stale = active & ~np.asarray(s.active) & (np.asarray(s.stopped_at) < run.t)
            if stale.any():
                run._restart_episodes(stale)
        return run

    def _restore(self, arrays: dict[str, np.ndarray], meta: dict) -> bool:
        """Put every part back as the checkpoint recorded it; False if host environments could only be restarted."""
        k = self.cfg.seeds
        if len(meta["seeds"]) != k:
            raise ValueError(f"it holds {len(meta['seeds'])} seeds, the configuration {k}")
        self.states = jax.device_put(snapshot.from_arrays(self.states, {name[6:]: a for name, a in arrays.items()
                                                                        if name.startswith("state.")}),
                                     self.device)
        self.t, self.wall = int(meta["steps"]), float(meta["wall"])
        self.compile_seconds = float(meta.get("compile_seconds", 0.0))
        self.stopped_wall = np.array(meta["stopped_wall"], dtype=float)
        self.logs = [ScoreLog.from_arrays(d, self.rule, {key: arrays[f"scores.{i}.{key}"] for key in ScoreLog.ARRAYS},
                                          meta["solved_at"][i], meta["eval_solved_at"][i])
                     for i, d in enumerate(self.dirs)]
        if self.envs is None:
            return True
        self.host_actions = arrays["host_actions"]
        exact = all(env_state_exact(e) and "state" in snap for e, snap in zip(self.envs.envs, meta["envs"]))
        if exact:
            for env, snap in zip(self.envs.envs, meta["envs"]):
                set_env_state(env, snap)
            return True
        self._restart_episodes(np.ones(k, dtype=bool))
        return False

    def _restart_episodes(self, which: np.ndarray) -> None:
        """Start new episodes on the host environments of the seeds `which`, on seeds of their own (derived from the
        seed and the clock): their unfinished episodes are abandoned, and their n-step returns stop where they
        were cut. The next actions of every seed are chosen afresh."""
        e = self.cfg.num_envs
        fresh = np.random.SeedSequence([self.cfg.seed, self.t]).generate_state(len(which) * e).reshape(-1, e)
        obs = np.asarray(self.states.obs).copy()
        for i in np.flatnonzero(which):
            for j in range(e):
                obs[i, j], _ = self.envs.envs[i * e + j].reset(seed=int(fresh[i, j]))
        s, w = self.states, jnp.asarray(which)
        restart = lambda a, value=0: jnp.where(w.reshape(-1, *[1] * (a.ndim - 1)), value, a)
        if self.cfg.algo == "pqn":   # the rollout's lambda-returns stop where the episodes were cut
            last = jnp.maximum(s.memory.filled - 1, 0)
            cut = jax.vmap(lambda end, i: end.at[i].set(True))(s.memory.episode_end, last)
            memory = s.memory._replace(episode_end=jnp.where(w[:, None, None] & (s.memory.filled > 0)[:, None, None],
                                                             cut, s.memory.episode_end))
        else:
            memory = s.memory._replace(episode_steps=restart(s.memory.episode_steps))
        self.states = s._replace(obs=jnp.asarray(obs, jnp.float32), ep_return=restart(s.ep_return),
                                 ep_length=restart(s.ep_length), stat_sum=restart(s.stat_sum),
                                 stat_count=restart(s.stat_count), memory=memory)
        self.host_actions = None

    # ------------------------------------------------------------------------------------------ the loop ---
    def _stepper(self, length: int) -> Any:
        if self.envs is None:
            return _InProgram(self.cfg, self.net, self.task, length)
        stepper = _OnHost(self.cfg, self.net, self.task, length, self.envs)
        if self.host_actions is not None:
            stepper.actions = jnp.asarray(self.host_actions)
        return stepper

    def loop(self, verbose: bool) -> bool:
        """Train until every seed has stopped or a stop is requested; True if interrupted (Ctrl-C, SIGTERM)."""
        cfg, k = self.cfg, self.cfg.seeds
        length = chunk_steps(cfg)
        report_every = self.report_every if self.report is not None else 0
        progress = Progress(cfg.max_steps, verbose)
        progress.shown = self.t
        next_plot, plot_turn = cfg.plot_every, 0
        interrupted = False
        self._start = start = time.perf_counter() - self.wall
        with _stop_on_signals() as stop:
            stepper = self._stepper(length)
            self.states = stepper.prepare(self.t, self.states)
            compiled_before = self.compile_seconds
            active = np.asarray(self.states.active)
            while active.any():
                if stop.requested:
                    interrupted = True
                    break
                before, t0 = time.perf_counter() - start, self.t
                n = steps_until(cfg, self.t, length, cfg.eval_every, report_every)
                self.t, self.states, records = stepper.run(self.t, self.states, n)
                now = time.perf_counter() - start
                self.compile_seconds = compiled_before + stepper.compile_seconds
                save_due = self._log(records, t0, before, now, progress if verbose else None)
                active = np.asarray(self.states.active)
                if _crossed(cfg.eval_every, t0, self.t):
                    self._evaluate(active)
                    now = time.perf_counter() - start
                if save_due and active.any():   # the last one is written below
                    self.checkpoint(stepper)
                if progress.enabled:
                    lead = int(np.argmax([len(log.returns) for log in self.logs]))
                    recent = self.logs[lead].returns[-self.rule.window:]
                    progress.update(self.t, len(self.logs[lead].returns), float(np.mean(recent)) if recent else 0.0,
                                    float(records.epsilon[-1, lead]), self.t * k / max(now, 1e-9), now)
                if cfg.plot_every and now >= next_plot:
                    self.logs[plot_turn % k].plot(_title(cfg, cfg.seed_list[plot_turn % k]))
                    plot_turn += 1
                    next_plot = now + cfg.plot_every
                if self.report is not None and _crossed(report_every, t0, self.t) and \
                        self.report(self.t, self.rolling_means()):
                    stop.requested = True
            progress.close()
            self.compile_seconds = compiled_before + stepper.compile_seconds
            self.wall = time.perf_counter() - start
            self.stopped_wall[active] = self.wall
            self._start = None
            self.checkpoint(stepper)
        return interrupted

    def _log(self, records: loop.Record, t0: int, before: float, now: float, progress: Progress | None) -> bool:
        """Append the chunk's finished episodes to the score logs; True if a checkpoint is due (a seed solved, or
        reached a multiple of save_every episodes). Wall seconds are interpolated over the chunk's steps."""
        cfg, k = self.cfg, self.cfg.seeds
        n = len(records.ended)
        wall = before + (now - before) * (np.arange(1, n + 1) / n)
        steps = np.minimum(t0 + cfg.num_envs * np.arange(1, n + 1), cfg.max_steps)   # the clock after each step
        save_due = False
        for j, i, e in np.argwhere(records.ended):     # step, seed, environment: each seed's episodes in order
            log = self.logs[i]
            solved = log.add_episode(records.ret[j, i, e], records.length[j, i, e], records.epsilon[j, i],
                                     records.loss[j, i, e], int(steps[j]), wall[j],
                                     solved=bool(records.solved[j, i, e]))
            if self.board is not None:
                w = self.rule.window
                self.board.episode(i, int(steps[j]), {
                    "episode/return": float(records.ret[j, i, e]), "episode/length": float(records.length[j, i, e]),
                    f"episode/rolling_mean_{w}": float(np.mean(log.returns[-w:])),
                    "train/epsilon": float(records.epsilon[j, i]), "train/loss": float(records.loss[j, i, e]),
                    "train/mean_q": float(records.q[j, i, e]), "train/td_error": float(records.td[j, i, e]),
                    "speed/env_steps_per_s": steps[j] * k / max(wall[j], 1e-9)})
            if solved and progress is not None:
                f = log.figures()
                who = f"seed {cfg.seed_list[i]}: " if k > 1 else ""
                progress.write(f"{who}Solved: {f['episodes_before_solve']} episodes before solve "
                               f"({f['episodes']} episodes, {f['steps_to_solve']} env steps, "
                               f"{f['seconds_to_solve']:.1f} s)")
            save_due |= solved or (cfg.save_every > 0 and len(log.returns) % cfg.save_every == 0)
        for j, i in np.argwhere(records.stopped):
            self.stopped_wall[i] = wall[j]
        return save_due

    def _evaluate(self, active: np.ndarray) -> None:
        """Greedy episodes of every seed's current network; logged for the seeds still training (or frozen at
        exactly this step). Evaluation n uses keys of its own, (EVAL_SEED_BASE, seed, n)."""
        returns = greedy_returns(self.net, self.states.agent.params, self.cfg.env, self.cfg.seed_list,
                                 self.cfg.eval_episodes, base=EVAL_SEED_BASE, number=self.t // self.cfg.eval_every)
        now = time.perf_counter() - self._start
        stopped_here = np.asarray(self.states.stopped_at) == self.t
        for i in np.flatnonzero(active | stopped_here):
            self.logs[i].add_eval(self.t, now, returns[i])

    def rolling_means(self) -> np.ndarray:
        """[K] each seed's mean training return over its last `window` episodes (NaN before its first)."""
        w = self.rule.window
        return np.array([np.mean(log.returns[-w:]) if log.returns else np.nan for log in self.logs])

    def finish(self, interrupted: bool) -> "RunResult":
        """Close everything, play the final greedy episodes, write plots, models and summaries."""
        cfg, rule, k = self.cfg, self.rule, self.cfg.seeds
        if self.envs is not None:
            self.envs.close()
        if self.board is not None:
            self.board.close()
        params = self.states.agent.params
        final = None
        if cfg.final_eval_episodes and not interrupted:
            final = greedy_returns(self.net, params, cfg.env, cfg.seed_list, cfg.final_eval_episodes,
                                   base=FINAL_EVAL_SEED_BASE, number=0)
        write_json(self.out / "config.json", to_dict(cfg))
        params = jax.device_get(params)
        active = np.asarray(self.states.active)
        stopped_at = np.where(active, self.t, np.asarray(self.states.stopped_at))
        summaries = []
        for i, (seed, log) in enumerate(zip(cfg.seed_list, self.logs)):
            log.close()
            log.plot(_title(cfg, seed))
            save_model(self.dirs[i] / "model.safetensors", self.net, jax.tree.map(lambda a: a[i], params),
                       {"env": cfg.env, "seed": seed})
            seed_cfg = dataclasses.replace(cfg, seed=seed, seeds=1)
            if k > 1:
                write_json(self.dirs[i] / "config.json", to_dict(seed_cfg))
            summary = {"env": cfg.env, "preset": cfg.preset, "seed": seed, "rule": _rule_dict(rule), **log.figures(),
                       "env_steps": int(stopped_at[i]), "wall_seconds": round(float(self.stopped_wall[i]), 3),
                       "compile_seconds": round(self.compile_seconds, 3),
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
            interrupt does. The tuner's pruner listens here, between compiled chunks.

    Returns:
        A RunResult with every seed's summary. Ctrl-C (SIGINT) or SIGTERM stops at the end of the current chunk
        and returns with `interrupted=True`, every file complete and a checkpoint in `OUT/checkpoint` that `resume`
        continues from.
    """
    cfg = validate(cfg)
    cfg, rule = resolve_rule(cfg)
    use_threads(cfg.threads)
    observation_size(cfg.env)             # refuse a bad environment, device or extra before creating any folder
    device = resolve_device(cfg.device)
    if tensorboard:
        require("tensorboardX", "tensorboard", "--tensorboard")
    out = Path(out) if out is not None else default_out(cfg)
    prepare_out(out)
    enable_compile_cache()
    with jax.default_device(device):
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
    extends the budget. The scores equal those of the run left uninterrupted, wall-clock aside."""
    out = Path(out)
    if tensorboard:
        require("tensorboardX", "tensorboard", "--tensorboard")
    if not out.is_dir():
        raise CheckpointError(f"{str(out)!r} is not a run folder" + ("" if out.exists() else " (it does not exist)"))
    enable_compile_cache()
    run = Run.resume(out, max_episodes=max_episodes, max_steps=max_steps, tensorboard=tensorboard,
                     verbose=verbose)
    with jax.default_device(run.device):
        return run.finish(run.loop(verbose))


def _rule_dict(rule: Rule) -> dict:
    return {"name": rule.name, "threshold": rule.threshold, "window": rule.window}


def median_or_none(values: list[float | None]) -> float | None:
    """Median with unsolved runs (None) counted as +infinity (docs/metrics.md); None if that median is infinite."""
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
