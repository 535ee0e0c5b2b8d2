"""Resuming a run: interrupted after any step and resumed, it gives exactly the uninterrupted run's files."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from cartpole_dqn import checkpoint, driver, parts, program, resume, train
from cartpole_dqn.checkpoint import CheckpointError, load_model
from cartpole_dqn.cli import main
from cartpole_dqn.config import ConfigError
from cartpole_dqn.training import restored
from tests.conftest import tiny


def _rows(path, drop=("wall_seconds",)):
    return [{k: v for k, v in r.items() if k not in drop} for r in csv.DictReader(open(path))]


def _interrupt_at(monkeypatch, step: int, chunk: int = 100) -> None:
    """Send this process SIGINT while the chunk that reaches env step `step` is logged, as Ctrl-C would (the
    loop's own handler catches it and stops at the chunk's end). Chunks of `chunk` steps put the cut anywhere."""
    monkeypatch.setattr(driver, "CHUNK_STEPS", chunk)
    real = parts.Scores.on_chunk
    sent = []

    def log(self, run, chunk):
        if not sent and chunk.steps[-1] >= step:
            sent.append(chunk.t0)
            os.kill(os.getpid(), signal.SIGINT)
        return real(self, run, chunk)

    monkeypatch.setattr(parts.Scores, "on_chunk", log)


def _same_run(a, b, seeds=(None,)):
    for s in seeds:
        da, db = (a, b) if s is None else (a / f"seed-{s}", b / f"seed-{s}")
        assert _rows(da / "scores.csv") == _rows(db / "scores.csv")
        assert _rows(da / "eval.csv") == _rows(db / "eval.csv")
        a_params, b_params = (load_model(d / "model.safetensors")[1] for d in (da, db))
        for layer in a_params:
            for name in a_params[layer]:
                np.testing.assert_array_equal(a_params[layer][name], b_params[layer][name])


@pytest.mark.parametrize("overrides", [
    dict(),
    dict(name="classic", max_steps=450),
    dict(replay_ratio=0.25, dueling=True, max_episodes=30, seeds=2, lr_end=1e-4, lr_decay_steps=800),
    dict(num_envs=4, seeds=2, n_step=3, prioritized=True, eval_every=300, eval_episodes=2),
    dict(name="pqn", num_envs=4, rollout_steps=8, minibatches=4, seeds=2, eval_every=300, eval_episodes=2),
], ids=["default", "classic", "ratio-dueling-lr-decay-episode-budget", "k2-e4-nstep-per-eval", "pqn"])
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, monkeypatch, overrides):
    name = overrides.pop("name", "sample-efficient")
    cfg = tiny(name, **{"max_steps": 900, **overrides})
    if overrides or name != "sample-efficient":
        # The three runs take 100-step chunks: one program to compile. The default case keeps 1,000-step chunks
        # for the full run and the resume around the cut run's 100: where chunks end changes nothing.
        monkeypatch.setattr(driver, "CHUNK_STEPS", 100)
    full = train(cfg, tmp_path / "full", verbose=False)
    with monkeypatch.context() as cutting:
        _interrupt_at(cutting, cfg.max_steps * 5 // 9)
        cut = train(cfg, tmp_path / "cut", verbose=False)
    assert cut.interrupted and (tmp_path / "cut" / "checkpoint" / "meta.json").exists()
    resumed = resume(tmp_path / "cut", verbose=False)
    assert not resumed.interrupted
    seeds = (None,) if cfg.seeds == 1 else cfg.seed_list
    _same_run(tmp_path / "full", tmp_path / "cut", seeds)
    strip = lambda s: {k: v for k, v in s.items() if "seconds" not in k}
    assert [strip(s) for s in resumed.summaries] == [strip(s) for s in full.summaries]


def test_a_larger_budget_on_resume_continues_the_run(tmp_path):
    cfg = tiny(max_steps=1200)
    train(cfg, tmp_path / "full", verbose=False)
    short = train(tiny(max_steps=500), tmp_path / "ext", verbose=False)
    assert short.summaries[0]["env_steps"] == 500
    files = [tmp_path / "ext" / name for name in ("scores.csv", "eval.csv", "summary.json", "config.json")]
    before = [(f.read_bytes(), f.stat().st_mtime_ns) for f in files]
    with pytest.raises(ConfigError, match="nothing to resume"):
        resume(tmp_path / "ext", verbose=False)
    assert [(f.read_bytes(), f.stat().st_mtime_ns) for f in files] == before   # refused before touching a file
    longer = resume(tmp_path / "ext", max_steps=1200, verbose=False)
    assert longer.summaries[0]["env_steps"] == 1200
    _same_run(tmp_path / "full", tmp_path / "ext")
    assert json.loads((tmp_path / "ext" / "config.json").read_text())["max_steps"] == 1200


def test_save_every_writes_checkpoints_during_training(tmp_path, monkeypatch):
    """A checkpoint after each chunk in which a seed's episode count reached a multiple of save_every, and the
    last one at the end."""
    monkeypatch.setattr(driver, "CHUNK_STEPS", 100)        # the program of the other 100-step cases
    saved = []
    real = checkpoint.save_run
    monkeypatch.setattr(checkpoint, "save_run", lambda run: saved.append(run.t) or real(run))
    train(tiny(max_steps=600, save_every=5), tmp_path / "r", verbose=False)
    steps = [int(r["env_steps"]) for r in _rows(tmp_path / "r" / "scores.csv")]
    due = {-(-s // 100) * 100 for n, s in enumerate(steps, 1) if n % 5 == 0} - {600}
    assert len(due) >= 3 and saved == sorted(due) + [600]


def test_resume_refuses_what_it_cannot_use(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        resume(tmp_path / "nowhere", verbose=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        resume(tmp_path / "empty", verbose=False)


def test_sigint_to_a_training_process_then_resume_equals_the_uninterrupted_run(tmp_path):
    args = ["--max-steps", "4000", "--set", "hidden=16,16", "--eval-every", "1000", "--eval-episodes", "2",
            "--set", "final_eval_episodes=5", "--set", "plot_every=0", "--quiet"]
    assert main(["train", *args, "--out", str(tmp_path / "full")]) == 0
    out = tmp_path / "cut"
    proc = subprocess.Popen([sys.executable, "-m", "cartpole_dqn", "train", *args, "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (out / "scores.csv").exists() and len((out / "scores.csv").read_text().splitlines()) > 30:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert json.loads((out / "summary.json").read_text())["interrupted"]
    assert main(["resume", str(out), "--quiet"]) == 0
    _same_run(tmp_path / "full", out)
    a, b = (json.loads((d / "summary.json").read_text()) for d in (tmp_path / "full", out))
    assert a["final_greedy_score"] == b["final_greedy_score"] and not b["interrupted"]


def test_a_resume_that_restarts_the_episodes_cuts_their_n_step_returns(tmp_path, monkeypatch):
    """Where a host environment's state cannot be restored, the unfinished episodes restart: the memory must not
    chain the new episodes' first steps onto the abandoned ones."""
    monkeypatch.setattr(program, "has_twin", lambda env: False)     # CartPole played by gymnasium
    cfg = tiny(max_steps=900, n_step=3)
    _interrupt_at(monkeypatch, 500)
    assert train(cfg, tmp_path / "cut", verbose=False).interrupted
    monkeypatch.setattr(checkpoint, "env_state_exact", lambda env: False)
    run = restored(tmp_path / "cut", verbose=False)
    run.program.close()
    assert np.asarray(run.states.memory.episode_steps).ravel().tolist() == [0]
    assert np.asarray(run.states.ep_length).ravel().tolist() == [0]
    monkeypatch.setattr(checkpoint, "env_state_exact", lambda env: True)
    result = resume(tmp_path / "cut", verbose=False)
    assert result.summaries[0]["env_steps"] == 900


