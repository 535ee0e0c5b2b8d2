"""Optuna studies: where they are stored, how one is created or joined, and what happens to a dead worker's trial.

A study lives in storage that many processes can share: an SQLite file by default (`OUT/study.db`, nothing to
start), a PostgreSQL (or any SQLAlchemy) URL, or an Optuna journal file (`journal:PATH`). A study records the
environment, preset, rule and budget it was made for and refuses a run that asks for others. A worker that dies
mid-trial leaves that trial RUNNING; the next worker on the same host marks it FAIL at once (its process is gone),
and Optuna's heartbeat marks it FAIL from any host of an SQL storage after `GRACE_SECONDS`.
"""

from __future__ import annotations

import os
import re
import socket
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from .config import Config, ConfigError
from .rules import Rule

HEARTBEAT_SECONDS = 30      # a running trial of an SQL storage says it is alive this often
GRACE_SECONDS = 120         # ... and is marked failed by the next worker this long after its last heartbeat
STUDY_FILE = "study.db"


# ----------------------------------------------------------------------------------------------- storage ---
def default_storage(out: Path) -> str:
    return f"sqlite:///{(Path(out) / STUDY_FILE).resolve()}"


def shown(url: str) -> str:
    """The storage URL as it may be printed: any password hidden."""
    if url.startswith("journal:"):
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0].strip() if text else type(e).__name__


def _with_driver(url: str) -> str:
    """A plain postgresql:// URL with the psycopg2 driver when that is the one installed (the `tune` extra's):
    SQLAlchemy 2.1 would otherwise ask for psycopg 3."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme in ("postgresql", "postgres"):
        import importlib.util

        if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
            return f"postgresql+psycopg2://{rest}"
    return url


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """Optuna storage for `url`: `journal:PATH` is a journal file, anything else an SQLAlchemy URL (sqlite:///...,
    postgresql://user:pass@host:port/db, ...). A malformed or unreachable storage is a ConfigError of one line."""
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        path = url[len("journal:"):].removeprefix("//")
        try:
            return optuna.storages.JournalStorage(JournalFileBackend(path))
        except OSError as e:
            raise ConfigError(f"cannot open storage {url!r}: {e.strerror or e}") from None
    import sqlalchemy.exc

    connect_args: dict[str, Any] = {}
    if url.startswith("sqlite"):
        connect_args["timeout"] = 60          # several workers write one file: wait for the lock, do not fail
    elif url.startswith("postgres"):
        connect_args["connect_timeout"] = 10  # an unreachable host is an error in seconds, not minutes
    try:
        for attempt in range(3):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    return optuna.storages.RDBStorage(
                        _with_driver(url), engine_kwargs={"connect_args": connect_args, "pool_pre_ping": True},
                        heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS)
            except sqlalchemy.exc.SQLAlchemyError as e:
                # Workers starting together on an empty database race to create Optuna's tables; the loser gets
                # an IntegrityError or "already exists" (PostgreSQL, SQLite) and finds them made on its next try.
                racing = isinstance(e, sqlalchemy.exc.IntegrityError) or "already exists" in str(e)
                if not racing or attempt == 2:
                    raise
                time.sleep(1.0 + attempt)
        raise AssertionError("unreachable")
    except ImportError as e:
        raise ConfigError(f"storage {shown(url)!r} needs a driver that is not installed "
                          f"({first_line(e.__cause__ or e)}): pip install 'cartpole-dqn[tune]'") from None
    except (sqlalchemy.exc.SQLAlchemyError, ValueError, TypeError) as e:
        raise ConfigError(f"cannot open storage {shown(url)!r}: {first_line(e)}") from None


# ------------------------------------------------------------------------------------------------- study ---
def setup_of(cfg: Config, rule: Rule) -> dict[str, Any]:
    """What a study is for (stored as its user attributes): runs that differ here cannot share a study."""
    return {"env": cfg.env, "preset": cfg.preset, "rule": rule.name, "threshold": rule.threshold,
            "window": rule.window, "budget_steps": cfg.max_steps}


def default_study_name(cfg: Config) -> str:
    return f"{cfg.env}-{cfg.preset}"


def check_study_name(name: str) -> str:
    """`name` if it can name the folder of its trial runs (`OUT/trials/<name>/`); a name with a path separator or
    `..` would put them outside OUT, so only letters, digits, `-`, `_` and `.` are allowed, not first a `.`."""
    if not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]*", name):
        raise ConfigError(f"--study {name!r} is not allowed: letters, digits, '-', '_' and '.' (not first), since "
                          "it names the folder of the trial runs in --out")
    return name


