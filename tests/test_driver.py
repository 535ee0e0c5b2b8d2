"""The driver loop: chunk boundaries on each part's grid, and parts closed on every path."""

import pytest

from cartpole_dqn import driver, training
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
