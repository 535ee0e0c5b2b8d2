"""The run folder: what a training run writes, under which names, and where each seed's files go.

A one-seed run keeps everything in its folder. A K-seed run keeps the run's config.json, its aggregate summary.json
and the checkpoint at the top, and each seed's files in `seed-<n>/`; TensorBoard's event files go to `tb/` (and
`tb/seed-<n>/`), W&B's to `wandb/`. Training, the parts that write the files, the checkpoint, the benchmark,
evaluation and `plot` all take the names and the layout from here, and `RunDir.check_own` tells a run's own model
or checkpoint from one copied in from another run.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping, Sequence

from .config import Config
from .errors import CheckpointError, ConfigError, stop_on_signals
from .files import read_json

SCORES = "scores.csv"            # a seed's training episodes (scores.py)
EVALS = "eval.csv"               # its greedy evaluations
PLOT = "scores.png"              # its figure
MODEL = "model.safetensors"      # its final network (checkpoint.save_model)
SUMMARY = "summary.json"         # its figures; at the top of a K-seed run, the aggregate over seeds
CONFIG = "config.json"           # the configuration (a K-seed run: also each seed's own)
CHECKPOINT = "checkpoint"        # the folder `resume` continues from (checkpoint.py)
TENSORBOARD = "tb"               # TensorBoard's event files
WANDB = "wandb"                  # W&B's files (its offline runs), made by W&B itself in the run folder
LOCK = ".lock"                   # held (flock) by the process that trains into the folder
SEED_PREFIX = "seed-"
# What makes a model or a checkpoint a run's own: the task it plays and the shape of its network.
IDENTITY = ("env", "hidden", "dueling", "noisy", "layer_norm")


@dataclass(frozen=True)
class RunDir:
    """A run folder (it need not exist yet)."""

    path: Path

    @classmethod
    def default(cls, cfg: Config) -> RunDir:
        """runs/<env>-<preset>-s<seed>-<date>-<time>: a new folder for every run started."""
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        return cls(Path("runs") / f"{cfg.env}-{cfg.preset}-s{cfg.seed}-{stamp}")

    def prepare(self) -> None:
        """Create the folder, refusing a file, an unwritable place, or a folder that already holds a run (so that
        nothing is overwritten)."""
        out = self.path
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out {str(out)!r} is a file: give a folder (new or empty)")
        if self.holds_run():
            raise ConfigError(f"--out {str(out)!r} already holds a run: choose another folder so nothing is "
                              "overwritten")
        self._make()

    def holds_run(self) -> bool:
        """Whether the folder holds something a user could lose: a finished run's files or a checkpoint. Scores
        alone, of a run killed before its first checkpoint, can be neither resumed nor evaluated."""
        out = self.path
        return (any((out / name).exists() for name in (SUMMARY, MODEL, f"{CHECKPOINT}/meta.json"))
                or any(out.glob(f"{SEED_PREFIX}*/{MODEL}")))

    @contextmanager
    def claim(self, resuming: bool = False) -> Iterator[None]:
        """Hold the folder for this process while it trains: created if need be and locked, so that a second
        run into it is refused at once (one line) instead of mixing its files with this one's.

        The lock is `flock` on `.lock`, which the kernel releases when the process ends however it ends, so a
        run killed (even by SIGKILL) never leaves the folder blocked. A fresh run (`resuming` False) refuses a
        folder that holds a run, and reclaims one left by a run killed before its first checkpoint (it says
        so). If Ctrl-C or SIGTERM arrives before the run has a checkpoint, everything it made is removed again:
        an interrupt leaves either nothing or a run that `resume` and `evaluate` accept."""
        out = self.path
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out {str(out)!r} is a file: give a folder (new or empty)")
        existed = out.exists()
        # Until the folder is locked, Ctrl-C and SIGTERM wait: one that came as the folder was made once left it
        # behind, and only the lock's holder may remove what it made.
        with stop_on_signals() as early:
            self._make()
            before = set(os.listdir(out))
            lock = open(out / LOCK, "a")
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.close()
                raise ConfigError(f"--out {str(out)!r} is in use by another cartpole-dqn run: wait for it to "
                                  "end, or choose another folder") from None
        with lock:
            try:
                if early.requested:
                    raise KeyboardInterrupt
                if not resuming:
                    if self.holds_run():
                        raise ConfigError(f"--out {str(out)!r} already holds a run: choose another folder so "
                                          "nothing is overwritten")
                    if (out / SCORES).exists() or any(out.glob(f"{SEED_PREFIX}*/{SCORES}")):
                        print(f"cartpole-dqn: {str(out)!r} holds the scores of a run stopped before its first "
                              "checkpoint: starting afresh there", file=sys.stderr)
                        self._clear_unfinished()
                        before = set(os.listdir(out))
                yield
            except KeyboardInterrupt:
                if not (out / CHECKPOINT / "meta.json").exists():
                    self._discard(existed, before)
                raise

    def _make(self) -> None:
        out = self.path
        try:
            out.mkdir(parents=True, exist_ok=True)
            probe = out / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise ConfigError(f"--out {str(out)!r} is not writable: {e.strerror or e}") from None

    def _clear_unfinished(self) -> None:
        """Remove the files of a run that stopped before its first checkpoint (and only the names a run writes),
        so that the folder describes the new run alone."""
        out = self.path
        for folder in (out, *[d for d in out.glob(f"{SEED_PREFIX}*") if d.is_dir()]):
            for name in (SCORES, EVALS, PLOT, CONFIG):
                (folder / name).unlink(missing_ok=True)
            if folder != out and not any(folder.iterdir()):
                folder.rmdir()
        for folder in (out / CHECKPOINT, out / TENSORBOARD, out / WANDB):
            shutil.rmtree(folder, ignore_errors=True)

    def _discard(self, existed: bool, before: set[str]) -> None:
        """Remove what this run made: the folder if it created it, else the entries that were not there."""
        if not existed:
            shutil.rmtree(self.path, ignore_errors=True)
            return
        for name in set(os.listdir(self.path)) - before:
            target = self.path / name
            shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)

    def seed_dirs(self, seeds: Sequence[int]) -> list[Path]:
        """Each seed's folder: the run folder itself for one seed, else `seed-<n>/` in it."""
        return _per_seed(self.path, seeds)

    def tensorboard_dirs(self, seeds: Sequence[int]) -> list[Path]:
        """Each seed's TensorBoard run: `tb/` for one seed, else `tb/seed-<n>/` (one curve per seed)."""
        return _per_seed(self.path / TENSORBOARD, seeds)

    def check_own(self, what: str, settings: Mapping[str, Any]) -> None:
        """Refuse `what` (a model file, a checkpoint), whose `settings` (as JSON holds them: lists, not tuples)
        contradict this run's config.json on any of IDENTITY: it was made by another run, and evaluating or
        resuming it here would pass it off as this one. A folder without config.json has nothing to contradict."""
        path = self.path / CONFIG
        if not path.is_file():
            return
        recorded = read_json(path)
        if not isinstance(recorded, dict):
            raise CheckpointError(f"{str(path)!r} is not a configuration (corrupted?)")
        differ = [key for key in IDENTITY if key in recorded and key in settings and recorded[key] != settings[key]]
        if differ:
            mine, theirs = (", ".join(f"{key}={d[key]!r}" for key in differ) for d in (settings, recorded))
            raise CheckpointError(f"{what} is not this run's: it has {mine}; {str(path)!r} records {theirs}")

    def find_seed_dirs(self, name: str) -> list[Path]:
        """The seed folders of an existing run that hold the file `name`: the run folder itself if it does (one
        seed), else its `seed-<n>/` folders that do, in seed order."""
        if (self.path / name).is_file():
            return [self.path]
        found = [d for d in self.path.glob(f"{SEED_PREFIX}*") if (d / name).is_file()]
        return sorted(found, key=lambda d: (_seed_number(d), d.name))


def _per_seed(base: Path, seeds: Sequence[int]) -> list[Path]:
    return [base] if len(seeds) == 1 else [base / f"{SEED_PREFIX}{s}" for s in seeds]


def _seed_number(folder: Path) -> int:
    """n of a `seed-<n>` folder; -1 (first) for a name that holds no number."""
    n = folder.name[len(SEED_PREFIX):]
    return int(n) if n.isdigit() else -1
