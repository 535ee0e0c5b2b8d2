"""The driver: compiled chunks of env steps, and between them the parts that write what a user sees.

The program (program.py) runs a chunk of env steps of every seed at once and hands back one record per seed and
step. Between chunks, and only there, the driver calls each part's hooks: score logs, progress, evaluation, plots,
TensorBoard, checkpoints, the tuner's report and the run's results are parts (parts.py), so a new output is a new
part, not an edit of this loop. Ctrl-C and SIGTERM stop the loop at the end of the current chunk; the parts' end
hooks then run with the signals still caught, and every part closes what it opened, whatever happens.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections import OrderedDict
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .config import Config
from .errors import OutputError, Stop, stop_on_signals
from .core import loop
from .program import Program
from .rules import Rule
from .rundir import CHECKPOINT
from .scores import ScoreLog

# Env steps per compiled chunk: long enough that the driver's chores cost nothing, short enough (a fraction of a
# second on a laptop core) for a live progress bar and a prompt stop.
CHUNK_STEPS = 1000

# Compiled chunks by (program key, length, seeds), the last few: another run of the same program in this process
# (a resume, tune trials, the API called in a loop) starts without tracing or compiling it again.
_COMPILED: OrderedDict[tuple, Any] = OrderedDict()
KEEP_COMPILED = 8


@dataclass
class Training:
    """A run in progress: its program, the seeds' state, the clock and every seed's score log. Parts read it and
    may ask the loop to stop (`stop_requested`)."""

    program: Program
    rule: Rule
    out: Path                                # the run folder
    dirs: list[Path]                         # each seed's folder (`out` itself for one seed)
    states: loop.SeedState
    logs: list[ScoreLog]
    t: int = 0                               # env steps per seed (the seeds run in lockstep)
    wall_before: float = 0.0                 # seconds of training before this process (a resumed run)
    compile_seconds: float = 0.0
    stopped_wall: np.ndarray = field(default_factory=lambda: np.zeros(0))
    stop_requested: bool = False
    interrupted: bool = False
    started: float | None = None             # perf_counter when this process began training
    hypers: list[dict[str, Any]] = field(default_factory=list)   # each seed's own numeric hyperparameters, if any

    @property
    def cfg(self) -> Config:
        return self.program.cfg

    def seed_cfg(self, i: int) -> Config:
        """The configuration of seed i (the i-th of `cfg.seed_list`) as if it had trained alone."""
        own = self.hypers[i] if self.hypers else {}
        return dataclasses.replace(self.cfg, seed=self.cfg.seed_list[i], seeds=1, **own)

    def seconds(self) -> float:
        """Wall seconds of training so far, earlier processes included."""
        return self.wall_before + (0.0 if self.started is None else time.perf_counter() - self.started)

    def active(self) -> np.ndarray:
        """[K] which seeds still train."""
        return np.asarray(self.states.active)

    def rolling_means(self) -> np.ndarray:
        """[K] each seed's mean training return over its last `window` episodes (NaN before its first)."""
        w = self.rule.window
        return np.array([np.mean(log.returns[-w:]) if log.returns else np.nan for log in self.logs])


@dataclass
class Chunk:
    """What one chunk hands the parts: its records [n, K, ...] on the host, the clock and wall seconds after each
    of its n vector steps (wall interpolated over the chunk), and what the parts noted (seeds that solved in it, a
    checkpoint due)."""

    records: loop.Record
    t0: int
    steps: np.ndarray
    wall: np.ndarray
    solved: list[int] = field(default_factory=list)
    checkpoint_due: bool = False


class Part:
    """A driver output. `every` (env steps, 0: none) asks for a chunk boundary on that grid; the hooks do nothing
    unless overridden; `close` releases what the part opened and runs whatever happened."""

    every: int = 0

    def on_start(self, run: Training) -> None:
        pass

    def on_chunk(self, run: Training, chunk: Chunk) -> None:
        pass

    def on_end(self, run: Training) -> None:
        pass

    def close(self) -> None:
        pass


def chunk_steps(cfg: Config) -> int:
    """Vector steps of the compiled chunk: CHUNK_STEPS env steps per seed, in whole vector steps of `num_envs` env
    steps, whatever the budget (so runs with other budgets share the program). A call may run fewer
    (`steps_until`)."""
    return loop.vector_steps(cfg, CHUNK_STEPS)


