"""The command line: parses arguments, calls the Python API, and turns every user error into one line and exit 2.

Each subcommand is a thin view of an API function; nothing here knows about tensors or training. This module imports
nothing heavy (no numpy, JAX, gymnasium or matplotlib): each command imports what it needs when it runs,
inside `main`'s handlers, so `--help` and a refused flag answer at once and Ctrl-C during those imports is one line.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, NoReturn, Sequence

from .config import FIELDS, Config, allowed, build, check_bench_arguments, parse_value
from .errors import CheckpointError, ConfigError, OutputError, missing, require
from .presets import PRESETS
from .version import __version__

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
INTERRUPTED = "cartpole-dqn: interrupted"


@contextmanager
def _importing() -> Iterator[None]:
    """Around the imports of JAX, numpy and gymnasium (seconds): Ctrl-C or SIGTERM then prints one line and exits
    at once.

    A KeyboardInterrupt raised inside a library's import does not always arrive as one: Python wraps it, for
    example, in a RuntimeError when it interrupts a class body's `__set_name__`. Nothing has been written yet, so
    leaving at once loses nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def leave(signum: int, frame: Any) -> None:
        sys.stderr.write(INTERRUPTED + "\n")
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)

    previous = {sig: signal.signal(sig, leave) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (the project's rule for bad input), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _settings_epilog() -> str:
    lines = ["hyperparameters (--set key=value, or key = value in a --config TOML file; defaults of the default "
             "preset):"]
    defaults = build()
    for key, f in FIELDS.items():
        default = getattr(defaults, key)
        default = ",".join(map(str, default)) if isinstance(default, tuple) else default
        lines.append(f"  {key:<24} {f.metadata['help']}; {allowed(key)}; default {default}")
    lines.append("presets: " + ", ".join(PRESETS) + " (default = PQN, the fastest on the clock; sample-efficient = "
                 "DQN, the fewest env steps; classic = the article's algorithm as its code ran)")
    return "\n".join(lines)


def _add_run_options(p: argparse.ArgumentParser, seeds: int = 1) -> None:
    """The flags every training command shares; `seeds` is the command's default number of seeds (its help)."""
    p.add_argument("--env", help="gymnasium environment id (default: the --rule's, else CartPole-v1; Discrete "
                                 "actions, flat Box obs)")
    p.add_argument("--rule", help="solve rule: article (CartPole-v1, 195), v0 (CartPole-v0, 195), v1 (CartPole-v1, "
                                  "475); default: article for classic on CartPole-v1, else the env's threshold")
    p.add_argument("--solve-score", type=float, metavar="X", help="mean training return that counts as solved")
    p.add_argument("--solve-window", type=int, metavar="N", help="episodes averaged by the solve rule (default 100)")
    p.add_argument("--preset", help=f"hyperparameter preset: {', '.join(PRESETS)} (default: default)")
    p.add_argument("--seed", type=int, metavar="N", help="first seed (default 0)")
    p.add_argument("--seeds", type=int, metavar="K", help=f"train K independent agents at once (default {seeds})")
    p.add_argument("--max-episodes", type=int, metavar="N", help="episode budget per seed (default: the preset's)")
    p.add_argument("--max-steps", type=int, metavar="N", help="env-step budget per seed (default: the preset's)")
    p.add_argument("--eval-every", type=int, metavar="N",
                   help="greedy evaluation every N env steps, 0 turns it off (default 2000)")
    p.add_argument("--eval-episodes", type=int, metavar="M", help="episodes per greedy evaluation (default 10)")
    p.add_argument("--device", help="auto (CUDA when available, else CPU), cpu, cuda or cuda:N (default auto)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="CPU threads of the compiled program, per process (default 1: measured fastest on these "
                        "small networks); the same as --set threads=N")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="set any hyperparameter (repeatable); the list is below")
    p.add_argument("--config", metavar="FILE.toml", help="read settings (and optionally preset) from a TOML file")


_FLAG_FIELDS = ("env", "rule", "solve_score", "solve_window", "seed", "seeds", "max_episodes", "max_steps",
                "eval_every", "eval_episodes", "save_every", "device", "threads")


def config_from_args(args: argparse.Namespace) -> Config:
    """The Config the flags describe: preset < config file < flags < --set."""
    overrides: dict[str, Any] = {}
    for key in _FLAG_FIELDS:
        value = getattr(args, key, None)
        if value is not None:
            overrides[key] = value
    if args.rule is not None and args.rule not in FIELDS["rule"].metadata["choices"]:
        raise ConfigError(f"unknown rule {args.rule!r}: allowed are {', '.join(FIELDS['rule'].metadata['choices'])}")
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r} is not key=value")
        overrides[key.strip()] = parse_value(key.strip(), value)
    if args.preset is not None and args.preset not in PRESETS:
        raise ConfigError(f"unknown preset {args.preset!r}: allowed are {', '.join(PRESETS)}")
    return build(args.preset, args.config, overrides)


def _need_tensorboard(args: argparse.Namespace) -> None:
    if args.tensorboard:
        require("tensorboard", "tensorboard", "--tensorboard")


def _add_wandb_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wandb", action="store_true",
                   help="track each seed as a Weights & Biases run, grouped by run (files in the run folder; offline "
                        "without an API key; needs the extra cartpole-dqn[wandb])")
    p.add_argument("--wandb-project", metavar="NAME",
                   help="W&B project (default cartpole-dqn; implies --wandb; entity: WANDB_ENTITY)")


