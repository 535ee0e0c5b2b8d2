import csv
import json
import os
import signal
import stat
import subprocess
import sys
import time

import numpy as np
import pytest

from cartpole_dqn import bench
from cartpole_dqn.bench import COLUMNS, bench_seed_dirs, curves_on_grid, default_procs, load_bench, run_bench
from cartpole_dqn.config import ConfigError, preset
from cartpole_dqn.cli import build_parser, config_from_args, main
from cartpole_dqn.stats import FIGURES

PNG = b"\x89PNG\r\n\x1a\n"


def test_curves_hold_each_seed_latest_score_on_a_common_grid():
    grid, values = curves_on_grid([(np.array([10, 20]), np.array([1.0, 2.0])), (np.array([30]), np.array([5.0]))],
                                  points=4)
    assert list(grid) == [0, 10, 20, 30]
    assert np.isnan(values[0, 0]) and list(values[0, 1:]) == [1.0, 2.0, 2.0]   # held after the seed stopped
    assert np.isnan(values[1, :3]).all() and values[1, 3] == 5.0


# ---------------------------------------------------------------------------------------------- the command ---
def test_bench_writes_complete_files_for_three_seeds(tmp_path, capsys):
    out = tmp_path / "bench"
    code = main(["bench", "--seeds", "3", "--seed", "4", "--procs", "1", "--max-steps", "400", "--eval-every", "200",
                 "--set", "hidden=16,16", "--set", "learning_starts=32", "--set", "batch_size=8",
                 "--set", "final_eval_episodes=3", "--solve-score", "12", "--solve-window", "5", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    for word in ("seed", "median", "IQM", "95% CI", "success rate", "CartPole-v1", "threads"):
        assert word in printed, word
    with open(out / "bench.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == COLUMNS and [r["seed"] for r in rows] == ["4", "5", "6"]
    assert not list(out.glob(".*.tmp"))                          # written atomically: no temporary file left
    assert all(r["final_greedy_score"] != "" and r["solved"] in ("True", "False") for r in rows)
    assert all((r["episodes_before_solve"] == "") == (r["solved"] == "False") for r in rows)
    report = json.loads((out / "bench.json").read_text())
    for key in ("date", "machine", "versions", "config", "seeds", "rule", "statistics", "per_seed"):
        assert key in report, key
    assert report["seeds"] == [4, 5, 6] and report["config"]["hidden"] == [16, 16]
    assert report["rule"] == {"name": "custom", "threshold": 12.0, "window": 5}
    assert set(FIGURES) <= set(report["statistics"]) and "jax" in report["versions"] and "torch" not in report["versions"]
    for name in ("curves.png", "ebs.png"):
        assert (out / name).read_bytes()[:8] == PNG
    again = load_bench(out)
    assert again.rows == report["per_seed"] and again.stats == report["statistics"]
    assert bench_seed_dirs(again) == [out / "runs" / "all" / f"seed-{s}" for s in (4, 5, 6)]


def test_bench_over_two_processes_keeps_every_seed(tmp_path, tiny_config):
    result = run_bench(tiny_config(seeds=2, seed=7, max_steps=150, threads=2), tmp_path / "b", procs=2, verbose=False)
    assert [r["seed"] for r in result.rows] == [7, 8] and result.report["procs"] == 2
    # the thread count reaches the training processes (and the record), not only this one
    assert result.report["config"]["threads"] == 2 and result.report["machine"].endswith("2 threads")
    assert json.loads((tmp_path / "b" / "runs" / "seeds-7-7" / "config.json").read_text())["threads"] == 2
    assert (tmp_path / "b" / "runs" / "seeds-7-7" / "summary.json").exists()
    assert bench_seed_dirs(load_bench(tmp_path / "b")) == [tmp_path / "b" / "runs" / f"seeds-{s}-{s}" for s in (7, 8)]


def test_an_explicit_threads_setting_is_what_the_bench_trains_with(tmp_path):
    """`--set threads=N` (as any setting of the config) reaches the training and the record: the bench has no
    default of its own to put over it. bench.csv and bench.json get the mode the umask gives (027: 0640), as every
    output does, not the 0600 of a temporary file."""
    out = tmp_path / "b"
    previous = os.umask(0o027)
    try:
        assert main(["bench", "--seeds", "1", "--procs", "1", "--max-steps", "100", "--eval-every", "0",
                     "--set", "threads=2", "--set", "hidden=16,16", "--set", "learning_starts=32",
                     "--set", "batch_size=8", "--set", "final_eval_episodes=0", "--out", str(out)]) == 0
    finally:
        os.umask(previous)
    assert [stat.S_IMODE((out / name).stat().st_mode) for name in ("bench.csv", "bench.json")] == [0o640, 0o640]
    report = json.loads((out / "bench.json").read_text())
    assert report["config"]["threads"] == 2 and report["machine"].endswith("2 threads")
    assert json.loads((out / "runs" / "all" / "config.json").read_text())["threads"] == 2


@pytest.mark.parametrize("argv,threads", [([], 1), (["--threads", "3"], 3), (["--set", "threads=2"], 2),
                                          (["--threads", "3", "--set", "threads=2"], 2)])
def test_the_threads_flag_sets_the_config_and_set_wins_as_for_every_flag(argv, threads):
    assert config_from_args(build_parser().parse_args(["bench", *argv])).threads == threads


def test_bench_defaults_to_ten_seeds_over_the_machine_cores():
    args = build_parser().parse_args(["bench"])
    assert args.seeds == 10 and args.seed is None and args.procs is None


@pytest.mark.parametrize("cores,seeds,expected", [(16, 10, 10), (2, 10, 2), (2, 1, 1), (1, 5, 1)])
def test_default_procs_is_one_per_core_capped_at_the_seeds(monkeypatch, cores, seeds, expected):
    monkeypatch.setattr(bench, "usable_cores", lambda: cores)
    assert default_procs(preset("default", seeds=seeds, device="cpu")) == expected


def test_default_procs_on_an_accelerator_is_one_process(monkeypatch):
    import cartpole_dqn.config

    class Gpu:
        platform = "gpu"

    monkeypatch.setattr(bench, "usable_cores", lambda: 16)
    monkeypatch.setattr(cartpole_dqn.config, "resolve_device", lambda name: Gpu())
    assert default_procs(preset("default", seeds=10)) == 1


def test_seed_start_is_refused_with_its_replacement(capsys):
    with pytest.raises(SystemExit) as e:
        main(["bench", "--seed-start", "4"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--seed-start was replaced by --seed: use --seed 4" in err
    assert err.count("\n") == 1
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    assert "--seed-start" not in capsys.readouterr().out           # hidden: --seed is the one flag


def test_a_folder_without_a_finished_bench_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no finished benchmark"):
        load_bench(tmp_path)


@pytest.mark.parametrize("args,expected", [
    (["--seeds", "0"], "seeds=0"),
    (["--seed", "-3"], "seed=-3"),
    (["--rule", "v9"], "v9"),
    (["--procs", "0"], "--procs 0"),
])
def test_bad_bench_arguments_are_one_line_and_exit_2(tmp_path, capsys, args, expected):
    out = tmp_path / "never"
    assert main(["bench", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_sigterm_to_a_bench_ends_its_worker_processes_runs_with_checkpoints(tmp_path):
    """`kill` of a benchmark once left its workers training to their budgets; now each ends its run at the
    current chunk, complete and resumable, and the benchmark exits 130."""
    out = tmp_path / "b"
    proc = subprocess.Popen([sys.executable, "-m", "cartpole_dqn", "bench", "--seeds", "2", "--procs", "2",
                             "--max-steps", "1000000", "--set", "hidden=16,16", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    runs = [out / "runs" / f"seeds-{s}-{s}" for s in (0, 1)]
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not all(
            (r / "scores.csv").exists() and len((r / "scores.csv").read_text().splitlines()) > 3 for r in runs):
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 130 and "Traceback" not in err, err
    for r in runs:
        assert json.loads((r / "summary.json").read_text())["interrupted"]
        assert (r / "checkpoint" / "meta.json").exists()