def _sampler() -> optuna.samplers.BaseSampler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # constant_liar: parallel workers see each other's running trials and spread out.
        return optuna.samplers.TPESampler(n_startup_trials=5, constant_liar=True)


def default_pruner(budget: int) -> optuna.pruners.BasePruner:
    """Stop a trial whose rolling mean is below the median of earlier trials at the same step, once 5 trials
    have finished and a fifth of the budget is spent."""
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=budget // 5)


def open_study(storage: optuna.storages.BaseStorage, name: str, setup: dict[str, Any], *,
               url: str = "", pruner: optuna.pruners.BasePruner | None = None) -> optuna.Study:
    """Create the study or join it; refuse one made for another environment, preset, rule or budget.

    The setup is one user attribute written in one go, so a worker joining while another creates the study sees
    all of it or none (and then writes the same)."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "created" / "using an existing study" lines
    try:
        study = optuna.create_study(storage=storage, study_name=name, direction="minimize", sampler=_sampler(),
                                    pruner=pruner or default_pruner(setup["budget_steps"]), load_if_exists=True)
    finally:
        optuna.logging.set_verbosity(verbosity)
    theirs = study.user_attrs.get("setup")
    if study.direction != optuna.study.StudyDirection.MINIMIZE or (theirs is None and study.user_attrs):
        raise ConfigError(f"study {name!r} in {shown(url)!r} was not made by cartpole-dqn tune: "
                          "pick another --study name")
    if theirs is None:
        study.set_user_attr("setup", setup)
        return study
    for key, value in setup.items():
        if theirs.get(key) != value:
            what = "for " if key == "env" else f"with {key}="
            raise ConfigError(f"study {name!r} in {shown(url)!r} exists {what}{theirs.get(key)}; this run asks "
                              f"{value}: pick another --study name")
    return study


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_dead_trials(study: optuna.Study, storage: optuna.storages.BaseStorage) -> list[int]:
    """Mark FAIL every RUNNING trial whose worker ran on this host and has died (killed mid-trial); the numbers.

    Optuna's heartbeat does the same from any host, but only after its grace period; this needs no waiting."""
    host, failed = socket.gethostname(), []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.user_attrs.get("worker") or {}
        if worker.get("host") == host and isinstance(worker.get("pid"), int) and not _alive(worker["pid"]):
            try:
                # FrozenTrial has no public id; the storage API takes it (as Optuna's fail_stale_trials does).
                storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
                failed.append(t.number)
            except (RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
                pass  # another worker got there first
    return failed


def load(url: str, name: str | None) -> optuna.Study:
    """An existing study; with no name, the only study in the storage."""
    storage = open_storage(url)
    names = optuna.get_all_study_names(storage)
    if name is None:
        if len(names) != 1:
            listed = f" ({', '.join(names)})" if names else ""
            raise ConfigError(f"{shown(url)!r} holds {len(names)} studies{listed}: name one with --study")
        name = names[0]
    if name not in names:
        raise ConfigError(f"no study {name!r} in {shown(url)!r}: there are {', '.join(names) or 'none'}")
    return optuna.load_study(study_name=name, storage=storage, sampler=_sampler())