def _wandb(args: argparse.Namespace) -> dict[str, Any] | bool:
    """The W&B options the flags ask for (False: none), the package checked before anything is created."""
    if not (args.wandb or args.wandb_project):
        return False
    require("wandb", "wandb", "--wandb")
    return {"project": args.wandb_project}


# Each command checks its arguments before importing the modules that do the work: those imports take seconds.
def cmd_train(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    _need_tensorboard(args)
    wandb = _wandb(args)
    with _importing():
        from .training import train

    result = train(cfg, args.out, verbose=not args.quiet, tensorboard=args.tensorboard, wandb=wandb)
    if not args.quiet:
        _report(result)
    return EXIT_INTERRUPTED if result.interrupted else 0


def cmd_resume(args: argparse.Namespace) -> int:
    _need_tensorboard(args)
    wandb = _wandb(args)
    with _importing():
        from .training import resume

    result = resume(args.out, max_episodes=args.max_episodes, max_steps=args.max_steps, verbose=not args.quiet,
                    tensorboard=args.tensorboard, wandb=wandb)
    if not args.quiet:
        _report(result)
    return EXIT_INTERRUPTED if result.interrupted else 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    with _importing():
        from .files import check_output, write_json
        from .evaluation import evaluate

    if args.json is not None:
        check_output(args.json, "--json")   # before the episodes are played, not after
    result = evaluate(args.model, episodes=args.episodes, seed=args.seed, epsilon=args.epsilon)
    for line in result.lines():
        print(line)
    if args.json is not None:
        write_json(args.json, result.to_dict())
    return 0


def cmd_record(args: argparse.Namespace) -> int:
    with _importing():
        from .evaluation import record

    rec = record(args.model, args.out, episodes=args.episodes, fps=args.fps, seed=args.seed)
    print(f"Recorded {rec.frames} frames (returns {', '.join(f'{r:g}' for r in rec.returns)}) to {rec.path}")
    return 0


def cmd_play(args: argparse.Namespace) -> int:
    with _importing():
        from .evaluation import play

    returns = play(args.model, episodes=args.episodes, seed=args.seed)
    print("returns: " + ", ".join(f"{r:g}" for r in returns))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    require("jax2onnx", "onnx", "export")  # before the imports below, which take seconds
    with _importing():
        from .core import enable_compile_cache
        from .export import export_onnx

    # jax2onnx compiles some 80 tiny programs as it starts (about 10 s); kept on disk, the next export skips them.
    enable_compile_cache(min_compile_seconds=0.0)
    out = export_onnx(args.model, args.out, seed=args.seed)
    print(f"Exported the greedy Q-network to {out} (input obs [batch, size], output q_values; act with the argmax)")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    with _importing():
        from .scores import plot

    print(f"Plot written to {plot(args.runs, args.out)}")
    return 0


def _add_agent_commands(sub: Any) -> None:
    """The commands that continue, judge, film, show and plot a trained run."""
    p = sub.add_parser("resume", help="continue an interrupted run from its checkpoint",
                       description="Continue the run in OUT where it stopped (OUT/checkpoint). On CartPole the "
                                   "result equals the run left uninterrupted; a larger budget extends it.")
    p.add_argument("out", type=Path, metavar="OUT", help="the run folder")
    p.add_argument("--max-episodes", type=int, metavar="N", help="new episode budget per seed")
    p.add_argument("--max-steps", type=int, metavar="N", help="new env-step budget per seed")
    p.add_argument("--quiet", action="store_true", help="no progress bar or messages")
    p.add_argument("--tensorboard", action="store_true", help="write live scalars under OUT/tb")
    _add_wandb_options(p)
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("evaluate", help="greedy evaluation of a trained agent on fresh episodes",
                       description="Play fresh episodes greedily; prints mean +- std, min and max per seed and, "
                                   "for several seeds, overall.")
    p.add_argument("model", type=Path, metavar="OUT|MODEL", help=MODEL_HELP)
    p.add_argument("--episodes", type=int, default=100, metavar="N", help="episodes per seed (default 100)")
    p.add_argument("--seed", type=int, metavar="S",
                   help="seed of the episodes (default: those of training's final greedy evaluation)")
    p.add_argument("--epsilon", type=float, default=0.0, metavar="E", help="exploration rate (default 0: greedy)")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write every episode's return to FILE")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("record", help="film a trained agent to an animated GIF or an MP4",
                       description="Render the greedy agent (the first seed of a K-seed run) with the step count "
                                   "and return on each frame; one frame per env step.")
    _add_shown_episodes(p, "film")
    p.add_argument("--out", type=Path, required=True, metavar="FILE", help="agent.gif or agent.mp4")
    p.add_argument("--fps", type=int, default=50, metavar="N", help="frames per second (default 50)")
    p.set_defaults(func=cmd_record)

    p = sub.add_parser("play", help="show a trained agent live in a window",
                       description="Show the greedy agent in a window; needs a display.")
    _add_shown_episodes(p, "play")
    p.set_defaults(func=cmd_play)

    p = sub.add_parser("export", help="write a trained agent's greedy Q-network as an ONNX file",
                       description="Write one seed's Q-network to FILE.onnx (input obs [batch, size] float32, "
                                   "output q_values [batch, actions]; the greedy action is the argmax), with the "
                                   "observation scaling inside the graph and noisy layers at their mean weights. "
                                   "Its metadata_props hold env_id, action_meanings, input_size, n_actions and "
                                   "seed. evaluate, record and play accept the file in place of the run. Needs "
                                   "the extra cartpole-dqn[onnx].")
    p.add_argument("model", type=Path, metavar="OUT|MODEL",
                   help="a run folder, a seed-<n> folder of a K-seed run, or a model.safetensors file")
    p.add_argument("--out", type=Path, required=True, metavar="FILE.onnx", help="the ONNX file to write")
    p.add_argument("--seed", type=int, metavar="N", help="which seed of a K-seed run folder (required there)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("plot", help="redraw scores.png, or overlay several runs",
                       description="Redraw OUT/scores.png from scores.csv; with several runs, or a K-seed run, "
                                   "overlay their rolling means and the median.")
    p.add_argument("runs", type=Path, nargs="+", metavar="OUT", help="run folders")
    p.add_argument("--out", type=Path, metavar="FILE",
                   help="output image (default OUT/scores.png, or scores-overlay.png for several runs)")
    p.set_defaults(func=cmd_plot)