def steps_until(cfg: Config, t: int, length: int, intervals: Sequence[int]) -> int:
    """Vector steps of the next chunk from env step t: the compiled length, or fewer so that the chunk ends at
    the step budget or at the first vector step at or past the next multiple of each interval. Boundaries fall
    on the interval's grid whatever the chunk history, so a resumed run meets them too."""
    n = min(length, loop.vector_steps(cfg, cfg.max_steps - t))
    for every in intervals:
        if every:
            n = min(n, loop.vector_steps(cfg, (t // every + 1) * every - t))
    return n


def crossed(every: int, before: int, now: int) -> bool:
    """Whether the clock passed a multiple of `every` between two chunk ends."""
    return every > 0 and now // every > before // every


class Stepper:
    """Runs chunks of a program, compiled once per number of seeds in it.

    Seeds that have stopped cost (nearly) nothing on a twin task: once half of the seeds in the program have
    stopped, the program is halved and runs only active ones (a gather before each chunk and a scatter after,
    padded with a stopped seed, so that only K, K/2, K/4, ... are ever compiled). A resize waits until the chunks
    run since the last one took longer than that compile did, so compiling never costs more than it saves. A
    stopped seed's state does not change, so this changes no result, only the time. A host task keeps every seed
    in the program (its gymnasium environments are K x E)."""

    def __init__(self, program: Program, length: int):
        self.fn = program.chunk(length)
        self.key = None if program.key is None else (program.key, length)     # with K, `_COMPILED`'s key
        self.resizable = not program.on_host
        self.compiled: dict[int, Any] = {}
        self.compile_seconds = 0.0
        self.size = 0
        self.last_compile = 0.0          # seconds the last program took to compile
        self.since_resize = 0.0          # seconds of chunks run since then

    def compile(self, t: int, states: loop.SeedState) -> Any:
        k = int(states.active.shape[0])
        if k not in self.compiled:
            key = None if self.key is None else (*self.key, k)
            started = time.perf_counter()
            if key is not None and key in _COMPILED:
                _COMPILED.move_to_end(key)
                compiled = _COMPILED[key]
            else:
                compiled = self.fn.lower(jnp.int32(t), states, jnp.int32(0)).compile()
                if key is not None:
                    _COMPILED[key] = compiled
                    while len(_COMPILED) > KEEP_COMPILED:
                        _COMPILED.popitem(last=False)
            self.compiled[k] = compiled
            self.last_compile, self.since_resize = time.perf_counter() - started, 0.0
            self.compile_seconds += self.last_compile
            self.size = self.size or k
        return self.compiled[k]

    def run(self, t: int, states: loop.SeedState, n: int) -> tuple[int, loop.SeedState, loop.Record]:
        started, compiled = time.perf_counter(), self.compile_seconds
        running = np.asarray(states.active)
        active = np.flatnonzero(running)
        if self.resizable and self.since_resize > self.last_compile:
            while len(active) and len(active) <= self.size // 2:
                self.size //= 2
        if self.size == len(running):
            (t_next, states), records = self.compile(t, states)(jnp.int32(t), states, jnp.int32(n))
            records = _first(records, n)
        else:
            idx = np.concatenate([active, np.full(self.size - len(active), np.flatnonzero(~running)[0])])
            part = _gather(states, jnp.asarray(idx))
            (t_next, part), part_records = self.compile(t, part)(jnp.int32(t), part, jnp.int32(n))
            states = _scatter(states, jnp.asarray(idx), part)
            part_records = _first(part_records, n)
            records = jax.tree.map(lambda r: np.zeros((n, len(running), *r.shape[2:]), r.dtype), part_records)
            for full, piece in zip(records, part_records):
                full[:, idx] = piece
        self.since_resize += time.perf_counter() - started - (self.compile_seconds - compiled)
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


def drive(run: Training, parts: Sequence[Part]) -> None:
    """Train until every seed has stopped, a part asks to stop, or Ctrl-C / SIGTERM does (`run.interrupted`);
    then the parts' end hooks. Every part is closed on every path.

    A signal before the first chunk of a fresh run raises KeyboardInterrupt (nothing was trained, and the run
    folder removes what the run made). One that arrives during the end hooks marks the run interrupted (so the
    final evaluation is skipped if it has not begun) and lets them finish: the files describe what was trained.
    A part that cannot write (a full disk, a folder made read-only) stops the loop; the end hooks still save
    what they can, then `OutputError` names the file."""
    cfg = run.cfg
    length = chunk_steps(cfg)
    intervals = [p.every for p in parts if p.every]
    failed: list[OSError] = []
    try:
        with ExitStack() as stack, stop_on_signals() as stop:
            for part in parts:
                stack.callback(part.close)
            run.started = time.perf_counter()
            stepper = Stepper(run.program, length)
            compiled_before = run.compile_seconds
            stepper.compile(run.t, run.states)
            run.compile_seconds = compiled_before + stepper.compile_seconds
            if stop.requested and run.t == 0:
                raise KeyboardInterrupt
            try:
                for part in parts:
                    part.on_start(run)
                _loop(run, parts, stepper, stop, length, intervals, compiled_before)
            except OSError as e:
                failed.append(e)
                run.interrupted = True        # cut short: no final evaluation, and the summary says so
            run.wall_before, run.started = run.seconds(), None
            run.stopped_wall[run.active()] = run.wall_before
            for part in parts:
                run.interrupted |= stop.requested
                try:
                    part.on_end(run)
                except OSError as e:
                    failed.append(e)
            run.interrupted |= stop.requested
    except OSError as e:                      # a part's close (a score file's last flush)
        failed.append(e)
    if failed:
        raise _output_error(failed[0], run) from None


def _output_error(e: OSError, run: Training) -> OutputError:
    saved = run.out / CHECKPOINT / "meta.json"
    where = f"{str(e.filename)!r}" if e.filename else f"in {str(run.out)!r}"
    return OutputError(f"could not write {where} ({e.strerror or e}), so training stopped at env step {run.t}; "
                       + (f"the last checkpoint, in {str(saved.parent)!r}, is whole: make room or fix the folder, "
                          f"then `cartpole-dqn resume {run.out}`" if saved.exists() else "no checkpoint was saved"))


def _loop(run: Training, parts: Sequence[Part], stepper: Stepper, stop: Stop, length: int,
          intervals: Sequence[int], compiled_before: float) -> None:
    cfg = run.cfg
    while run.active().any():
        if stop.requested or run.stop_requested:
            run.interrupted = True
            break
        before, t0 = run.seconds(), run.t
        n = steps_until(cfg, run.t, length, intervals)
        run.t, run.states, records = stepper.run(run.t, run.states, n)
        run.compile_seconds = compiled_before + stepper.compile_seconds
        now = run.seconds()
        wall = before + (now - before) * (np.arange(1, n + 1) / n)
        steps = np.minimum(t0 + cfg.num_envs * np.arange(1, n + 1), cfg.max_steps)
        chunk = Chunk(records, t0, steps, wall)
        for part in parts:
            part.on_chunk(run, chunk)