def test_a_host_task_resumed_equals_the_uninterrupted_run(tmp_path, monkeypatch):
    """A task gymnasium plays on the host (called back once per vector step) resumes exactly too, with several
    environments per seed: the environments' physics and generators and the next actions are in the checkpoint.
    One environment per seed is the same code with E = 1 (seed k's environments are k * E ... k * E + E - 1)."""
    monkeypatch.setattr(program, "has_twin", lambda env: False)
    cfg = tiny(max_steps=700, seeds=2, eval_every=350, eval_episodes=2, num_envs=3)
    full = train(cfg, tmp_path / "full", verbose=False)
    _interrupt_at(monkeypatch, 300, chunk=70)
    assert train(cfg, tmp_path / "cut", verbose=False).interrupted
    resumed = resume(tmp_path / "cut", verbose=False)
    _same_run(tmp_path / "full", tmp_path / "cut", cfg.seed_list)
    strip = lambda s: {k: v for k, v in s.items() if "seconds" not in k}
    assert [strip(s) for s in resumed.summaries] == [strip(s) for s in full.summaries]


def test_a_host_seed_woken_by_a_larger_budget_starts_from_its_environment_as_it_is(tmp_path, monkeypatch):
    """A frozen seed's gymnasium environment went on stepping beside the others; woken by a larger budget, the seed
    must act on that environment's real state, not on the observation it froze with."""
    monkeypatch.setattr(program, "has_twin", lambda env: False)
    train(tiny(seeds=2, max_episodes=5, max_steps=5000), tmp_path / "h", verbose=False)
    run = restored(tmp_path / "h", max_episodes=8, verbose=False)
    for i, env in enumerate(run.program.envs.envs):
        np.testing.assert_allclose(np.asarray(run.states.obs[i, 0]), env.unwrapped.state, rtol=1e-6)
    run.program.close()
    assert np.asarray(run.states.ep_length).ravel().tolist() == [0, 0]
    result = resume(tmp_path / "h", max_episodes=8, verbose=False)
    assert [s["episodes"] for s in result.summaries] == [8, 8]