MODEL_HELP = "a run folder (one seed or K seeds), a model.safetensors file or an exported .onnx file"


def _add_shown_episodes(p: argparse.ArgumentParser, verb: str) -> None:
    """The agent to show and its episodes: record's and play's."""
    p.add_argument("model", type=Path, metavar="OUT|MODEL", help=MODEL_HELP)
    p.add_argument("--episodes", type=int, default=1, metavar="N", help=f"episodes to {verb} (default 1)")
    p.add_argument("--seed", type=int, metavar="S", help="seed of the episodes")


def cmd_bench(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)    # checks --seed and --seeds as train does
    check_bench_arguments(cfg.seeds, cfg.seed, 1 if args.procs is None else args.procs)
    wandb = _wandb(args)
    with _importing():
        from .bench import run_bench

    out = args.out or Path("runs") / f"bench-{cfg.env}-{cfg.preset}-{args.rule or 'own'}-s{cfg.seed}-{cfg.seeds}"
    run_bench(cfg, out, procs=args.procs, verbose=True, wandb=wandb)
    print(f"bench.csv, bench.json, curves.png and ebs.png in {out}")
    return 0


class _Replaced(argparse.Action):
    """A flag that was renamed: using it is a one-line usage error that names its replacement."""

    def __init__(self, option_strings: list[str], dest: str, replacement: str = "", **kwargs: Any) -> None:
        self.replacement = replacement
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        parser.error(f"{option_string} was replaced by {self.replacement}: use {self.replacement} {values}")


