"""W&B tracking (tracking.py), always offline: what a run sends is read back from W&B's own transaction log.

`wandb.Api` reads runs from the server only, so the tests parse the offline runs' `run-<id>.wandb` files: W&B's
record log (a 7-byte header, then 32 KiB blocks of records, each a 7-byte header: CRC, length, kind (full, first,
middle, last)) holding `wandb.proto` Records: the run (name, group, project, job type, config), history rows,
summary updates.
"""

from __future__ import annotations

import csv
import json
import struct
import sys
from pathlib import Path

import pytest

from conftest import run_cli, tiny

from cartpole_dqn import tracking
from cartpole_dqn.errors import ConfigError
from cartpole_dqn.files import read_json

pytest.importorskip("wandb")


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    """No network, no login: offline runs, W&B's own folders inside the test's, no credentials found."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for name in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb-home"))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setattr(tracking, "has_api_key", lambda: False)


def _records(path: Path):
    from wandb.proto import wandb_internal_pb2 as pb

    data, block, pos, piece = path.read_bytes(), 32768, 7, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = block - pos % block
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7]) if left >= 7 else (0, 0, 0)
        if kind == 0:                                   # the zero padding at a block's end
            pos += left
            continue
        piece += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):                              # a full record, or the last piece of one
            record = pb.Record()
            record.ParseFromString(piece)
            piece = b""
            yield record


def _items(items) -> dict:
    return {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in items}


def offline_runs(folder: Path) -> list[dict]:
    """Every offline W&B run under `folder`/wandb, in the order they started: its run record, config, history
    rows and summary."""
    runs = []
    for path in sorted(folder.glob("wandb/offline-run-*/run-*.wandb")):
        run: dict = {"config": {}, "history": [], "summary": {}}
        for r in _records(path):
            kind = r.WhichOneof("record_type")
            if kind == "run":
                run["run"] = r.run
                run["config"].update(_items(r.run.config.update))
            elif kind == "config":
                run["config"].update(_items(r.config.update))
            elif kind == "history":
                run["history"].append(_items(r.history.item))
            elif kind == "summary":
                run["summary"].update(_items(r.summary.update))
        run["config"].pop("_wandb", None)
        runs.append(run)
    # The folders' names give the second only: a resume can start within the second its run ended.
    return sorted(runs, key=lambda run: run["run"].start_time.ToNanoseconds())


def by_name(folder: Path) -> dict[str, dict]:
    return {run["run"].display_name: run for run in offline_runs(folder)}


def _rows(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_each_seed_is_a_run_with_its_config_tensorboards_scalars_and_its_summary(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from cartpole_dqn import train

    out = tmp_path / "two"
    result = train(tiny(seeds=2, max_steps=400, eval_every=200, eval_episodes=2), out, verbose=False,
                   tensorboard=True, wandb=True)
    runs = by_name(out)
    assert sorted(runs) == ["two-seed-0", "two-seed-1"]
    for i, summary in enumerate(result.summaries):
        seed_dir, run = out / f"seed-{i}", runs[f"two-seed-{i}"]
        assert (run["run"].project, run["run"].run_group, run["run"].job_type) == ("cartpole-dqn", "two", "train")
        assert run["config"] == read_json(seed_dir / "config.json")
        episodes = [row for row in run["history"] if "episode/return" in row]
        scores = _rows(seed_dir / "scores.csv")
        assert [row["episode/return"] for row in episodes] == [float(row["return"]) for row in scores]
        assert [row["env_steps"] for row in episodes] == [int(row["env_steps"]) for row in scores]
        evals = [row for row in run["history"] if "eval/mean_return" in row]
        assert [(row["env_steps"], row["eval/mean_return"]) for row in evals] == \
            [(int(row["env_steps"]), float(row["mean"])) for row in _rows(seed_dir / "eval.csv")] != []
        assert {k: run["summary"][k] for k in summary if k != "config"} == {k: v for k, v in summary.items()
                                                                          if k != "config"}
        # The very scalars TensorBoard got, at the same env steps: one code path for what a run reports live.
        acc = EventAccumulator(str(out / "tb" / f"seed-{i}"))
        acc.Reload()
        logged = {key for row in run["history"] for key in row if not key.startswith("_")} - {"env_steps"}
        assert logged == set(acc.Tags()["scalars"])
        for tag in logged:
            ours = [(row["env_steps"], row[tag]) for row in run["history"] if tag in row]
            theirs = [(e.step, e.value) for e in acc.Scalars(tag)]
            assert [s for s, _ in ours] == [s for s, _ in theirs], tag
            assert [v for _, v in ours] == pytest.approx([v for _, v in theirs], rel=1e-6), tag


def test_without_an_api_key_the_cli_says_offline_in_one_line_and_wandb_says_nothing(tmp_path):
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_MODE", "WANDB_SILENT", "WANDB_API_KEY")}
    env["NETRC"] = str(tmp_path / "no-netrc")     # no `wandb login` either: no API key anywhere
    out = tmp_path / "cli"
    r = run_cli("train", "--preset", "sample-efficient", "--set", "hidden=16,16", "--set", "learning_starts=32",
                "--set", "batch_size=8", "--set", "final_eval_episodes=0", "--eval-every", "0", "--max-steps", "300",
                "--out", str(out), "--wandb-project", "team", env=env)
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stderr.splitlines() if not line.startswith("step ")]   # the progress line
    assert lines == [f"cartpole-dqn: W&B offline (no API key): logs in {out / 'wandb'}; upload later with "
                     f"`wandb sync {out / 'wandb'}/offline-run-*`"]
    assert "wandb" not in r.stdout.lower()
    (run,) = offline_runs(out)
    assert run["run"].project == "team" and run["run"].display_name == "cli-seed-0"


def test_a_resumed_run_adds_a_run_per_seed_to_the_group_going_on_from_the_checkpoint(tmp_path):
    from cartpole_dqn import resume, train

    out = tmp_path / "r"
    train(tiny(max_steps=300), out, verbose=False, wandb={"group": "mine", "tags": ["a"]})
    resume(out, max_steps=600, verbose=False, wandb={"group": "mine"})
    runs = offline_runs(out)
    assert [(run["run"].run_group, run["run"].job_type) for run in runs] == [("mine", "train"), ("mine", "resume")]
    first, then = ([row["env_steps"] for row in run["history"] if "episode/return" in row] for run in runs)
    assert first and then and then[0] > first[-1] and then[-1] <= 600


def test_bench_and_tune_group_their_runs_by_benchmark_and_study(tmp_path):
    from cartpole_dqn.bench import run_bench
    from cartpole_dqn.tune import tune

    bench = tmp_path / "bench-x"
    run_bench(tiny(seeds=2), bench, procs=1, verbose=False, wandb=True)
    runs = by_name(bench / "runs" / "all")
    assert sorted(runs) == ["bench-x-seed-0", "bench-x-seed-1"]
    assert {(r["run"].run_group, r["run"].job_type) for r in runs.values()} == {("bench-x", "bench")}

    tune(tiny(), trials=1, out=tmp_path / "t", budget=300, fixed=("hidden", "batch_size", "learning_starts"),
         wandb=True)
    (run,) = offline_runs(tmp_path / "t" / "trials" / "CartPole-v1-sample-efficient" / "trial-0")
    assert (run["run"].run_group, run["run"].job_type, run["run"].display_name) == \
        ("CartPole-v1-sample-efficient", "tune", "trial-0-seed-0")


def test_options_are_checked_and_a_missing_package_is_refused_before_the_run_folder_exists(tmp_path, monkeypatch):
    from cartpole_dqn import train

    with pytest.raises(ConfigError, match="unknown W&B option 'projet'"):
        train(tiny(max_steps=50), tmp_path / "a", verbose=False, wandb={"projet": "x"})
    with pytest.raises(ConfigError, match="W&B mode 'cloud' is not allowed"):
        train(tiny(max_steps=50), tmp_path / "a", verbose=False, wandb={"mode": "cloud"})
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(ConfigError, match=r"--wandb needs wandb, which is not installed: pip install "
                                          r"'cartpole-dqn\[wandb\]'"):
        train(tiny(max_steps=50), tmp_path / "a", verbose=False, wandb=True)
    assert not (tmp_path / "a").exists()


def test_the_mode_follows_the_option_then_wandb_mode_then_the_api_key(monkeypatch):
    assert tracking.wandb_options(False) is None
    assert tracking.wandb_options({"mode": "disabled"}).mode == "disabled"
    assert (tracking.wandb_options(True).mode, tracking.wandb_options(True).why) == ("offline", "offline mode")
    monkeypatch.delenv("WANDB_MODE")
    assert (tracking.wandb_options(True).mode, tracking.wandb_options(True).why) == ("offline", "no API key")
    monkeypatch.setattr(tracking, "has_api_key", lambda: True)
    assert tracking.wandb_options({"project": None}, group="g") == tracking.WandbOptions(group="g", mode="online")
