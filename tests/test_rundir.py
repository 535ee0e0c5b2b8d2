import os
from pathlib import Path

import pytest

from cartpole_dqn.config import ConfigError, build
from cartpole_dqn.rundir import CHECKPOINT, CONFIG, MODEL, SCORES, SUMMARY, TENSORBOARD, RunDir


def test_one_seed_writes_in_the_run_folder_and_k_seeds_in_seed_folders(tmp_path):
    run = RunDir(tmp_path / "run")
    assert run.seed_dirs([3]) == [tmp_path / "run"]
    assert run.seed_dirs([3, 4]) == [tmp_path / "run" / "seed-3", tmp_path / "run" / "seed-4"]
    assert run.tensorboard_dirs([3]) == [tmp_path / "run" / TENSORBOARD]
    assert run.tensorboard_dirs([3, 4]) == [tmp_path / "run" / "tb" / "seed-3", tmp_path / "run" / "tb" / "seed-4"]


def test_the_names_are_those_users_and_older_runs_know():
    assert (SCORES, MODEL, SUMMARY, CONFIG, CHECKPOINT) == ("scores.csv", "model.safetensors", "summary.json",
                                                            "config.json", "checkpoint")


def test_the_default_folder_names_the_env_preset_and_seed():
    path = RunDir.default(build("classic", overrides={"seed": 7})).path
    assert path.parent == Path("runs") and path.name.startswith("CartPole-v1-classic-s7-")


def test_prepare_creates_the_folder_and_refuses_a_file_or_a_finished_run(tmp_path):
    RunDir(tmp_path / "a" / "b").prepare()
    assert (tmp_path / "a" / "b").is_dir() and not list((tmp_path / "a" / "b").iterdir())
    RunDir(tmp_path / "a" / "b").prepare()                 # an empty folder is fine
    (tmp_path / "f").write_text("")
    with pytest.raises(ConfigError, match="is a file"):
        RunDir(tmp_path / "f").prepare()
    (tmp_path / "a" / "b" / SUMMARY).write_text("{}")
    with pytest.raises(ConfigError, match="already holds a run"):
        RunDir(tmp_path / "a" / "b").prepare()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_prepare_refuses_an_unwritable_place(tmp_path):
    (tmp_path / "ro").mkdir(mode=0o500)
    with pytest.raises(ConfigError, match="not writable"):
        RunDir(tmp_path / "ro" / "run").prepare()


def test_the_seed_folders_of_a_run_are_found_in_seed_order(tmp_path):
    for n in (10, 2, 1):
        (tmp_path / f"seed-{n}").mkdir()
        (tmp_path / f"seed-{n}" / SCORES).write_text("")
    (tmp_path / "seed-5").mkdir()                          # no scores: not a seed that ran
    assert RunDir(tmp_path).find_seed_dirs(SCORES) == [tmp_path / f"seed-{n}" for n in (1, 2, 10)]
    assert RunDir(tmp_path).find_seed_dirs(MODEL) == []
    (tmp_path / SCORES).write_text("")                     # a one-seed run holds its files itself
    assert RunDir(tmp_path).find_seed_dirs(SCORES) == [tmp_path]