BENCH_SEEDS = 10


def _add_bench_command(sub: Any) -> None:
    p = sub.add_parser("bench", help="train many seeds and report every seed, the median, the IQM and its 95%% CI",
                       description=f"Train --seeds seeds (default {BENCH_SEEDS}) from --seed, split over --procs "
                                   "processes, evaluate each final agent greedily, write bench.csv, bench.json, "
                                   "curves.png and ebs.png in --out and print a table.",
                       epilog=_settings_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_run_options(p, seeds=BENCH_SEEDS)
    p.add_argument("--seed-start", action=_Replaced, replacement="--seed", metavar="S")
    p.add_argument("--procs", type=int, metavar="N",
                   help="processes to split the seeds over, each training its share on the seed axis (default: "
                        "this machine's cores, at most --seeds; 1 on a GPU; 1 = every seed in one process)")
    p.add_argument("--out", type=Path, metavar="DIR", help="output folder (default runs/bench-<env>-<preset>-...)")
    _add_wandb_options(p)
    p.set_defaults(func=cmd_bench, seeds=BENCH_SEEDS)


def cmd_tune(args: argparse.Namespace) -> int:
    require("optuna", "tune", "tune")  # before the import below, which takes seconds
    wandb = _wandb(args)
    try:
        with _importing():
            from . import studies, tune
    except ModuleNotFoundError as e:
        if e.name not in ("optuna", "sqlalchemy"):
            raise
        raise missing(e.name, "tune", "tune") from None
    out = args.out or Path("runs") / "tune"
    url = args.storage or studies.default_storage(out)
    if args.report or args.export:
        if args.storage is None and not (out / studies.STUDY_FILE).exists():
            raise ConfigError(f"no study in {str(out)!r} (no {studies.STUDY_FILE}): run tune there first, or give "
                              "--storage and --study")
        if args.report or not args.export:
            print("\n".join(tune.report(url, args.study, out)))
        if args.export:
            print(f"best trial written to {tune.export(url, args.study, args.export)}")
        return 0
    if args.trials is None:
        raise ConfigError("--trials N is required (or --report to look at a study)")
    result = tune.tune(config_from_args(args), trials=args.trials, out=out, budget=args.budget_steps,
                       storage=args.storage, study=args.study, jobs=args.jobs, batch=args.batch,
                       fixed=tune.fixed_keys(args.set, args.config), wandb=wandb)
    counts = ", ".join(f"{k} {v}" for k, v in result.counts.items() if v)
    best = (f"; best #{result.best.number}: median {result.best.value:,.0f} env steps to solve"
            if result.best else "")
    print(f"study {result.study} in {result.storage}: {counts}{best}")
    report_args = f"--out {out}" if args.storage is None else f"--storage URL --study {result.study}"
    print(f"see it with: cartpole-dqn tune --report {report_args}")
    return 0


def _add_tune_command(sub: Any) -> None:
    p = sub.add_parser("tune", help="search hyperparameters with Optuna (TPE, pruning), one machine or many",
                       description="Add --trials trials to an Optuna study minimising the median env steps to solve "
                                   "over --seeds seeds (unsolved = 2 x --budget-steps). The study is OUT/study.db "
                                   "by default; workers on many machines share one with --storage "
                                   "postgresql://... . Settings given with --set or --config are held fixed.",
                       epilog=_settings_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_run_options(p, seeds=3)
    p.add_argument("--trials", type=int, metavar="N", help="trials this command adds (shared among --jobs)")
    p.add_argument("--budget-steps", type=int, default=100_000, metavar="B",
                   help="env steps per seed per trial (default 100000)")
    p.add_argument("--jobs", type=int, default=1, metavar="J", help="trials at once on this machine (default 1)")
    p.add_argument("--batch", type=int, default=1, metavar="B",
                   help="trials trained side by side as one program by each job: they share a network shape and "
                        "search the numeric hyperparameters (default 1)")
    p.add_argument("--storage", metavar="URL",
                   help="Optuna storage: postgresql://user:pass@host/db, sqlite:///file.db or journal:FILE "
                        "(default sqlite OUT/study.db)")
    p.add_argument("--study", metavar="NAME", help="study name (default <env>-<preset>)")
    p.add_argument("--out", type=Path, metavar="DIR", help="study file and trial runs (default runs/tune)")
    p.add_argument("--report", action="store_true",
                   help="print the best trials; save history.png and importance.png in --out")
    p.add_argument("--export", type=Path, metavar="FILE.toml",
                   help="write the best trial as a config file for train/bench --config")
    _add_wandb_options(p)
    p.set_defaults(func=cmd_tune, seeds=3)


def _report(result) -> None:
    solved = sum(s["solved"] for s in result.summaries)
    n = len(result.summaries)
    state = "interrupted" if result.interrupted else "finished"
    print(f"Training {state}: {solved}/{n} solved. Scores, plot, model and summary in {result.out}")
    if result.aggregate is not None:
        a = result.aggregate
        print(f"median episodes before solve: {a['median_episodes_before_solve']}, "
              f"median env steps to solve: {a['median_steps_to_solve']}, success rate: {a['success_rate']:.0%}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cartpole-dqn", description="Deep Q-Learning for CartPole and other discrete-action "
                     "gymnasium tasks: the classic article's algorithm and a fast modern DQN, many seeds at once.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("train", help="train agents until they solve the task or a budget runs out",
                       description="Train DQN agents; leaves scores.csv, scores.png, eval.csv, summary.json, "
                                   "model.safetensors and config.json in --out.",
                       epilog=_settings_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_run_options(p)
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="output folder (default runs/<env>-<preset>-s<seed>-<time>)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or messages")
    p.add_argument("--save-every", type=int, metavar="N",
                   help="write a full checkpoint every N episodes (always: at solve, at the end, on Ctrl-C)")
    p.add_argument("--tensorboard", action="store_true",
                   help="write live scalars under OUT/tb (view: tensorboard --logdir runs; needs the extra "
                        "cartpole-dqn[tensorboard])")
    _add_wandb_options(p)
    p.set_defaults(func=cmd_train)
    _add_agent_commands(sub)
    _add_bench_command(sub)
    _add_tune_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command `argv` (default: sys.argv[1:]); the exit code: 0, 2 for a user error, 130 for Ctrl-C or
    SIGTERM."""
    if threading.current_thread() is threading.main_thread():
        # SIGTERM (a scheduler's stop, `kill`) is a Ctrl-C: training ends cleanly, and anywhere else it is one line
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        args = build_parser().parse_args(argv)
        func: Callable[[argparse.Namespace], int] = args.func
        return func(args)
    except (ConfigError, CheckpointError, OutputError) as e:
        print(f"cartpole-dqn: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:
        if not _caused_by_ctrl_c(e):
            raise
        print(INTERRUPTED, file=sys.stderr)
        return EXIT_INTERRUPTED


def run() -> NoReturn:
    """The `cartpole-dqn` command: `main`'s exit code, and an exit that no late signal turns into a kill.

    Once the work is done, Ctrl-C and SIGTERM only make the exit code 130, and the process leaves without the
    interpreter's and XLA's teardown: during it Python has already put the default handlers back, and a SIGTERM
    there killed the process (143) after every file was written. A handler, not a blocked signal: the kernel hands
    a process's signal to any thread that does not block it (XLA has several), and Python then runs the handler in
    the main thread wherever that is."""
    late: list[int] = []

    def count(signum: int, frame: Any) -> None:
        late.append(signum)

    try:
        try:
            code = main()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, count)
    except KeyboardInterrupt:              # in the instant between main's own handling and the line above
        print(INTERRUPTED, file=sys.stderr)
        code = EXIT_INTERRUPTED
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_INTERRUPTED if late and code == 0 else code)


def _caused_by_ctrl_c(e: BaseException) -> bool:
    """Whether a KeyboardInterrupt lies behind `e`, which a library wrapped on its way out."""
    seen: set[int] = set()
    cause: BaseException | None = e
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
