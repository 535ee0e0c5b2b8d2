"""Runs tracked where teams look: Weights & Biases, as a driver part (`WandB`) beside TensorBoard's.

Each seed is one W&B run, grouped by the run it belongs to (the run folder's name; a benchmark's or a study's name
when bench or tune trains it). A W&B run holds the seed's configuration, the same live scalars as TensorBoard
(`parts.live_scalars`, charted against `env_steps`) and, at the end, the seed's summary.json as its summary.

Without an API key (no WANDB_API_KEY, no `wandb login`) the runs are kept offline in `OUT/wandb`, and one line says
so and how to upload them later (`wandb sync`); W&B's own console output is switched off. A resumed run adds one W&B
run per seed to the same group (job type "resume"), its curves going on from the checkpoint's env step.
"""

from __future__ import annotations

import dataclasses
import netrc
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union
from urllib.parse import urlsplit

from .config import to_dict
from .driver import Chunk, Part, Training
from .errors import ConfigError, missing
from .parts import Results, live_scalars
from .rundir import WANDB

PROJECT = "cartpole-dqn"
MODES = ("online", "offline", "disabled")


@dataclass(frozen=True)
class WandbOptions:
    """Where the W&B runs go. `group` and `name` default to the run folder's name (each seed's run is named
    `<name>-seed-<n>`); `mode` is settled before training starts (`wandb_options`), and `why` says why a run is
    offline."""

    project: str = PROJECT
    entity: str | None = None
    group: str | None = None
    name: str | None = None
    job_type: str | None = None
    tags: tuple[str, ...] = ()
    notes: str | None = None
    mode: str | None = None
    why: str = ""


# What `train(..., wandb=...)` takes: on/off, a dict of WandbOptions fields, or options already settled.
Wandb = Union[bool, Mapping[str, Any], WandbOptions, None]


def wandb_options(value: Wandb, **defaults: Any) -> WandbOptions | None:
    """The options `value` asks for (None: W&B off), over `defaults`, with the mode settled: the one asked for,
    else WANDB_MODE's, else online with an API key and offline without. A bad option is a ConfigError."""
    if value is None or value is False:
        return None
    if isinstance(value, WandbOptions):
        return value
    given = {} if value is True else dict(value)
    fields = {f.name for f in dataclasses.fields(WandbOptions)} - {"why"}
    unknown = sorted(set(given) - fields)
    if unknown:
        raise ConfigError(f"unknown W&B option {unknown[0]!r}: allowed are {', '.join(sorted(fields))}")
    opts = dataclasses.replace(WandbOptions(), **{**defaults, **{k: v for k, v in given.items() if v is not None}})
    opts = dataclasses.replace(opts, tags=tuple(opts.tags))
    mode, why = opts.mode, "offline mode"
    if mode is None:
        mode = os.environ.get("WANDB_MODE", "").strip().lower() or None
        if mode == "dryrun":
            mode = "offline"
        if mode is None:
            mode, why = ("online", "") if has_api_key() else ("offline", "no API key")
    if mode not in MODES:
        raise ConfigError(f"W&B mode {mode!r} is not allowed: use {', '.join(MODES)}")
    return dataclasses.replace(opts, mode=mode, why=why if mode == "offline" else "")


def has_api_key() -> bool:
    """Whether W&B would find credentials (WANDB_API_KEY, an identity token, or `wandb login`'s netrc entry),
    looked up without a network call."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlsplit(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc(os.environ.get("NETRC") or None).authenticators(host or "") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def offline_notice(opts: WandbOptions, where: Path | str) -> str | None:
    """The one line that says W&B runs are kept offline in `where` and how to upload them; None when online."""
    if opts.mode != "offline":
        return None
    return (f"cartpole-dqn: W&B offline ({opts.why}): logs in {where}; upload later with "
            f"`wandb sync {where}/offline-run-*`")


class WandB(Part):
    """One W&B run per seed: its configuration at the start, `live_scalars` as the chunks come, its summary.json
    as the run's summary at the end (after `Results`); every run is finished in `close`, on every path."""

    def __init__(self, opts: WandbOptions, results: Results, verbose: bool):
        self.opts, self.results, self.verbose = opts, results, verbose
        self.runs: list[Any] = []
        self.ended = False

    def on_start(self, run: Training) -> None:
        try:
            import wandb
        except ImportError:  # `train` checked the package; this is its import failing
            raise missing("wandb", "wandb", "--wandb") from None
        o, cfg = self.opts, run.cfg
        settings = wandb.Settings(silent=True, console="off", x_disable_stats=True, disable_git=True,
                                  save_code=False)
        for i, seed in enumerate(cfg.seed_list):
            self.runs.append(wandb.init(
                project=o.project, entity=o.entity, group=o.group or run.out.name,
                name=f"{o.name or run.out.name}-seed-{seed}", job_type=o.job_type or ("resume" if run.t else "train"),
                tags=list(o.tags), notes=o.notes, config=to_dict(run.seed_cfg(i)), dir=str(run.out), mode=o.mode,
                reinit="create_new", settings=settings))
            self.runs[-1].define_metric("env_steps")
            self.runs[-1].define_metric("*", step_metric="env_steps")
        notice = offline_notice(o, run.out / WANDB)
        if notice and self.verbose:
            print(notice, file=sys.stderr, flush=True)

    def on_chunk(self, run: Training, chunk: Chunk) -> None:
        for i, steps, scalars in live_scalars(run, chunk):
            self.runs[i].log({**scalars, "env_steps": steps})

    def on_end(self, run: Training) -> None:
        for wb, summary in zip(self.runs, self.results.summaries):
            wb.summary.update({key: value for key, value in summary.items() if key != "config"})
        self.ended = True

    def close(self) -> None:
        runs, self.runs = self.runs, []
        for wb in runs:
            wb.finish(exit_code=0 if self.ended else 1)
