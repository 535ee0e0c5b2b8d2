import os
import signal
import subprocess
import sys
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


def test_a_claimed_folder_is_refused_to_a_second_run_until_released(tmp_path):
    out = RunDir(tmp_path / "o")
    with out.claim():
        with pytest.raises(ConfigError, match="in use by another cartpole-dqn run"):
            with out.claim():
                pass
    with out.claim():                                      # released: claimable again
        pass


def test_the_lock_of_a_killed_run_does_not_block_the_folder(tmp_path):
    """flock is released by the kernel when its process dies, SIGKILL included."""
    code = ("import sys, time; from cartpole_dqn.rundir import RunDir\n"
            f"with RunDir(__import__('pathlib').Path({str(tmp_path / 'o')!r})).claim():\n"
            "    print('held', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    with pytest.raises(ConfigError, match="in use"):
        with RunDir(tmp_path / "o").claim():
            pass
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with RunDir(tmp_path / "o").claim():
        pass


def test_an_interrupt_before_the_first_checkpoint_removes_what_the_run_made(tmp_path):
    out = tmp_path / "new"
    with pytest.raises(KeyboardInterrupt):
        with RunDir(out).claim():
            (out / CONFIG).write_text("{}")
            raise KeyboardInterrupt
    assert not out.exists()
    mine = tmp_path / "mine"                               # a folder the user made: only the run's files go
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(KeyboardInterrupt):
        with RunDir(mine).claim():
            (mine / CONFIG).write_text("{}")
            (mine / "seed-1").mkdir()
            raise KeyboardInterrupt
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    with pytest.raises(KeyboardInterrupt):                 # once a checkpoint exists, the run stays
        with RunDir(mine).claim():
            (mine / CHECKPOINT).mkdir()
            (mine / CHECKPOINT / "meta.json").write_text("{}")
            raise KeyboardInterrupt
    assert (mine / CHECKPOINT / "meta.json").exists()


@pytest.mark.parametrize("existed", [False, True])
def test_a_ctrl_c_while_the_folder_is_made_and_locked_leaves_it_as_it_was(tmp_path, monkeypatch, existed):
    """Ctrl-C 2 s into `train` once left an empty run folder, which `resume` refused: it came as the folder was
    made, before the claim could remove it again."""
    out = tmp_path / "o"
    if existed:
        out.mkdir()
        (out / "notes.txt").write_text("keep")
    make = RunDir._make

    def make_then_ctrl_c(self):
        make(self)
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(RunDir, "_make", make_then_ctrl_c)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            with RunDir(out).claim():
                (out / CONFIG).write_text("{}")
    finally:
        signal.signal(signal.SIGINT, previous)
    if existed:
        assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    else:
        assert not out.exists()


def test_a_run_killed_before_its_first_checkpoint_is_reclaimed_and_a_checkpoint_is_not(tmp_path, capsys):
    out = tmp_path / "o"
    (out / "seed-3").mkdir(parents=True)
    (out / "seed-3" / SCORES).write_text("episode\n1\n")
    (out / CHECKPOINT).mkdir()
    (out / CHECKPOINT / "state-000001.safetensors").write_bytes(b"")     # killed before its meta.json
    (out / "notes.txt").write_text("keep")
    with RunDir(out).claim():
        pass
    assert "stopped before its first checkpoint" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [".lock", "notes.txt"]     # only the new run's files follow
    (out / CHECKPOINT).mkdir()
    (out / CHECKPOINT / "meta.json").write_text("{}")
    with pytest.raises(ConfigError, match="already holds a run"):
        with RunDir(out).claim():
            pass
    with RunDir(out).claim(resuming=True):                 # resume holds it as it is
        pass
