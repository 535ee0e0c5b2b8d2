"""The driver loop: chunk boundaries on each part's grid, parts closed on every path, signals and write errors
at any moment."""

import errno
import json
import os
import re
import signal

import pytest

from cartpole_dqn import driver, training
from cartpole_dqn.checkpoint import load_checkpoint, load_model
from cartpole_dqn.errors import OutputError
from cartpole_dqn.config import preset
from cartpole_dqn.driver import chunk_steps, steps_until
from tests.conftest import tiny


def _chunks(cfg, intervals):
    """The chunk lengths (env steps) of a whole run of cfg.max_steps under the parts' intervals."""
    t, lengths, length = 0, [], chunk_steps(cfg)
    while t < cfg.max_steps:
        n = steps_until(cfg, t, length, intervals)
        lengths.append(min(n * cfg.num_envs, cfg.max_steps - t))
        t += lengths[-1]
    return lengths


@pytest.mark.parametrize("intervals", [[999], [2000], [999, 246], [7], [12_345 // 50]])
def test_an_interval_that_does_not_divide_the_chunk_costs_one_boundary_per_multiple(intervals):
    """`--eval-every 999` once ran 1-step chunks (the gcd of 1,000 and 999): now a chunk ends at the chunk length
    or at the next multiple of an interval, so a run has at most one chunk per 1,000 steps plus one per multiple."""
    cfg = preset("sample-efficient", max_steps=60_000)
    lengths = _chunks(cfg, intervals)
    bound = cfg.max_steps // driver.CHUNK_STEPS + sum(cfg.max_steps // every for every in intervals) + 1
    assert sum(lengths) == cfg.max_steps and len(lengths) <= bound
    if intervals == [999]:
        assert set(lengths[:-1]) == {999}


def test_chunks_of_vector_steps_meet_each_interval_at_the_first_vector_step_past_it():
    cfg = preset("pqn", num_envs=16, max_steps=20_000)
    t, ends = 0, []
    while t < cfg.max_steps:
        t += steps_until(cfg, t, chunk_steps(cfg), [999]) * cfg.num_envs
        ends.append(t)
    for k in range(1, cfg.max_steps // 999):
        first = min(e for e in ends if e >= k * 999)
        assert first - k * 999 < cfg.num_envs


class _Boom(driver.Part):
    def on_chunk(self, run, chunk):
        raise RuntimeError("boom")


def test_every_part_is_closed_when_training_raises(tmp_path, monkeypatch):
    closed, real_drive = [], driver.drive

    def drive(run, parts):
        parts = [*parts, _Boom()]
        for part in parts:
            part.close = lambda part=part, close=part.close: closed.append(type(part).__name__) or close()
        real_drive(run, parts)

    monkeypatch.setattr(training, "drive", drive)
    with pytest.raises(RuntimeError, match="boom"):
        training.train(tiny(max_steps=300), tmp_path / "r", verbose=False)
    assert sorted(closed) == sorted(["Scores", "Evaluation", "Checkpoints", "Plots", "Results", "_Boom"])


def _with_part(monkeypatch, part, first=True):
    """Train with `part` added to the driver's parts (first, or last)."""
    real_drive = driver.drive
    monkeypatch.setattr(training, "drive", lambda run, parts: real_drive(run, [part, *parts] if first
                                                                          else [*parts, part]))


class _Signal(driver.Part):
    """Sends this process a signal from one hook, as a user's Ctrl-C or a scheduler's SIGTERM would arrive."""

    def __init__(self, hook, signum):
        self.hook, self.signum = hook, signum

    def on_start(self, run):
        if self.hook == "on_start":
            os.kill(os.getpid(), self.signum)

    def on_end(self, run):
        if self.hook == "on_end":
            os.kill(os.getpid(), self.signum)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_the_end_of_a_run_lets_it_save_everything_and_marks_it_interrupted(tmp_path, monkeypatch,
                                                                                            signum):
    """The end hooks (final evaluation, models, summaries, checkpoint) once ran after the handlers were removed,
    so a signal there lost them; now the end completes, skips the final evaluation and says interrupted."""
    _with_part(monkeypatch, _Signal("on_end", signum))
    result = training.train(tiny(max_steps=300, final_eval_episodes=5), tmp_path / "r", verbose=False)
    assert result.interrupted and result.summaries[0]["final_greedy_score"] is None
    s = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert s["interrupted"] and s["env_steps"] == 300
    load_model(tmp_path / "r" / "model.safetensors")
    assert load_checkpoint(tmp_path / "r" / "checkpoint")[1]["steps"] == 300


def test_a_signal_before_the_first_chunk_of_a_new_run_leaves_nothing(tmp_path, monkeypatch):
    _with_part(monkeypatch, _Signal("on_start", signal.SIGINT))
    monkeypatch.setattr(driver.Part, "on_start", lambda self, run: None)
    real_compile = driver.Stepper.compile

    def compile_then_signal(self, t, states):      # Ctrl-C while the program compiles
        os.kill(os.getpid(), signal.SIGINT)
        return real_compile(self, t, states)

    monkeypatch.setattr(driver.Stepper, "compile", compile_then_signal)
    with pytest.raises(KeyboardInterrupt):
        training.train(tiny(max_steps=300), tmp_path / "r", verbose=False)
    assert not (tmp_path / "r").exists()


class _DiskFull(driver.Part):
    def on_chunk(self, run, chunk):
        if run.t >= 200:
            raise OSError(errno.ENOSPC, "No space left on device", str(run.out / "scores.csv"))


def test_a_write_error_mid_run_is_one_error_naming_the_file_and_what_was_trained_is_saved(tmp_path, monkeypatch):
    monkeypatch.setattr(driver, "CHUNK_STEPS", 100)
    _with_part(monkeypatch, _DiskFull(), first=False)
    with pytest.raises(OutputError, match=r"could not write '.*scores.csv' \(No space left on device\), so "
                                          r"training stopped at env step (\d+); the last checkpoint") as e:
        training.train(tiny(max_steps=1000, final_eval_episodes=5), tmp_path / "r", verbose=False)
    assert "\n" not in str(e.value)
    s = json.loads((tmp_path / "r" / "summary.json").read_text())
    stopped = int(re.search(r"env step (\d+)", str(e.value)).group(1))
    assert 200 <= stopped < 1000
    assert s["interrupted"] and s["env_steps"] == stopped and s["final_greedy_score"] is None
    load_model(tmp_path / "r" / "model.safetensors")
    monkeypatch.undo()                                     # room again: the run continues from its checkpoint
    assert training.resume(tmp_path / "r", verbose=False).summaries[0]["env_steps"] == 1000
